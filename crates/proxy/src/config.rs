//! Turns a [`ProxyConfig`] into the runtime [`Snapshot`] the data path reads: port tables,
//! domain maps, compiled matchers and regexes, the cluster table with its load balancers.
//!
//! All validation happens here, off the hot path: an update that would fail at request
//! time (a regex that does not compile, a route naming a missing cluster, a bad header
//! name) is rejected as a whole with the reason, and the proxy keeps its old snapshot.
//! Things that are accepted but not acted on yet are returned as warnings, which the
//! caller logs loudly.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use skiff_model::config::{self as model, Protocol, ProxyConfig, ProxyKind};

use crate::Error;
use crate::transport::UpstreamTls;
use crate::upstream::{ClusterRt, EndpointKey, EndpointRegistry, UpstreamProto};

/// Connect timeout to the local app.
const APP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

mod build;
mod domains;
pub(crate) mod l4;
pub(crate) mod matcher;
pub(crate) mod retry;

pub use domains::DomainIndex;
pub(crate) use domains::strip_port;
pub(crate) use l4::{L4Target, TcpRouteRt};
pub(crate) use matcher::MatchRt;
pub(crate) use retry::RetryRt;

/// What a snapshot is built with besides its config: state shared by all snapshots.
pub(crate) struct BuildInputs<'a> {
    /// Endpoint state (pools, in-flight counts) that outlives snapshots.
    pub(crate) registry: &'a EndpointRegistry,
    /// This workload's mesh identity, for mutual TLS to peers.
    pub(crate) mesh: Option<&'a skiff_identity::MeshTls>,
    /// JWKS keys, fetched once for all snapshots.
    pub(crate) keys: &'a crate::authn::JwksCache,
    /// Where `credentialName`s are read from (local mode).
    pub(crate) credentials: Option<&'a std::path::Path>,
}

/// One immutable, validated, compiled version of a proxy's config. The data path holds an
/// `Arc<Snapshot>` for the life of a request.
#[derive(Debug)]
pub struct Snapshot {
    version: String,
    config: ProxyConfig,
    listen_ip: IpAddr,
    pub(crate) clusters: Vec<ClusterRt>,
    outbound: Vec<PortRoutes>,
    pub(crate) inbound: Vec<InboundRt>,
    /// The workload's AuthorizationPolicies (inbound and gateway requests).
    pub(crate) authz: crate::authz::Authz,
    /// The workload's RequestAuthentication JWT rules (inbound and gateway requests).
    pub(crate) jwt: crate::authn::JwtRules,
    gateway: Vec<PortRoutes>,
    warnings: Vec<String>,
    /// Clusters routes name that do not exist (`ProxyConfig::missing_clusters`): their
    /// index in `clusters` (an empty stand-in) and why, for the `503 NC`.
    missing: Vec<(usize, Arc<str>)>,
}

/// The HTTP route table and TCP routes for one port (outbound or gateway).
#[derive(Debug)]
pub struct PortRoutes {
    /// The port.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
    /// Virtual hosts and how to find them.
    pub http: RouteTable,
    pub(crate) tcp: Vec<TcpRouteRt>,
    /// TLS the (gateway) port terminates.
    pub(crate) tls: Option<Box<crate::gateway::TlsServers>>,
}

/// Virtual hosts of one port with the index that finds them by authority.
#[derive(Debug, Default)]
pub struct RouteTable {
    pub(crate) domains: DomainIndex,
    pub(crate) vhosts: Vec<VirtualHostRt>,
}

/// A compiled virtual host.
#[derive(Debug)]
pub struct VirtualHostRt {
    /// Its name, for logs.
    pub name: Arc<str>,
    pub(crate) routes: Vec<RouteRt>,
}

/// A compiled route.
#[derive(Debug)]
pub struct RouteRt {
    /// Its name, for the access log.
    pub name: Arc<str>,
    pub(crate) matches: Vec<MatchRt>,
    pub(crate) action: ActionRt,
    pub(crate) timeout: Option<Duration>,
    /// Fault injection, when the route's VirtualService rule has one.
    pub(crate) fault: Option<Box<FaultRt>>,
    /// Header rules, mirrors and CORS, when the route's rule has any.
    pub(crate) policy: Option<Box<crate::http_route::HttpPolicyRt>>,
}

/// A compiled `fault`: shares are in millionths of requests.
#[derive(Debug)]
pub(crate) struct FaultRt {
    pub(crate) delay: Option<(Duration, u32)>,
    pub(crate) abort: Option<(StatusCode, u32)>,
    /// `grpcStatus` of the abort: gRPC requests get a trailers-only answer with it.
    pub(crate) abort_grpc: Option<u8>,
}

/// What a compiled route does.
#[derive(Debug)]
pub(crate) enum ActionRt {
    Forward(ForwardRt),
    Redirect(RedirectRt),
    Direct { status: StatusCode, body: Bytes },
}

/// Weighted forwarding, with cluster indexes resolved.
#[derive(Debug)]
pub(crate) struct ForwardRt {
    pub(crate) destinations: WeightedClusters,
    pub(crate) retries: Option<RetryRt>,
    pub(crate) rewrite_uri: Option<Box<str>>,
    pub(crate) rewrite_authority: Option<HeaderValue>,
    /// `uriRegexRewrite`: the pattern and its substitution (in the regex crate's `$N`
    /// form).
    pub(crate) rewrite_regex: Option<Box<(regex::Regex, String)>>,
}

/// Cluster indexes with cumulative weights, for a weighted pick.
#[derive(Debug)]
pub(crate) struct WeightedClusters {
    /// (index into `Snapshot::clusters`, cumulative weight up to and including it,
    /// position among the route's destinations).
    entries: Vec<(usize, u32, usize)>,
    total: u32,
    /// How many destinations the route lists (weight 0 included).
    count: usize,
}

/// A compiled redirect.
#[derive(Debug)]
pub(crate) struct RedirectRt {
    pub(crate) status: StatusCode,
    pub(crate) uri: Option<Box<str>>,
    pub(crate) authority: Option<Box<str>>,
    pub(crate) scheme: Option<Box<str>>,
    pub(crate) port: Option<u16>,
}

/// An inbound port: where the app listens, and the cluster (of that one endpoint) that
/// reaches it.
#[derive(Debug)]
pub(crate) struct InboundRt {
    pub(crate) port: u16,
    pub(crate) protocol: Protocol,
    /// `inbound|<port>||`: the app, with its connection pool.
    pub(crate) cluster: ClusterRt,
    /// `inbound|<port>||`, as route and cluster name in the access log.
    pub(crate) name: Arc<str>,
    /// The port's PeerAuthentication mode.
    pub(crate) mtls: model::MtlsMode,
    /// Which PeerAuthentication decided it, for refusals: `PeerAuthentication prod/default
    /// is STRICT`.
    pub(crate) mtls_decided_by: Arc<str>,
}

impl PortRoutes {
    /// The TCP route for a destination known by name (the name's address, when it is
    /// one, for `destinationSubnets`): see [`PortRoutes::tcp_route_for`].
    pub(crate) fn tcp_route(&self, host: &str) -> Option<&TcpRouteRt> {
        let host = host.to_ascii_lowercase();
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok();
        self.tcp_route_for(&L4Target {
            host: Some(&host),
            ip,
            sni: None,
        })
    }
}

impl WeightedClusters {
    fn compile(
        place: &str,
        dests: &[model::WeightedCluster],
        index: &std::collections::HashMap<&str, usize>,
    ) -> Result<Self, Error> {
        let mut entries = Vec::with_capacity(dests.len());
        let mut total = 0u32;
        for (position, d) in dests.iter().enumerate() {
            let Some(&i) = index.get(d.cluster.as_str()) else {
                return Err(Error::UnknownCluster {
                    route: place.to_owned(),
                    cluster: d.cluster.clone(),
                });
            };
            if d.weight == 0 {
                continue;
            }
            total = total.saturating_add(d.weight);
            entries.push((i, total, position));
        }
        if entries.is_empty() {
            return Err(Error::config(place, "no destination with a weight above 0"));
        }
        Ok(WeightedClusters {
            entries,
            total,
            count: dests.len(),
        })
    }

    /// How many destinations the route lists.
    /// The first destination's cluster: what a request answered before any pick (a
    /// fault) is counted against, as Envoy's route entry names one cluster.
    pub(crate) fn first(&self) -> Option<usize> {
        self.entries.first().map(|e| e.0)
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Picks a cluster index, by weight.
    pub(crate) fn pick(&self) -> usize {
        self.pick_destination().0
    }

    /// Picks by weight: the cluster index and the destination's position in the route.
    pub(crate) fn pick_destination(&self) -> (usize, usize) {
        if self.entries.len() == 1 {
            return (self.entries[0].0, self.entries[0].2);
        }
        let r = crate::upstream::random_below(self.total);
        let at = self.entries.partition_point(|&(_, cum, _)| cum <= r);
        let (cluster, _, position) = self.entries[at.min(self.entries.len() - 1)];
        (cluster, position)
    }
}

impl Snapshot {
    /// Validates and compiles `config`. Endpoint state (connection pools, in-flight
    /// counts) comes from `registry`, so endpoints that survive an update keep their warm
    /// connections. `listen_ip` is where the app's inbound ports are reached.
    pub(crate) fn build(
        version: String,
        config: ProxyConfig,
        listen_ip: IpAddr,
        inputs: &BuildInputs<'_>,
    ) -> Result<Snapshot, Error> {
        let registry = inputs.registry;
        let mut warnings = Vec::new();
        let mut clusters = build::compile_clusters(
            &config,
            registry,
            (inputs.mesh, listen_ip, inputs.credentials),
            &mut warnings,
        )?;
        let missing = build::missing_clusters(&config, registry, &mut clusters, &mut warnings);
        let index: std::collections::HashMap<&str, usize> = clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (&*c.name, i))
            .collect();

        let mut outbound = Vec::with_capacity(config.outbound.len());
        for port in &config.outbound {
            if outbound.iter().any(|p: &PortRoutes| p.port == port.port) {
                return Err(Error::config(
                    format!("outbound port {}", port.port),
                    "listed twice",
                ));
            }
            outbound.push(build::compile_outbound_port(port, &index, &mut warnings)?);
        }
        outbound.sort_by_key(|p| p.port);

        let mut inbound = Vec::with_capacity(config.inbound.len());
        for port in &config.inbound {
            if inbound
                .iter()
                .any(|p: &InboundRt| p.port == port.target_port)
            {
                return Err(Error::config(
                    format!("inbound port {}", port.target_port),
                    "listed twice",
                ));
            }
            let proto = UpstreamProto::for_protocol(port.protocol);
            let key = EndpointKey {
                dial: SocketAddr::new(listen_ip, port.target_port),
                target_port: None,
                proto,
                identity: None,
                pool: None,
            };
            let name: Arc<str> = format!("inbound|{}||", port.target_port).into();
            let app = registry.get(
                key,
                SocketAddr::new(listen_ip, port.target_port),
                None,
                None,
                || UpstreamTls::Plain,
            );
            let mut cluster = ClusterRt::single(name.clone(), proto, app, APP_CONNECT_TIMEOUT);
            // The port's first service (`<fqdn>:<port>`), as Istio's inbound clusters
            // name theirs; `unknown` for a port no service selects.
            cluster.service = Some(match port.services.first() {
                Some(s) => crate::metrics::Service::from_host(
                    s.rsplit_once(':').map_or(s.as_str(), |(host, _)| host),
                ),
                None => crate::metrics::Service::unknown(),
            });
            inbound.push(InboundRt {
                port: port.target_port,
                protocol: port.protocol,
                cluster,
                name,
                mtls: port.mtls,
                mtls_decided_by: build::mtls_decided_by(&config.policies.mtls, port.mtls),
            });
        }
        inbound.sort_by_key(|p| p.port);

        let mut gateway = Vec::with_capacity(config.gateway.len());
        if config.node.kind != ProxyKind::Gateway && !config.gateway.is_empty() {
            warnings.push(format!(
                "{} gateway port(s) in the config of a sidecar are not served",
                config.gateway.len()
            ));
        }
        for port in &config.gateway {
            if gateway.iter().any(|p: &PortRoutes| p.port == port.port) {
                return Err(Error::config(
                    format!("gateway port {}", port.port),
                    "listed twice",
                ));
            }
            if !port.protocol.is_http() && port.tcp.is_empty() && port.tls.is_empty() {
                warnings.push(format!(
                    "gateway port {} ({:?}): no TCP or TLS route is bound to it; the port is not \
                     opened",
                    port.port, port.protocol
                ));
            }
            let place = format!("gateway port {}", port.port);
            gateway.push(PortRoutes {
                port: port.port,
                protocol: port.protocol,
                http: build::compile_table(&place, &port.virtual_hosts, &index, &mut warnings)?,
                tcp: l4::compile_routes(&port.tcp, &index)?,
                tls: if port.tls.is_empty() {
                    None
                } else {
                    let alpn: &[&[u8]] = if port.protocol == Protocol::Https {
                        &[b"h2", b"http/1.1"]
                    } else {
                        &[]
                    };
                    // As Envoy keeps a listener whose secret is missing out of service
                    // while the others serve: this port stays closed, with the reason.
                    match crate::gateway::TlsServers::compile(
                        port.port,
                        &port.tls,
                        alpn,
                        inputs.credentials,
                        inputs.mesh,
                        &mut warnings,
                    ) {
                        Ok(servers) => Some(Box::new(servers)),
                        Err(e) => {
                            warnings.push(format!("{e}; the port is not opened"));
                            None
                        }
                    }
                },
            });
        }
        gateway.sort_by_key(|p| p.port);
        build::attach_faults(&config.faults, &mut outbound, &mut gateway, &mut warnings)?;
        build::attach_policies(
            &config.http_policies,
            &index,
            &mut outbound,
            &mut gateway,
            &mut warnings,
        )?;
        let authz =
            crate::authz::Authz::compile(&config.policies.authorization_policies, &mut warnings)?;
        let jwt = crate::authn::JwtRules::compile(&config.policies.jwt_rules, inputs.keys)?;

        Ok(Snapshot {
            version,
            config,
            listen_ip,
            clusters,
            outbound,
            inbound,
            authz,
            jwt,
            gateway,
            warnings,
            missing,
        })
    }

    /// Why cluster `index` does not exist, when it is the stand-in for a missing one.
    pub(crate) fn missing_cluster(&self, index: usize) -> Option<&Arc<str>> {
        if self.missing.is_empty() {
            return None;
        }
        self.missing
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, why)| why)
    }

    /// Compiles a config on its own, with fresh endpoint state: for tools, tests and
    /// benchmarks that look at routing without running a proxy.
    pub fn compile(version: impl Into<String>, config: ProxyConfig) -> Result<Snapshot, Error> {
        let ip = config
            .node
            .address
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let inputs = BuildInputs {
            registry: &EndpointRegistry::default(),
            mesh: None,
            keys: &crate::authn::JwksCache::new(),
            credentials: None,
        };
        Snapshot::build(version.into(), config, ip, &inputs)
    }

    /// The version this snapshot was built from.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The config this snapshot was built from.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Where this proxy's listeners and its app's inbound ports are.
    pub fn listen_ip(&self) -> IpAddr {
        self.listen_ip
    }

    /// Things the config asks for that this proxy accepts but does not do.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Circuit-breaker counts and outlier ejections of the clusters that have them
    /// (`/config_dump`'s `upstreams`), by cluster name.
    pub fn upstream_status(&self) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = self
            .clusters
            .iter()
            .filter_map(|c| Some((c.name.to_string(), c.status()?)))
            .collect();
        map.into()
    }

    /// The outbound routes for a destination port.
    pub fn outbound_port(&self, port: u16) -> Option<&PortRoutes> {
        find_port(&self.outbound, port)
    }

    /// The routes of a gateway port (the port as written in the Gateway).
    pub fn gateway_port(&self, port: u16) -> Option<&PortRoutes> {
        find_port(&self.gateway, port)
    }

    /// Gateway ports this proxy serves: HTTP ones, and opaque ones with routes (others are
    /// warned about).
    pub(crate) fn served_gateway_ports(&self) -> impl Iterator<Item = u16> + '_ {
        let gateway = self.config.node.kind == ProxyKind::Gateway;
        self.gateway
            .iter()
            .filter(move |p| {
                let terminates = self
                    .config
                    .gateway
                    .iter()
                    .any(|g| g.port == p.port && !g.tls.is_empty());
                // A port that terminates TLS opens only with its certificates.
                gateway
                    && if terminates {
                        p.tls.is_some()
                    } else {
                        p.protocol.is_http() || !p.tcp.is_empty()
                    }
            })
            .map(|p| p.port)
    }

    pub(crate) fn inbound_port(&self, port: u16) -> Option<&InboundRt> {
        self.inbound
            .binary_search_by_key(&port, |p| p.port)
            .ok()
            .map(|i| &self.inbound[i])
    }
}

fn find_port(ports: &[PortRoutes], port: u16) -> Option<&PortRoutes> {
    ports
        .binary_search_by_key(&port, |p| p.port)
        .ok()
        .map(|i| &ports[i])
}

#[cfg(test)]
pub(crate) mod tests;
