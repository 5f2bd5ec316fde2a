//! rustls configs for mutual TLS inside the mesh.
//!
//! One [`MeshTls`] per identity: it owns the served certificate (swapped on rotation)
//! and shares the [`TrustBundle`]; from it come the server config of the inbound
//! side, a client config per expected peer identity for the outbound side, and the
//! configs of the control plane's gRPC port. Every config is TLS 1.3 only, with the
//! key exchange groups X25519MLKEM768 (hybrid post-quantum) first, then X25519 and
//! secp256r1. Session resumption is off, so every handshake checks the peer's
//! certificate against the bundle as it is now.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, CommonState, ServerConfig};

use crate::cert::cert_info;
use crate::{IdentityError, SpiffeId, TrustBundle, WorkloadCert};

mod resolver;
mod verifier;

use resolver::CertResolver;
use verifier::{ClientVerifier, ServerVerifier};

/// The ALPN protocol of mesh mTLS between proxies. A proxy's inbound side tells a
/// mesh connection from an application's own TLS by it.
pub const MESH_ALPN: &[u8] = b"skiff-mtls/1";
/// The ALPN protocol of the control plane's gRPC port (HTTP/2).
pub const GRPC_ALPN: &[u8] = b"h2";

/// Client configs kept per expected identity set before the cache is emptied.
const CLIENT_CACHE_MAX: usize = 4096;

/// The crypto provider of every mesh config: aws-lc-rs, with the key exchange groups
/// X25519MLKEM768, X25519, secp256r1 in that order.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            Arc::new(CryptoProvider {
                kx_groups: vec![
                    kx_group::X25519MLKEM768,
                    kx_group::X25519,
                    kx_group::SECP256R1,
                ],
                ..aws_lc_rs::default_provider()
            })
        })
        .clone()
}

/// The SPIFFE id of the peer of a finished handshake: the URI SAN of its leaf
/// certificate. `None` if it showed no certificate or one without a SPIFFE id.
///
/// Takes a `rustls::CommonState`, which both `ServerConnection` and
/// `ClientConnection` deref to (with tokio-rustls: `stream.get_ref().1`).
pub fn peer_identity(state: &CommonState) -> Option<SpiffeId> {
    let leaf = state.peer_certificates()?.first()?;
    cert_info(leaf).ok()?.id.ok()
}

/// Mesh mTLS for one workload identity: its certificate (swappable) and the mesh
/// trust bundle, and the rustls configs built on them.
///
/// Cheap to clone (one `Arc`). Configs are built once and share the certificate
/// resolver and the bundle, so [`rotate`](Self::rotate) and a root added to the
/// bundle take effect for the next handshake of every config already handed out,
/// and open connections are left alone.
#[derive(Clone)]
pub struct MeshTls {
    inner: Arc<Inner>,
}

struct Inner {
    resolver: Arc<CertResolver>,
    bundle: TrustBundle,
    mesh_server: Arc<ServerConfig>,
    grpc_server: Arc<ServerConfig>,
    client_builder: rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>,
    clients: Mutex<HashMap<ClientKey, Arc<ClientConfig>>>,
}

/// A cached client config's expected identities (sorted) and ALPN.
type ClientKey = (Vec<SpiffeId>, &'static [u8]);

impl std::fmt::Debug for MeshTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshTls")
            .field(
                "id",
                &self.inner.resolver.current().map(|c| c.id().to_string()),
            )
            .field("bundle", &self.inner.bundle)
            .finish()
    }
}

impl MeshTls {
    /// Mesh TLS serving `cert` and trusting `bundle`.
    pub fn new(cert: WorkloadCert, bundle: TrustBundle) -> Result<Self, IdentityError> {
        Self::build(Some(cert), bundle)
    }

    /// Mesh TLS without a certificate yet: its client configs verify the server but
    /// show no client certificate. What a proxy uses to fetch its first certificate
    /// with a bootstrap token.
    pub fn without_cert(bundle: TrustBundle) -> Result<Self, IdentityError> {
        Self::build(None, bundle)
    }

    /// Mesh TLS as [`new`](Self::new) makes it, but offering and accepting only the
    /// key exchange `groups`, in that order (the mesh default is
    /// X25519MLKEM768, X25519, secp256r1). For measuring and interop tests: a
    /// handshake with X25519 alone against the hybrid post-quantum one.
    pub fn with_key_exchange_groups(
        cert: WorkloadCert,
        bundle: TrustBundle,
        groups: &[&'static dyn rustls::crypto::SupportedKxGroup],
    ) -> Result<Self, IdentityError> {
        let provider = Arc::new(CryptoProvider {
            kx_groups: groups.to_vec(),
            ..aws_lc_rs::default_provider()
        });
        Self::build_with(Some(cert), bundle, provider)
    }

    fn build(cert: Option<WorkloadCert>, bundle: TrustBundle) -> Result<Self, IdentityError> {
        Self::build_with(cert, bundle, crypto_provider())
    }

    fn build_with(
        cert: Option<WorkloadCert>,
        bundle: TrustBundle,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, IdentityError> {
        let resolver = Arc::new(CertResolver::new(cert));
        let server = |mandatory: bool, alpn: &[u8]| -> Result<Arc<ServerConfig>, IdentityError> {
            let verifier = Arc::new(ClientVerifier::new(bundle.clone(), mandatory));
            let mut config = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])?
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(resolver.clone());
            config.alpn_protocols = vec![alpn.to_vec()];
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
            Ok(Arc::new(config))
        };
        let inner = Inner {
            mesh_server: server(true, MESH_ALPN)?,
            grpc_server: server(false, GRPC_ALPN)?,
            client_builder: ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])?,
            resolver,
            bundle,
            clients: Mutex::new(HashMap::new()),
        };
        Ok(MeshTls {
            inner: Arc::new(inner),
        })
    }

    /// Serves `cert` from the next handshake on, for every config of this `MeshTls`.
    /// Connections already open keep the certificate they were made with.
    pub fn rotate(&self, cert: WorkloadCert) {
        self.inner.resolver.set(cert);
    }

    /// The certificate served now, if any.
    pub fn current_cert(&self) -> Option<Arc<WorkloadCert>> {
        self.inner.resolver.current()
    }

    /// The trust bundle the verifiers check peers against.
    pub fn bundle(&self) -> &TrustBundle {
        &self.inner.bundle
    }

    /// The inbound side of mesh mTLS: requires a client certificate of the trust
    /// domain (any identity; read it after the handshake with [`peer_identity`]),
    /// ALPN [`MESH_ALPN`].
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.inner.mesh_server.clone()
    }

    /// The outbound side of mesh mTLS to a server that must be one of `expected`
    /// (an empty slice: any identity of the trust domain, as Istio does when a
    /// service has no known service accounts). Shows this workload's certificate,
    /// ALPN [`MESH_ALPN`]. Configs are cached per identity set, so calling this per
    /// connection is cheap. The server name given to the connector is not checked;
    /// the SPIFFE id is.
    pub fn client_config(&self, expected: &[SpiffeId]) -> Arc<ClientConfig> {
        self.cached_client_config(expected, MESH_ALPN)
    }

    /// The control plane's gRPC port: its serving certificate, ALPN `h2`, a client
    /// certificate optional (callers with a bootstrap token have none yet) and
    /// verified against the bundle when shown.
    pub fn grpc_server_config(&self) -> Arc<ServerConfig> {
        self.inner.grpc_server.clone()
    }

    /// A client config for the control plane's gRPC port: the server must be
    /// `control_plane` (usually [`SpiffeId::control_plane`]), ALPN `h2`, and this
    /// workload's certificate is shown if it has one.
    pub fn grpc_client_config(&self, control_plane: &SpiffeId) -> Arc<ClientConfig> {
        self.cached_client_config(std::slice::from_ref(control_plane), GRPC_ALPN)
    }

    fn cached_client_config(
        &self,
        expected: &[SpiffeId],
        alpn: &'static [u8],
    ) -> Arc<ClientConfig> {
        let mut expected = expected.to_vec();
        expected.sort();
        expected.dedup();
        let key = (expected, alpn);
        let mut cache = self
            .inner
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(config) = cache.get(&key) {
            return config.clone();
        }
        let config = self.new_client_config(&key.0, alpn);
        if cache.len() >= CLIENT_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, config.clone());
        config
    }

    fn new_client_config(&self, expected: &[SpiffeId], alpn: &[u8]) -> Arc<ClientConfig> {
        let verifier = Arc::new(ServerVerifier::new(
            self.inner.bundle.clone(),
            expected.to_vec(),
        ));
        let mut config = self
            .inner
            .client_builder
            .clone()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(self.inner.resolver.clone());
        config.alpn_protocols = vec![alpn.to_vec()];
        config.resumption = Resumption::disabled();
        Arc::new(config)
    }
}
