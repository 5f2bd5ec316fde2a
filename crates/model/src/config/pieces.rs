//! The shared part of a configuration as named pieces, one per concern: a port, a
//! virtual host, a cluster, a cluster's endpoints, and what is left for the whole mesh.
//!
//! The control plane sends each piece as its own resource, so a change sends only the
//! pieces it touched: an endpoint that moves changes one `endpoints/…` piece, a
//! VirtualService edit the `vhost/…` pieces of its host. Two views that see a service
//! alike hold byte-identical pieces for it, which the control plane encodes once.
//!
//! [`SharedConfig::pieces`] and [`SharedConfig::from_pieces`] are exact inverses: the
//! pieces of a config joined again give the same config.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    Cluster, Endpoint, Fault, HttpRoutePolicy, OutboundPort, OutboundTrafficPolicy, Protocol,
    SharedConfig, TcpRoute, VirtualHost,
};

/// Labels of workloads, by workload (as [`SharedConfig::workload_labels`]).
type WorkloadLabels = BTreeMap<String, BTreeMap<String, String>>;

/// One piece of a [`SharedConfig`]; its name ([`SharedConfig::pieces`]) says which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SharedPiece {
    /// `port/<port>`: an outbound port, without its virtual hosts.
    Port(PortPiece),
    /// `vhost/<port>/<name>`: one virtual host of a port, with the faults and header
    /// rules of its routes.
    VirtualHost(VirtualHostPiece),
    /// `cluster/<name>`: a cluster, without its endpoints.
    Cluster(Box<Cluster>),
    /// `cluster/<name>`: a cluster routes name but that does not exist, and why.
    MissingCluster(String),
    /// `endpoints/<cluster>`: the endpoints of a cluster and the labels of their
    /// workloads. Absent when the cluster has none.
    Endpoints(EndpointsPiece),
    /// `mesh`: what belongs to no port or cluster.
    Mesh(MeshPiece),
}

/// An outbound port without its virtual hosts (they are pieces of their own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortPiece {
    /// [`OutboundPort::port`].
    pub port: u16,
    /// [`OutboundPort::protocol`].
    pub protocol: Protocol,
    /// [`OutboundPort::tcp`], in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpRoute>,
    /// The names of the port's virtual hosts, when their order is not the order of
    /// their names (it is, as the model compiles them; kept so that any order
    /// survives).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<String>,
}

/// One virtual host of an outbound port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualHostPiece {
    /// The port it belongs to.
    pub port: u16,
    /// The virtual host.
    pub virtual_host: VirtualHost,
    /// The faults of its routes, by route name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub faults: BTreeMap<String, Fault>,
    /// The header rules, mirrors and CORS of its routes, by route name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub http_policies: BTreeMap<String, HttpRoutePolicy>,
}

/// The endpoints of one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointsPiece {
    /// The cluster's name.
    pub cluster: String,
    /// [`Cluster::endpoints`].
    pub endpoints: Vec<Endpoint>,
    /// The telemetry labels of the endpoints' workloads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub workload_labels: WorkloadLabels,
}

/// What belongs to the whole view rather than to one port or cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MeshPiece {
    /// [`SharedConfig::outbound_traffic_policy`].
    #[serde(
        default,
        skip_serializing_if = "OutboundTrafficPolicy::is_registry_only"
    )]
    pub outbound_traffic_policy: OutboundTrafficPolicy,
    /// Faults of routes no virtual host holds (none, as the model compiles).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub faults: BTreeMap<String, Fault>,
    /// Header rules of routes no virtual host holds (none, as the model compiles).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub http_policies: BTreeMap<String, HttpRoutePolicy>,
    /// Labels of workloads no endpoint names (none, as the model compiles).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub workload_labels: WorkloadLabels,
}

/// The name of the [`SharedPiece::Mesh`] piece.
pub const MESH_PIECE: &str = "mesh";

/// Why pieces do not join into a config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PieceError {
    /// A piece's name does not fit its kind.
    #[error("piece {name:?} holds {kind}, which belongs under another name")]
    Misnamed {
        /// The piece's name.
        name: String,
        /// What it holds.
        kind: &'static str,
    },
    /// A virtual host belongs to a port no piece describes.
    #[error("virtual host piece {name:?} belongs to port {port}, which no port piece describes")]
    NoPort {
        /// The piece's name.
        name: String,
        /// Its port.
        port: u16,
    },
}

impl SharedPiece {
    fn kind(&self) -> &'static str {
        match self {
            SharedPiece::Port(_) => "a port",
            SharedPiece::VirtualHost(_) => "a virtual host",
            SharedPiece::Cluster(_) => "a cluster",
            SharedPiece::MissingCluster(_) => "a missing cluster",
            SharedPiece::Endpoints(_) => "endpoints",
            SharedPiece::Mesh(_) => "the mesh-wide piece",
        }
    }

    /// Checks that `name` is a name this piece may have (without building the name
    /// it should have: a proxy checks every piece it receives).
    pub fn fits(&self, name: &str) -> Result<(), PieceError> {
        let base = name.split_once('#').map_or(name, |(base, _)| base);
        let port_is = |rest: &str, port: u16| rest.parse::<u16>().is_ok_and(|p| p == port);
        let fits = match self {
            SharedPiece::Port(p) => base
                .strip_prefix("port/")
                .is_some_and(|r| port_is(r, p.port)),
            SharedPiece::VirtualHost(v) => base
                .strip_prefix("vhost/")
                .and_then(|r| r.split_once('/'))
                .is_some_and(|(port, host)| port_is(port, v.port) && host == v.virtual_host.name),
            SharedPiece::Cluster(c) => base.strip_prefix("cluster/") == Some(c.name.as_str()),
            SharedPiece::MissingCluster(_) => {
                base.strip_prefix("cluster/").is_some_and(|c| !c.is_empty())
            }
            SharedPiece::Endpoints(e) => {
                base.strip_prefix("endpoints/") == Some(e.cluster.as_str())
            }
            SharedPiece::Mesh(_) => base == MESH_PIECE,
        };
        if fits {
            Ok(())
        } else {
            Err(PieceError::Misnamed {
                name: name.to_owned(),
                kind: self.kind(),
            })
        }
    }
}

impl SharedPiece {
    /// The names of the clusters this piece's routes send to (forward destinations,
    /// mirrors and TCP routes): what a proxy that holds it must hold too.
    pub fn clusters(&self) -> Vec<&str> {
        let mut out: Vec<&str> = match self {
            SharedPiece::VirtualHost(v) => v
                .virtual_host
                .routes
                .iter()
                .flat_map(|r| match &r.action {
                    super::RouteAction::Forward(f) => f.destinations.as_slice(),
                    _ => &[],
                })
                .map(|d| d.cluster.as_str())
                .chain(
                    v.http_policies
                        .values()
                        .flat_map(|p| p.mirrors.iter().map(|m| m.cluster.as_str())),
                )
                .collect(),
            SharedPiece::Port(p) => p
                .tcp
                .iter()
                .flat_map(|r| r.destinations.iter().map(|d| d.cluster.as_str()))
                .collect(),
            _ => Vec::new(),
        };
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The names a request's authority may use to reach this piece's virtual host
    /// (empty for other pieces).
    pub fn domains(&self) -> &[String] {
        match self {
            SharedPiece::VirtualHost(v) => &v.virtual_host.domains,
            _ => &[],
        }
    }
}

fn port_name(port: u16) -> String {
    format!("port/{port}")
}

fn vhost_name(port: u16, name: &str) -> String {
    format!("vhost/{port}/{name}")
}

fn cluster_name(name: &str) -> String {
    format!("cluster/{name}")
}

fn endpoints_name(cluster: &str) -> String {
    format!("endpoints/{cluster}")
}

/// Whether `name` names the endpoints of a cluster (`endpoints/<cluster>`).
pub fn is_endpoints_piece(name: &str) -> bool {
    name.starts_with("endpoints/")
}

impl SharedConfig {
    /// The config as named pieces, sorted by name. Names are unique.
    pub fn pieces(&self) -> Vec<(String, SharedPiece)> {
        self.clone().into_pieces()
    }

    /// [`SharedConfig::pieces`], taking the config apart instead of copying it.
    pub fn into_pieces(self) -> Vec<(String, SharedPiece)> {
        let SharedConfig {
            outbound,
            clusters,
            faults,
            http_policies,
            missing_clusters,
            outbound_traffic_policy,
            workload_labels,
        } = self;
        // A rule keeps its name in every virtual host it is compiled into, and a
        // workload is an endpoint of each subset it is in: copy them to each user,
        // and what no one used goes to the mesh piece.
        let mut used_workloads = std::collections::HashSet::new();
        let mut pieces = Vec::new();
        for port in outbound {
            let in_name_order = port.virtual_hosts.windows(2).all(|w| w[0].name < w[1].name);
            pieces.push((
                port_name(port.port),
                SharedPiece::Port(PortPiece {
                    port: port.port,
                    protocol: port.protocol,
                    tcp: port.tcp,
                    order: if in_name_order {
                        Vec::new()
                    } else {
                        port.virtual_hosts.iter().map(|v| v.name.clone()).collect()
                    },
                }),
            ));
            for vhost in port.virtual_hosts {
                let mut piece = VirtualHostPiece {
                    port: port.port,
                    virtual_host: vhost,
                    faults: BTreeMap::new(),
                    http_policies: BTreeMap::new(),
                };
                for route in &piece.virtual_host.routes {
                    if let Some(f) = faults.get(&route.name) {
                        piece.faults.insert(route.name.clone(), f.clone());
                    }
                    if let Some(p) = http_policies.get(&route.name) {
                        piece.http_policies.insert(route.name.clone(), p.clone());
                    }
                }
                pieces.push((
                    vhost_name(port.port, &piece.virtual_host.name),
                    SharedPiece::VirtualHost(piece),
                ));
            }
        }
        for mut cluster in clusters {
            let endpoints = std::mem::take(&mut cluster.endpoints);
            let name = cluster.name.clone();
            pieces.push((cluster_name(&name), SharedPiece::Cluster(Box::new(cluster))));
            if endpoints.is_empty() {
                continue;
            }
            let mut labels = WorkloadLabels::new();
            for e in &endpoints {
                if let Some(l) = workload_labels.get(&e.workload) {
                    used_workloads.insert(e.workload.clone());
                    labels.insert(e.workload.clone(), l.clone());
                }
            }
            pieces.push((
                endpoints_name(&name),
                SharedPiece::Endpoints(EndpointsPiece {
                    cluster: name,
                    endpoints,
                    workload_labels: labels,
                }),
            ));
        }
        for (name, reason) in missing_clusters {
            pieces.push((cluster_name(&name), SharedPiece::MissingCluster(reason)));
        }
        let in_vhosts = |name: &String| {
            pieces.iter().any(|(_, p)| match p {
                SharedPiece::VirtualHost(v) => {
                    v.faults.contains_key(name) || v.http_policies.contains_key(name)
                }
                _ => false,
            })
        };
        let leftover_faults: BTreeMap<String, Fault> = faults
            .iter()
            .filter(|(name, _)| !in_vhosts(name))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let leftover_policies: BTreeMap<String, HttpRoutePolicy> = http_policies
            .iter()
            .filter(|(name, _)| !in_vhosts(name))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let leftover_labels: WorkloadLabels = workload_labels
            .into_iter()
            .filter(|(w, _)| !used_workloads.contains(w))
            .collect();
        pieces.push((
            MESH_PIECE.to_owned(),
            SharedPiece::Mesh(MeshPiece {
                outbound_traffic_policy,
                faults: leftover_faults,
                http_policies: leftover_policies,
                workload_labels: leftover_labels,
            }),
        ));
        pieces.sort_by(|a, b| a.0.cmp(&b.0));
        // A name twice (two virtual hosts of one name on a port, a cluster both
        // present and missing) would lose one of them: keep every one, numbered.
        let mut run = 1;
        for i in 1..pieces.len() {
            let (before, after) = pieces.split_at_mut(i);
            let base = before[i - 1]
                .0
                .split_once('#')
                .map_or(before[i - 1].0.as_str(), |(b, _)| b);
            if after[0].0 == base {
                run += 1;
                after[0].0.push_str(&format!("#{run}"));
            } else {
                run = 1;
            }
        }
        pieces.sort_by(|a, b| a.0.cmp(&b.0));
        pieces
    }

    /// Checks that pieces, each of which [`fits`](SharedPiece::fits) its name, join
    /// ([`SharedConfig::from_pieces`] succeeds) without joining them.
    pub fn check_pieces<'a>(
        pieces: impl IntoIterator<Item = (&'a str, &'a SharedPiece)>,
    ) -> Result<(), PieceError> {
        let mut ports = std::collections::BTreeSet::new();
        let mut vhosts = Vec::new();
        for (name, piece) in pieces {
            match piece {
                SharedPiece::Port(p) => {
                    ports.insert(p.port);
                }
                SharedPiece::VirtualHost(v) => vhosts.push((name, v.port)),
                _ => {}
            }
        }
        match vhosts.into_iter().find(|(_, port)| !ports.contains(port)) {
            Some((name, port)) => Err(PieceError::NoPort {
                name: name.to_owned(),
                port,
            }),
            None => Ok(()),
        }
    }

    /// Joins pieces (as [`SharedConfig::pieces`] names them, in any order) into a
    /// config.
    pub fn from_pieces<'a>(
        pieces: impl IntoIterator<Item = (&'a str, &'a SharedPiece)>,
    ) -> Result<SharedConfig, PieceError> {
        let mut config = SharedConfig::default();
        let mut ports: BTreeMap<u16, (OutboundPort, Vec<String>)> = BTreeMap::new();
        let mut vhosts: Vec<(&str, &VirtualHostPiece)> = Vec::new();
        let mut endpoints: BTreeMap<&str, &EndpointsPiece> = BTreeMap::new();
        for (name, piece) in pieces {
            piece.fits(name)?;
            let base = name.split_once('#').map_or(name, |(base, _)| base);
            match piece {
                SharedPiece::Port(p) => {
                    ports.insert(
                        p.port,
                        (
                            OutboundPort {
                                port: p.port,
                                protocol: p.protocol,
                                virtual_hosts: Vec::new(),
                                tcp: p.tcp.clone(),
                            },
                            p.order.clone(),
                        ),
                    );
                }
                SharedPiece::VirtualHost(v) => vhosts.push((name, v)),
                SharedPiece::Cluster(c) => config.clusters.push(Cluster::clone(c)),
                SharedPiece::MissingCluster(reason) => {
                    let cluster = &base["cluster/".len()..];
                    config
                        .missing_clusters
                        .insert(cluster.to_owned(), reason.clone());
                }
                SharedPiece::Endpoints(e) => {
                    endpoints.insert(e.cluster.as_str(), e);
                }
                SharedPiece::Mesh(m) => {
                    config.outbound_traffic_policy = m.outbound_traffic_policy;
                    merge(&mut config.faults, &m.faults);
                    merge(&mut config.http_policies, &m.http_policies);
                    merge(&mut config.workload_labels, &m.workload_labels);
                }
            }
        }
        vhosts.sort_by(|a, b| a.1.virtual_host.name.cmp(&b.1.virtual_host.name));
        for (name, v) in vhosts {
            let Some((port, _)) = ports.get_mut(&v.port) else {
                return Err(PieceError::NoPort {
                    name: name.to_owned(),
                    port: v.port,
                });
            };
            port.virtual_hosts.push(v.virtual_host.clone());
            merge(&mut config.faults, &v.faults);
            merge(&mut config.http_policies, &v.http_policies);
        }
        config.outbound = ports
            .into_values()
            .map(|(mut port, order)| {
                if !order.is_empty() {
                    let rank = |name: &str| order.iter().position(|n| n == name);
                    port.virtual_hosts.sort_by_key(|v| rank(&v.name));
                }
                port
            })
            .collect();
        config.clusters.sort_by(|a, b| a.name.cmp(&b.name));
        for cluster in &mut config.clusters {
            if let Some(e) = endpoints.get(cluster.name.as_str()) {
                cluster.endpoints = e.endpoints.clone();
                merge(&mut config.workload_labels, &e.workload_labels);
            }
        }
        Ok(config)
    }
}

fn merge<V: Clone>(into: &mut BTreeMap<String, V>, from: &BTreeMap<String, V>) {
    for (k, v) in from {
        into.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

#[cfg(test)]
mod tests;
