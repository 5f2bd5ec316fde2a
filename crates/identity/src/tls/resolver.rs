//! The served certificate, swapped atomically on rotation.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::WorkloadCert;

/// Serves the current workload certificate to both sides of a handshake.
#[derive(Debug)]
pub(crate) struct CertResolver {
    current: ArcSwapOption<WorkloadCert>,
}

impl CertResolver {
    pub(crate) fn new(cert: Option<WorkloadCert>) -> Self {
        CertResolver {
            current: ArcSwapOption::from(cert.map(Arc::new)),
        }
    }

    pub(crate) fn set(&self, cert: WorkloadCert) {
        tracing::debug!(id = %cert.id(), "serving a new workload certificate");
        self.current.store(Some(Arc::new(cert)));
    }

    pub(crate) fn current(&self) -> Option<Arc<WorkloadCert>> {
        self.current.load_full()
    }

    fn certified_key(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .load()
            .as_ref()
            .map(|cert| cert.certified_key())
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.certified_key()
    }
}

impl ResolvesClientCert for CertResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.certified_key()
    }

    fn has_certs(&self) -> bool {
        self.current.load().is_some()
    }
}
