//! The mesh model of skiff.
//!
//! From a validated set of Istio and Kubernetes resources (see `skiff-api`), this crate
//! builds the registry of the mesh (services, their ports and protocols, the workloads
//! behind them, subsets) and compiles it into one [`config::ProxyConfig`] per proxy.
//! Everything here is pure and deterministic: no I/O, stable ordering. The control
//! plane, `skiff analyze` and `skiff explain` all use this same code.

#![warn(missing_docs)]

pub mod analyze;
mod compile;
pub mod config;
pub mod diagnostic;
mod error;
pub mod host;
mod incremental;
pub mod locality;
mod mesh;
pub mod protocol;
pub mod registry;
pub mod rules;

pub use diagnostic::{Diagnostic, Severity};
pub use error::Error;
pub use incremental::{Compiled, Incremental, makes_only_endpoints};
pub use mesh::Mesh;

/// Mesh-wide settings the model needs (Istio's MeshConfig, the parts that matter here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshOptions {
    /// DNS suffix of Kubernetes services: `name.namespace.svc.<domain_suffix>`.
    pub domain_suffix: String,
    /// Trust domain of SPIFFE identities: `spiffe://<trust_domain>/ns/<ns>/sa/<sa>`.
    pub trust_domain: String,
    /// Other trust domains that name the same identities (MeshConfig
    /// `trustDomainAliases`): AuthorizationPolicy principals and trust domains in any of
    /// them are expanded to all of them.
    pub trust_domain_aliases: Vec<String>,
    /// Port of the inbound listener of every sidecar. Endpoints of workloads with a
    /// sidecar are reached through it; `None` sends traffic straight to the app.
    pub inbound_proxy_port: Option<u16>,
    /// The root namespace: mesh-wide policies live there.
    pub root_namespace: String,
    /// MeshConfig `outboundTrafficPolicy.mode` (Istio's default: `ALLOW_ANY`); a
    /// workload's Sidecar may override it.
    pub outbound_traffic_policy: config::OutboundTrafficPolicy,
    /// MeshConfig `accessLogFile` and `accessLogEncoding`, when a mesh config was read.
    pub access_log: Option<config::MeshAccessLog>,
    /// MeshConfig's tracing: `extensionProviders` (OpenTelemetry collectors),
    /// `defaultProviders.tracing`, `defaultConfig.tracing.sampling`.
    pub tracing: config::MeshTracing,
    /// MeshConfig `localityLbSetting`: locality load balancing where no
    /// DestinationRule sets it (Istio's default: on, with no distribute or failover).
    pub locality_lb: skiff_api::networking::LocalityLoadBalancerSetting,
}

impl Default for MeshOptions {
    fn default() -> Self {
        MeshOptions {
            domain_suffix: "cluster.local".to_string(),
            trust_domain: "cluster.local".to_string(),
            trust_domain_aliases: Vec::new(),
            inbound_proxy_port: Some(15006),
            root_namespace: "istio-system".to_string(),
            outbound_traffic_policy: config::OutboundTrafficPolicy::AllowAny,
            access_log: None,
            tracing: config::MeshTracing::default(),
            locality_lb: locality::mesh_default(),
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Building a mesh from YAML text in unit tests.

    use crate::{Mesh, MeshOptions};

    /// Loads YAML text (failing on load errors) and builds the mesh.
    pub(crate) fn mesh(yaml: &str) -> Mesh {
        let loaded = skiff_api::load_str("test.yaml", yaml);
        let errors: Vec<String> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(ToString::to_string)
            .collect();
        assert!(errors.is_empty(), "load errors:\n{}", errors.join("\n"));
        Mesh::build(&loaded.resources, MeshOptions::default())
    }

    /// The messages of the mesh's diagnostics with this code.
    pub(crate) fn messages(mesh: &Mesh, code: crate::diagnostic::Code) -> Vec<String> {
        mesh.diagnostics()
            .iter()
            .filter(|d| d.code == code)
            .map(|d| d.message.clone())
            .collect()
    }
}
