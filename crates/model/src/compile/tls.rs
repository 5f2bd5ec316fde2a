//! Client TLS of a cluster and the auto mutual TLS decision per endpoint, as Istio
//! makes them (`pilot/pkg/networking/core/cluster_tls.go`,
//! `pilot/pkg/xds/endpoints/mtls_checker.go`, `BestEffortInferServiceMTLSMode` in
//! `pilot/pkg/model/push_context.go`).

use std::collections::HashMap;

use skiff_api::networking::{ClientTlsMode, ClientTlsSettings};

use crate::config::{ClusterTls, IstioMutual, MtlsMode, TlsOrigination};
use crate::registry::{Service, ServiceKind, Workload};
use crate::rules::{PeerDecision, PolicyIndex, tls_mode};

/// The label that tells Istio whether an endpoint takes mutual TLS (`istio`) or not.
pub(crate) const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// The contract's form of a DestinationRule `tls` block.
pub(super) fn cluster_tls(t: &ClientTlsSettings) -> ClusterTls {
    let origination = || TlsOrigination {
        sni: t.sni.clone(),
        subject_alt_names: t.subject_alt_names.clone(),
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
        ca_certificates: t.ca_certificates.clone(),
        ca_crl: t.ca_crl.clone(),
        client_certificate: t.client_certificate.clone(),
        private_key: t.private_key.clone(),
        credential_name: t.credential_name.clone(),
    };
    match tls_mode(t) {
        ClientTlsMode::Disable => ClusterTls::Disable,
        ClientTlsMode::IstioMutual => ClusterTls::IstioMutual(IstioMutual {
            sni: t.sni.clone(),
            subject_alt_names: t.subject_alt_names.clone(),
            insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
        }),
        ClientTlsMode::Simple => ClusterTls::Simple(origination()),
        ClientTlsMode::Mutual => ClusterTls::Mutual(origination()),
    }
}

/// Decides [`crate::config::Endpoint::mtls`] for the endpoints of one cluster.
pub(super) struct EndpointTls<'a> {
    /// The cluster's TLS.
    pub(super) cluster: &'a ClusterTls,
    /// The DestinationRule's TLS mode as the endpoint builder reads it.
    pub(super) rule_mode: Option<ClientTlsMode>,
    /// Auto mutual TLS is possible for this service at all: it is in the mesh and its
    /// namespace-level mode is not DISABLE.
    pub(super) auto: bool,
}

impl EndpointTls<'_> {
    pub(super) fn new<'a>(
        cluster: &'a ClusterTls,
        rule_mode: Option<ClientTlsMode>,
        service: &Service,
        policies: &PolicyIndex,
    ) -> EndpointTls<'a> {
        let external = matches!(
            service.kind,
            ServiceKind::ServiceEntry {
                mesh_internal: false
            }
        );
        EndpointTls {
            cluster,
            rule_mode,
            auto: !external && policies.namespace_mtls(&service.namespace) != MtlsMode::Disable,
        }
    }

    /// Whether the client uses Istio mutual TLS to `workload` at `target` port.
    pub(super) fn mtls(
        &self,
        workload: &Workload,
        sidecar: bool,
        target: u16,
        peer: impl FnOnce(u16) -> MtlsMode,
    ) -> bool {
        match self.cluster {
            ClusterTls::IstioMutual(_) => true,
            ClusterTls::Disable | ClusterTls::Simple(_) | ClusterTls::Mutual(_) => false,
            ClusterTls::Auto if !self.auto => false,
            // A DestinationRule mode the cluster builder did not see (a port-level entry
            // without `tls` hides it there) still marks the endpoint, as in Istio.
            ClusterTls::Auto => match self.rule_mode {
                Some(mode) => mode == ClientTlsMode::IstioMutual,
                None => {
                    let labelled = workload.labels.get(TLS_MODE_LABEL).map(String::as_str);
                    sidecar
                        && labelled.is_none_or(|v| v == "istio")
                        && peer(target) != MtlsMode::Disable
                }
            },
        }
    }
}

/// PeerAuthentication decisions of server workloads, computed once per compile: per
/// namespace when no policy there selects workloads (the common case), else per
/// workload.
#[derive(Default)]
pub(super) struct PeerCache {
    namespaces: HashMap<String, MtlsMode>,
    workloads: HashMap<usize, PeerDecision>,
}

impl PeerCache {
    /// The mode workload `id` requires on `target` port.
    pub(super) fn mode(
        &mut self,
        policies: &PolicyIndex,
        id: usize,
        workload: &Workload,
        target: u16,
    ) -> MtlsMode {
        let ns = &workload.namespace;
        if !policies.has_workload_peer_policies(ns) {
            if let Some(mode) = self.namespaces.get(ns) {
                return *mode;
            }
            let mode = policies.namespace_mtls(ns);
            self.namespaces.insert(ns.clone(), mode);
            return mode;
        }
        self.workloads
            .entry(id)
            .or_insert_with(|| policies.peer(ns, &workload.labels))
            .for_port(target)
            .0
    }
}
