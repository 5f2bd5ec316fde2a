//! The mesh model of skiff.
//!
//! From a validated set of Istio and Kubernetes resources (see `skiff-api`), this crate
//! builds the registry of the mesh (services, their ports and protocols, the workloads
//! behind them, subsets) and compiles it into one [`config::ProxyConfig`] per proxy.
//! Everything here is pure and deterministic: no I/O, stable ordering. The control
//! plane, `skiff analyze` and `skiff explain` all use this same code.

#![warn(missing_docs)]

mod compile;
pub mod config;
pub mod diagnostic;
pub mod host;
mod mesh;
pub mod protocol;
pub mod registry;
pub mod rules;

pub use diagnostic::{Diagnostic, Severity};
pub use mesh::Mesh;

/// Mesh-wide settings the model needs (Istio's MeshConfig, the parts that matter here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshOptions {
    /// DNS suffix of Kubernetes services: `name.namespace.svc.<domain_suffix>`.
    pub domain_suffix: String,
    /// Trust domain of SPIFFE identities: `spiffe://<trust_domain>/ns/<ns>/sa/<sa>`.
    pub trust_domain: String,
    /// Port of the inbound listener of every sidecar. Endpoints of workloads with a
    /// sidecar are reached through it; `None` sends traffic straight to the app.
    pub inbound_proxy_port: Option<u16>,
    /// The root namespace: mesh-wide policies live there.
    pub root_namespace: String,
}

impl Default for MeshOptions {
    fn default() -> Self {
        MeshOptions {
            domain_suffix: "cluster.local".to_string(),
            trust_domain: "cluster.local".to_string(),
            inbound_proxy_port: Some(15006),
            root_namespace: "istio-system".to_string(),
        }
    }
}
