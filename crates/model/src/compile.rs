//! The per-proxy compiler: from the mesh to one [`ProxyConfig`].
//!
//! The phases, each in its own file: `outbound` (virtual hosts and routes for every
//! service the proxy sees), `gateway` (listeners of gateway proxies), `inbound` (the
//! workload's own ports), `route` (VirtualService rules instantiated for a port and a
//! place), `cluster` (only the clusters the routes name, with endpoints and policy).

mod cluster;
mod gateway;
mod inbound;
mod l4;
mod outbound;
mod route;
mod scope;
mod tls;

use std::collections::{BTreeMap, HashMap};

use crate::config::{Fault, Node, ProxyConfig, ProxyKind};
use crate::mesh::Mesh;
use crate::registry::Workload;

/// A cluster a route names: service host, port and subset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ClusterKey {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) subset: Option<String>,
    /// The service the host names, when it is one (index into the registry).
    pub(crate) service: Option<usize>,
}

impl ClusterKey {
    /// `outbound|<port>|<subset>|<host>`.
    pub(crate) fn name(&self) -> String {
        crate::config::Cluster::name_for(self.port, self.subset.as_deref(), &self.host)
    }
}

/// State while compiling one proxy.
pub(crate) struct Compiler<'m> {
    pub(crate) mesh: &'m Mesh,
    pub(crate) workload: &'m Workload,
    /// Referenced clusters, by name (sorted when the clusters are built).
    pub(crate) clusters: HashMap<String, ClusterKey>,
    /// Faults of the routes compiled so far, by route name.
    pub(crate) faults: BTreeMap<String, Fault>,
    /// Header rules, mirrors and CORS of the routes compiled so far, by route name.
    pub(crate) http_policies: BTreeMap<String, crate::config::HttpRoutePolicy>,
}

impl Compiler<'_> {
    /// Notes that a route uses a cluster, and returns its name.
    pub(crate) fn use_cluster(&mut self, key: ClusterKey) -> String {
        let name = key.name();
        if !self.clusters.contains_key(&name) {
            self.clusters.insert(name.clone(), key);
        }
        name
    }
}

pub(crate) fn proxy_config(mesh: &Mesh, w: usize) -> ProxyConfig {
    let workload = &mesh.registry().workloads()[w];
    let gateways: Vec<_> = mesh.rules().gateways_of(w).collect();
    let kind = if gateways.is_empty() {
        ProxyKind::Sidecar
    } else {
        ProxyKind::Gateway
    };
    let mut c = Compiler {
        mesh,
        workload,
        clusters: HashMap::new(),
        faults: BTreeMap::new(),
        http_policies: BTreeMap::new(),
    };
    let mut config = ProxyConfig {
        node: node(mesh, workload, kind),
        ..ProxyConfig::default()
    };
    match kind {
        ProxyKind::Sidecar => {
            config.outbound = outbound::build(&mut c);
            config.inbound = inbound::build(&c, w);
            config.outbound_traffic_policy = mesh
                .rules()
                .sidecar_for(&workload.namespace, &workload.labels)
                .and_then(|s| s.outbound_traffic_policy)
                .unwrap_or(mesh.options().outbound_traffic_policy);
        }
        ProxyKind::Gateway => config.gateway = gateway::build(&mut c, &gateways),
    }
    config.clusters = cluster::build(&c);
    config.missing_clusters = cluster::missing(&c);
    if !config.missing_clusters.is_empty() {
        let missing = &config.missing_clusters;
        config.clusters.retain(|cl| !missing.contains_key(&cl.name));
    }
    config.workload_labels = workload_labels(mesh, &config.clusters);
    config.faults = std::mem::take(&mut c.faults);
    config.http_policies = std::mem::take(&mut c.http_policies);
    config.policies = mesh
        .rules()
        .policies()
        .for_workload(&workload.namespace, &workload.labels);
    config.telemetry = mesh
        .rules()
        .telemetry()
        .for_workload(&workload.namespace, &workload.labels);
    config.telemetry.resolve_tracing(&mesh.options().tracing);
    config.mesh_access_log = mesh.options().access_log.clone();
    config
}

/// The telemetry labels of the workloads behind `clusters`' endpoints.
fn workload_labels(
    mesh: &Mesh,
    clusters: &[crate::config::Cluster],
) -> BTreeMap<String, BTreeMap<String, String>> {
    let registry = mesh.registry();
    let mut wanted: BTreeMap<&str, ()> = BTreeMap::new();
    for c in clusters {
        for e in &c.endpoints {
            wanted.insert(&e.workload, ());
        }
    }
    let mut out = BTreeMap::new();
    if wanted.is_empty() {
        return out;
    }
    for (i, w) in registry.workloads().iter().enumerate() {
        let id = registry.workload_id(i);
        if !wanted.contains_key(id) {
            continue;
        }
        let labels: BTreeMap<String, String> = crate::config::TELEMETRY_LABELS
            .iter()
            .filter_map(|k| w.labels.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect();
        if !labels.is_empty() {
            out.insert(id.to_owned(), labels);
        }
    }
    out
}

fn node(mesh: &Mesh, w: &Workload, kind: ProxyKind) -> Node {
    Node {
        id: w.id(),
        name: w.name.clone(),
        namespace: w.namespace.clone(),
        kind,
        address: w.address,
        labels: w.labels.clone(),
        service_account: w.service_account.clone(),
        spiffe_id: w.spiffe_id(&mesh.options().trust_domain),
        locality: w.locality.label(),
    }
}

#[cfg(test)]
mod tests;
