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

use std::sync::Arc;

use crate::config::{Fault, Node, ProxyConfig, ProxyKind, ProxyParts, SharedConfig};
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

/// The clusters a proxy's routes name, with what goes with the routes, into the
/// shared part.
fn upstreams(mut c: Compiler<'_>, shared: &mut SharedConfig) {
    let mut clusters = cluster::build(&c);
    let missing_clusters = cluster::missing(&c);
    if !missing_clusters.is_empty() {
        clusters.retain(|cl| !missing_clusters.contains_key(&cl.name));
    }
    shared.workload_labels = workload_labels(c.mesh, &clusters);
    shared.clusters = clusters;
    shared.missing_clusters = missing_clusters;
    shared.faults = std::mem::take(&mut c.faults);
    shared.http_policies = std::mem::take(&mut c.http_policies);
}

/// What decides a sidecar's view, besides the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ViewKey {
    namespace: String,
    /// Locality load balancing orders endpoints by their distance from the client.
    locality: crate::locality::Locality,
    /// The workload's value of each of the mesh's client label keys, in key order.
    labels: Vec<Option<String>>,
}

impl ViewKey {
    pub(crate) fn of(mesh: &Mesh, workload: &Workload) -> ViewKey {
        ViewKey {
            namespace: workload.namespace.clone(),
            locality: workload.locality.clone(),
            labels: mesh
                .rules()
                .client_label_keys()
                .iter()
                .map(|k| workload.labels.get(k).cloned())
                .collect(),
        }
    }
}

/// Views compiled so far, for compiling many proxies of one mesh.
#[derive(Debug, Default)]
pub(crate) struct ViewCache {
    views: HashMap<ViewKey, Arc<SharedConfig>>,
}

impl ViewCache {
    /// How many distinct views were compiled.
    pub(crate) fn len(&self) -> usize {
        self.views.len()
    }
}

/// The shared part of a sidecar: what it sees, as its view decides.
fn sidecar_view(mesh: &Mesh, workload: &Workload) -> SharedConfig {
    let mut c = Compiler::new(mesh, workload);
    let mut shared = SharedConfig {
        outbound: outbound::build(&mut c),
        outbound_traffic_policy: mesh
            .rules()
            .sidecar_for(&workload.namespace, &workload.labels)
            .and_then(|s| s.outbound_traffic_policy)
            .unwrap_or(mesh.options().outbound_traffic_policy),
        ..SharedConfig::default()
    };
    upstreams(c, &mut shared);
    shared
}

impl<'m> Compiler<'m> {
    fn new(mesh: &'m Mesh, workload: &'m Workload) -> Self {
        Compiler {
            mesh,
            workload,
            clusters: HashMap::new(),
            faults: BTreeMap::new(),
            http_policies: BTreeMap::new(),
        }
    }
}

/// Compiles workload `w`'s proxy, in its own and shared parts. With `views`, a sidecar
/// whose view was compiled before shares that view's part; the result is equal
/// either way.
pub(crate) fn proxy_parts(mesh: &Mesh, w: usize, views: Option<&mut ViewCache>) -> ProxyParts {
    let workload = &mesh.registry().workloads()[w];
    let gateways: Vec<_> = mesh.rules().gateways_of(w).collect();
    let kind = if gateways.is_empty() {
        ProxyKind::Sidecar
    } else {
        ProxyKind::Gateway
    };
    let mut own = ProxyConfig {
        node: node(mesh, workload, kind),
        ..ProxyConfig::default()
    };
    let shared = match kind {
        ProxyKind::Sidecar => {
            own.inbound = inbound::build(&Compiler::new(mesh, workload), w);
            match views {
                Some(cache) => cache
                    .views
                    .entry(ViewKey::of(mesh, workload))
                    .or_insert_with(|| Arc::new(sidecar_view(mesh, workload)))
                    .clone(),
                None => Arc::new(sidecar_view(mesh, workload)),
            }
        }
        ProxyKind::Gateway => {
            let mut c = Compiler::new(mesh, workload);
            own.gateway = gateway::build(&mut c, &gateways);
            let mut shared = SharedConfig::default();
            upstreams(c, &mut shared);
            Arc::new(shared)
        }
    };
    own.policies = mesh
        .rules()
        .policies()
        .for_workload(&workload.namespace, &workload.labels);
    own.telemetry = mesh
        .rules()
        .telemetry()
        .for_workload(&workload.namespace, &workload.labels);
    own.telemetry.resolve_tracing(&mesh.options().tracing);
    own.mesh_access_log = mesh.options().access_log.clone();
    ProxyParts { own, shared }
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
