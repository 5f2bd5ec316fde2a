//! Scenarios from the seed pages, loaded from YAML fixtures through the api loader,
//! built into a mesh and compiled per proxy.

mod canary;
mod corpus;
mod delegate;
mod deployments;
mod diagnostics;
mod fault;
mod gateway;
mod incremental;
mod policies;
mod security;
mod traffic;
mod views;

use std::path::PathBuf;

use skiff_model::config::{Cluster, ProxyConfig, Route, RouteAction, SharedConfig, VirtualHost};
use skiff_model::diagnostic::Code;
use skiff_model::{Diagnostic, Mesh, MeshOptions, Severity};

/// Loads `tests/fixtures/<name>` (failing on any load error) and builds the mesh.
pub(crate) fn mesh(name: &str) -> Mesh {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let loaded = skiff_api::load(&[&dir]).expect("fixture directory loads");
    let errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "fixture {name} has load errors:\n{}",
        errors.join("\n")
    );
    Mesh::build(&loaded.resources, MeshOptions::default())
}

pub(crate) fn compile(mesh: &Mesh, id: &str) -> ProxyConfig {
    mesh.compile(id).unwrap_or_else(|| {
        panic!(
            "no proxy {id}; proxies: {:?}",
            mesh.proxies().collect::<Vec<_>>()
        )
    })
}

pub(crate) fn vhost<'c>(config: &'c ProxyConfig, port: u16, name: &str) -> &'c VirtualHost {
    let p = config
        .outbound
        .iter()
        .find(|p| p.port == port)
        .expect("outbound port");
    p.virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no virtual host {name} on port {port}"))
}

pub(crate) fn cluster<'c>(config: &'c ProxyConfig, name: &str) -> &'c Cluster {
    config
        .clusters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no cluster {name}; clusters: {:?}",
                config.clusters.iter().map(|c| &c.name).collect::<Vec<_>>()
            )
        })
}

/// `(cluster, weight)` of a forwarding route.
pub(crate) fn forward(route: &Route) -> Vec<(String, u32)> {
    match &route.action {
        RouteAction::Forward(f) => f
            .destinations
            .iter()
            .map(|d| (d.cluster.clone(), d.weight))
            .collect(),
        other => panic!("route {} does not forward: {other:?}", route.name),
    }
}

/// The addresses of a cluster's endpoints, as text.
pub(crate) fn endpoints(c: &Cluster) -> Vec<String> {
    c.endpoints.iter().map(|e| e.address.to_string()).collect()
}

pub(crate) fn findings(mesh: &Mesh, code: Code) -> Vec<&Diagnostic> {
    mesh.diagnostics()
        .iter()
        .filter(|d| d.code == code)
        .collect()
}

pub(crate) fn problems(mesh: &Mesh) -> Vec<String> {
    mesh.diagnostics()
        .iter()
        .filter(|d| d.severity != Severity::Info)
        .map(|d| d.to_string())
        .collect()
}
