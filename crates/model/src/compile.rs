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
    shared.faults = std::mem::take(&mut c.faults);
    shared.http_policies = std::mem::take(&mut c.http_policies);
    clusters_of(&c, shared);
}

/// The clusters `c`'s routes name, with their endpoints, and the telemetry labels of
/// the workloads behind them.
fn clusters_of(c: &Compiler<'_>, shared: &mut SharedConfig) {
    let mut clusters = cluster::build(c);
    let missing_clusters = cluster::missing(c);
    if !missing_clusters.is_empty() {
        clusters.retain(|cl| !missing_clusters.contains_key(&cl.name));
    }
    shared.workload_labels = workload_labels(c.mesh, &clusters);
    shared.clusters = clusters;
    shared.missing_clusters = missing_clusters;
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
    /// The routes of views compiled for an earlier mesh whose routes were built from
    /// the same resources: only their clusters are built again.
    routes: Option<HashMap<ViewKey, Arc<ViewRoutes>>>,
    /// The routes of the views compiled now, for the next mesh.
    compiled_routes: HashMap<ViewKey, Arc<ViewRoutes>>,
    /// How many views had their routes compiled (the others reused them).
    routes_compiled: usize,
}

impl ViewCache {
    /// A cache that takes the routes of each view from `routes` when it has them.
    pub(crate) fn with_routes(routes: HashMap<ViewKey, Arc<ViewRoutes>>) -> Self {
        ViewCache {
            routes: Some(routes),
            ..ViewCache::default()
        }
    }

    /// How many distinct views were compiled.
    pub(crate) fn len(&self) -> usize {
        self.views.len()
    }

    /// How many of them had their routes compiled rather than reused.
    pub(crate) fn routes_compiled(&self) -> usize {
        self.routes_compiled
    }

    /// The routes of every view compiled, for the next mesh.
    pub(crate) fn into_routes(self) -> HashMap<ViewKey, Arc<ViewRoutes>> {
        self.compiled_routes
    }

    fn view(&mut self, mesh: &Mesh, workload: &Workload) -> Arc<SharedConfig> {
        let key = ViewKey::of(mesh, workload);
        if let Some(view) = self.views.get(&key) {
            return view.clone();
        }
        let kept = self.routes.as_ref().and_then(|r| r.get(&key)).cloned();
        let routes = kept.unwrap_or_else(|| {
            self.routes_compiled += 1;
            Arc::new(ViewRoutes::compile(mesh, workload))
        });
        let view = Arc::new(routes.view(mesh, workload));
        self.compiled_routes.insert(key.clone(), routes);
        self.views.insert(key, view.clone());
        view
    }
}

/// What compiling a sidecar view's routes gives, before the clusters they name are
/// built: it depends on the services, the routing rules and the view, never on the
/// endpoints, so a change of endpoints only builds the clusters again.
#[derive(Debug)]
pub(crate) struct ViewRoutes {
    outbound: Vec<crate::config::OutboundPort>,
    outbound_traffic_policy: crate::config::OutboundTrafficPolicy,
    clusters: HashMap<String, ClusterKey>,
    faults: BTreeMap<String, Fault>,
    http_policies: BTreeMap<String, crate::config::HttpRoutePolicy>,
}

impl ViewRoutes {
    fn compile(mesh: &Mesh, workload: &Workload) -> ViewRoutes {
        let mut c = Compiler::new(mesh, workload);
        let outbound = outbound::build(&mut c);
        ViewRoutes {
            outbound,
            outbound_traffic_policy: mesh
                .rules()
                .sidecar_for(&workload.namespace, &workload.labels)
                .and_then(|s| s.outbound_traffic_policy)
                .unwrap_or(mesh.options().outbound_traffic_policy),
            clusters: c.clusters,
            faults: c.faults,
            http_policies: c.http_policies,
        }
    }

    /// The shared part of a sidecar with these routes in `mesh`.
    fn into_view(self, mesh: &Mesh, workload: &Workload) -> SharedConfig {
        let mut c = Compiler::new(mesh, workload);
        c.clusters = self.clusters;
        let mut shared = SharedConfig {
            outbound: self.outbound,
            outbound_traffic_policy: self.outbound_traffic_policy,
            faults: self.faults,
            http_policies: self.http_policies,
            ..SharedConfig::default()
        };
        clusters_of(&c, &mut shared);
        shared
    }

    /// [`ViewRoutes::into_view`], keeping these routes.
    fn view(&self, mesh: &Mesh, workload: &Workload) -> SharedConfig {
        let mut c = Compiler::new(mesh, workload);
        c.clusters = self.clusters.clone();
        let mut shared = SharedConfig {
            outbound: self.outbound.clone(),
            outbound_traffic_policy: self.outbound_traffic_policy,
            faults: self.faults.clone(),
            http_policies: self.http_policies.clone(),
            ..SharedConfig::default()
        };
        clusters_of(&c, &mut shared);
        shared
    }
}

/// The shared part of a sidecar: what it sees, as its view decides.
fn sidecar_view(mesh: &Mesh, workload: &Workload) -> SharedConfig {
    ViewRoutes::compile(mesh, workload).into_view(mesh, workload)
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
                Some(cache) => cache.view(mesh, workload),
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
