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

    /// Checks that `name` is a name this piece may have.
    pub fn fits(&self, name: &str) -> Result<(), PieceError> {
        let base = name.split_once('#').map_or(name, |(base, _)| base);
        let fits = match self {
            SharedPiece::MissingCluster(_) => {
                base.strip_prefix("cluster/").is_some_and(|c| !c.is_empty())
            }
            _ => base == self.name(),
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

    /// The name a piece with this content must have.
    pub fn name(&self) -> String {
        match self {
            SharedPiece::Port(p) => port_name(p.port),
            SharedPiece::VirtualHost(v) => vhost_name(v.port, &v.virtual_host.name),
            SharedPiece::Cluster(c) => cluster_name(&c.name),
            // A missing cluster's name is only in the piece's name.
            SharedPiece::MissingCluster(_) => String::new(),
            SharedPiece::Endpoints(e) => endpoints_name(&e.cluster),
            SharedPiece::Mesh(_) => MESH_PIECE.to_owned(),
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

impl SharedConfig {
    /// The config as named pieces, sorted by name. Names are unique.
    pub fn pieces(&self) -> Vec<(String, SharedPiece)> {
        let mut faults = self.faults.clone();
        let mut http_policies = self.http_policies.clone();
        let mut workload_labels = self.workload_labels.clone();
        let mut pieces = Vec::new();
        for port in &self.outbound {
            let mut names: Vec<&str> = port.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
            let in_name_order = names.is_sorted() && names.windows(2).all(|w| w[0] != w[1]);
            pieces.push((
                port_name(port.port),
                SharedPiece::Port(PortPiece {
                    port: port.port,
                    protocol: port.protocol,
                    tcp: port.tcp.clone(),
                    order: if in_name_order {
                        Vec::new()
                    } else {
                        names.iter().map(|n| (*n).to_owned()).collect()
                    },
                }),
            ));
            names.clear();
            for vhost in &port.virtual_hosts {
                let mut piece = VirtualHostPiece {
                    port: port.port,
                    virtual_host: vhost.clone(),
                    faults: BTreeMap::new(),
                    http_policies: BTreeMap::new(),
                };
                for route in &vhost.routes {
                    if let Some(f) = self.faults.get(&route.name) {
                        faults.remove(&route.name);
                        piece.faults.insert(route.name.clone(), f.clone());
                    }
                    if let Some(p) = self.http_policies.get(&route.name) {
                        http_policies.remove(&route.name);
                        piece.http_policies.insert(route.name.clone(), p.clone());
                    }
                }
                pieces.push((
                    vhost_name(port.port, &vhost.name),
                    SharedPiece::VirtualHost(piece),
                ));
            }
        }
        for cluster in &self.clusters {
            let mut bare = cluster.clone();
            let endpoints = std::mem::take(&mut bare.endpoints);
            pieces.push((
                cluster_name(&cluster.name),
                SharedPiece::Cluster(Box::new(bare)),
            ));
            if endpoints.is_empty() {
                continue;
            }
            let mut labels = WorkloadLabels::new();
            for e in &endpoints {
                if let Some(l) = self.workload_labels.get(&e.workload) {
                    workload_labels.remove(&e.workload);
                    labels.insert(e.workload.clone(), l.clone());
                }
            }
            pieces.push((
                endpoints_name(&cluster.name),
                SharedPiece::Endpoints(EndpointsPiece {
                    cluster: cluster.name.clone(),
                    endpoints,
                    workload_labels: labels,
                }),
            ));
        }
        for (name, reason) in &self.missing_clusters {
            pieces.push((
                cluster_name(name),
                SharedPiece::MissingCluster(reason.clone()),
            ));
        }
        pieces.push((
            MESH_PIECE.to_owned(),
            SharedPiece::Mesh(MeshPiece {
                outbound_traffic_policy: self.outbound_traffic_policy,
                faults,
                http_policies,
                workload_labels,
            }),
        ));
        pieces.sort_by(|a, b| a.0.cmp(&b.0));
        // A name twice (two virtual hosts of one name on a port, a cluster both
        // present and missing) would lose one of them: keep every one, numbered.
        let mut seen = std::collections::HashMap::<String, usize>::new();
        for (name, _) in pieces.iter_mut() {
            let n = seen.entry(name.clone()).or_default();
            *n += 1;
            if *n > 1 {
                name.push_str(&format!("#{n}"));
            }
        }
        pieces.sort_by(|a, b| a.0.cmp(&b.0));
        pieces
    }

    /// Checks that pieces join ([`SharedConfig::from_pieces`] succeeds) without
    /// joining them.
    pub fn check_pieces<'a>(
        pieces: impl IntoIterator<Item = (&'a str, &'a SharedPiece)>,
    ) -> Result<(), PieceError> {
        let mut ports = std::collections::BTreeSet::new();
        let mut vhosts = Vec::new();
        for (name, piece) in pieces {
            piece.fits(name)?;
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
