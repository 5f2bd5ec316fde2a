//! Compiling the parts of a [`ProxyConfig`]: clusters (with their endpoint state),
//! port tables, virtual hosts and routes, and the warnings for what is accepted but not
//! acted on.

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use skiff_model::config::{self as model, OutboundPort, Protocol, ProxyConfig, RouteAction};

use super::{
    ActionRt, DomainIndex, FaultRt, ForwardRt, MatchRt, PortRoutes, RedirectRt, RetryRt, RouteRt,
    RouteTable, VirtualHostRt, WeightedClusters,
};
use crate::Error;
use crate::transport::UpstreamTls;
use crate::upstream::{ClusterRt, EndpointKey, EndpointRegistry, UpstreamProto};
use skiff_identity::{MeshTls, SpiffeId};
use std::sync::Arc;

/// The `connectionPool` settings a cluster's protocol has no use for, said loudly.
fn pool_warnings(
    c: &model::Cluster,
    p: &model::ConnectionPool,
    proto: UpstreamProto,
    warnings: &mut Vec<String>,
) {
    let http_only = p.max_pending_requests.is_some()
        || p.max_requests.is_some()
        || p.max_requests_per_connection.is_some();
    if proto == UpstreamProto::Opaque && http_only {
        warnings.push(format!(
            "cluster {}: http1MaxPendingRequests, http2MaxRequests and \
             maxRequestsPerConnection are HTTP limits; this cluster carries opaque TCP \
             (maxConnections, connectTimeout, tcpKeepalive, idleTimeout and \
             maxConnectionDuration apply)",
            c.name
        ));
    }
}

pub(super) fn compile_clusters(
    config: &ProxyConfig,
    registry: &EndpointRegistry,
    (mesh, source, credentials): (Option<&MeshTls>, std::net::IpAddr, Option<&std::path::Path>),
    warnings: &mut Vec<String>,
) -> Result<Vec<ClusterRt>, Error> {
    let mut plain_instead_of_mtls = 0usize;
    let mut clusters: Vec<ClusterRt> = Vec::with_capacity(config.clusters.len());
    let mut seen = std::collections::HashSet::new();
    for c in &config.clusters {
        if !seen.insert(c.name.as_str()) {
            return Err(Error::config(
                format!("cluster {}", c.name),
                "defined twice",
            ));
        }
        let sidecar = config.node.kind == model::ProxyKind::Sidecar;
        let proto = crate::upstream::proto_of(c, sidecar);
        let breaker = registry.breaker(c);
        let pool: Option<Arc<str>> = breaker.as_ref().map(|_| c.name.as_str().into());
        let origination = match &c.tls {
            model::ClusterTls::Simple(t) | model::ClusterTls::Mutual(t) => {
                let alpn: &[&[u8]] = match proto {
                    UpstreamProto::Http1 => &[b"http/1.1"],
                    UpstreamProto::Http2 => &[b"h2"],
                    // The protocol is the request's, after the handshake: none offered.
                    UpstreamProto::Client | UpstreamProto::Opaque => &[],
                };
                let mutual = matches!(c.tls, model::ClusterTls::Mutual(_));
                let host = c.service.as_str();
                Some(
                    crate::transport::origination_for(t, mutual, host, alpn, credentials).map_err(
                        |reason| Error::config(format!("cluster {}: tls", c.name), reason),
                    )?,
                )
            }
            _ => None,
        };
        // `ISTIO_MUTUAL` with `sni`: the name sent to the peer (an egress gateway's
        // server is chosen by it).
        let sni = match &c.tls {
            model::ClusterTls::IstioMutual(m) => m.sni.clone(),
            _ => None,
        };
        let mut endpoints = Vec::with_capacity(c.endpoints.len());
        for e in &c.endpoints {
            let (dial, target_port) = match e.proxy_port {
                Some(p) => (SocketAddr::new(e.address.ip(), p), Some(e.address.port())),
                None => (e.address, None),
            };
            let expected = e.mtls.then(|| expected_identities(&c.tls, e));
            let identity = match (&expected, mesh, &origination) {
                (_, _, Some(o)) => Some(Arc::<str>::from(format!("tls:{:?}", o.server_name))),
                (Some(ids), Some(_), _) => Some(Arc::<str>::from(match &sni {
                    Some(sni) => format!("{}|sni:{sni}", ids.join(",")),
                    None => ids.join(","),
                })),
                (Some(_), None, _) => {
                    plain_instead_of_mtls += 1;
                    None
                }
                (None, _, _) => None,
            };
            let key = EndpointKey {
                dial,
                target_port,
                proto,
                identity: identity.clone(),
                pool: pool.clone(),
            };
            let tls = || match (identity, mesh, expected) {
                _ if origination.is_some() => {
                    UpstreamTls::Origination(origination.clone().expect("checked"))
                }
                (Some(identity), Some(mesh), Some(ids)) => {
                    let ids: Vec<SpiffeId> = ids.iter().filter_map(|i| i.parse().ok()).collect();
                    UpstreamTls::Mesh {
                        identity,
                        config: mesh.client_config(&ids),
                        server_name: sni.as_deref().and_then(|s| {
                            rustls::pki_types::ServerName::try_from(s.to_owned()).ok()
                        }),
                    }
                }
                _ => UpstreamTls::Plain,
            };
            let state = registry.get(key, e.address, Some(source), breaker.as_ref(), tls);
            state
                .workload
                .get_or_init(|| endpoint_workload(config, e, state.is_mesh_tls()));
            endpoints.push((state, e.weight));
        }

        if c.endpoints.is_empty() {
            warnings.push(format!(
                "cluster {} has no endpoints: requests to it fail with 503 UH",
                c.name
            ));
        }
        if matches!(c.protocol, Protocol::Tls | Protocol::Https)
            && origination.is_none()
            && proto == UpstreamProto::Opaque
        {
            warnings.push(format!(
                "cluster {}: protocol {:?} is carried as opaque TCP (no TLS origination)",
                c.name, c.protocol
            ));
        }
        if let Some(p) = &c.traffic.connection_pool {
            pool_warnings(c, p, proto, warnings);
        }
        clusters.push(ClusterRt::new(c, proto, endpoints, registry, breaker));
    }
    if plain_instead_of_mtls > 0 {
        warnings.push(format!(
            "this proxy has no mesh identity (no certificate): {plain_instead_of_mtls} \
             endpoint(s) that expect mutual TLS are reached in plain text, and proxies whose \
             PeerAuthentication is STRICT will refuse them"
        ));
    }
    Ok(clusters)
}

/// Stand-ins for the clusters the config says do not exist, so routes naming them
/// compile; the pipeline answers requests routed to them with `503 NC`.
pub(super) fn missing_clusters(
    config: &ProxyConfig,
    registry: &EndpointRegistry,
    clusters: &mut Vec<ClusterRt>,
    warnings: &mut Vec<String>,
) -> Vec<(usize, Arc<str>)> {
    let mut out = Vec::with_capacity(config.missing_clusters.len());
    for (name, why) in &config.missing_clusters {
        if clusters.iter().any(|c| *c.name == **name) {
            continue;
        }
        warnings.push(format!(
            "cluster {name} does not exist ({why}): requests routed to it fail with 503 NC"
        ));
        let stand_in = model::Cluster {
            name: name.clone(),
            service: String::new(),
            port: 0,
            subset: None,
            protocol: Protocol::Unspecified,
            lb: model::LbPolicy::default(),
            endpoints: Vec::new(),
            connect_timeout: std::time::Duration::from_secs(10),
            tls: model::ClusterTls::Auto,
            traffic: Default::default(),
        };
        out.push((clusters.len(), Arc::from(why.as_str())));
        clusters.push(ClusterRt::new(
            &stand_in,
            UpstreamProto::Http1,
            Vec::new(),
            registry,
            None,
        ));
    }
    out
}

/// Names what set an inbound port's mode, for the reason of a refused connection.
pub(super) fn mtls_decided_by(p: &model::MtlsPolicy, mode: model::MtlsMode) -> Arc<str> {
    let mode = match mode {
        model::MtlsMode::Strict => "STRICT",
        model::MtlsMode::Permissive => "PERMISSIVE",
        model::MtlsMode::Disable => "DISABLE",
    };
    match p.from.as_slice() {
        [] => format!("the mesh default is {mode} (no PeerAuthentication applies)").into(),
        [one] => format!("PeerAuthentication {one} is {mode}").into(),
        many => format!(
            "the port is {mode} by PeerAuthentication {}",
            many.join(", ")
        )
        .into(),
    }
}

/// The SPIFFE ids an endpoint's server may prove: the DestinationRule's
/// `subjectAltNames` under `ISTIO_MUTUAL`, else the endpoint's own identity; none known
/// (empty) means any identity of the trust domain, as Istio does.
fn expected_identities(tls: &model::ClusterTls, e: &model::Endpoint) -> Vec<String> {
    match tls {
        model::ClusterTls::IstioMutual(m) if !m.subject_alt_names.is_empty() => {
            let mut ids = m.subject_alt_names.clone();
            ids.sort();
            ids
        }
        _ if !e.spiffe_id.is_empty() => vec![e.spiffe_id.clone()],
        _ => Vec::new(),
    }
}

pub(super) fn compile_outbound_port(
    port: &OutboundPort,
    index: &HashMap<&str, usize>,
    warnings: &mut Vec<String>,
) -> Result<PortRoutes, Error> {
    let place = format!("outbound port {}", port.port);
    let http = compile_table(&place, &port.virtual_hosts, index, warnings)?;
    let tcp = super::l4::compile_routes(&port.tcp, index)?;
    if tcp.len() > 1 && tcp.iter().filter(|r| r.domains.is_empty()).count() > 1 {
        warnings.push(format!(
            "{place}: several TCP routes without domains; a CONNECT tunnel that names none of \
             them takes the first"
        ));
    }
    if !port.protocol.is_http() && !port.virtual_hosts.is_empty() && tcp.is_empty() {
        warnings.push(format!(
            "{place}: protocol {:?} has HTTP routes but no TCP route",
            port.protocol
        ));
    }
    Ok(PortRoutes {
        port: port.port,
        protocol: port.protocol,
        http,
        tcp,
        tls: None,
    })
}

pub(super) fn compile_table(
    place: &str,
    vhosts: &[model::VirtualHost],
    index: &HashMap<&str, usize>,
    warnings: &mut Vec<String>,
) -> Result<RouteTable, Error> {
    let mut domains = DomainIndex::builder();
    let mut compiled = Vec::with_capacity(vhosts.len());
    for (i, vh) in vhosts.iter().enumerate() {
        for d in &vh.domains {
            domains.add(d, i).map_err(|reason| {
                Error::config(format!("{place}: virtual host {}", vh.name), reason)
            })?;
        }
        let mut routes = Vec::with_capacity(vh.routes.len());
        for r in &vh.routes {
            routes.push(compile_route(r, index, warnings)?);
        }
        compiled.push(VirtualHostRt {
            name: vh.name.as_str().into(),
            routes,
        });
    }
    Ok(RouteTable {
        domains: domains.build(),
        vhosts: compiled,
    })
}

fn compile_route(
    r: &model::Route,
    index: &HashMap<&str, usize>,
    warnings: &mut Vec<String>,
) -> Result<RouteRt, Error> {
    let matches = r
        .matches
        .iter()
        .map(|m| MatchRt::compile(&r.name, m))
        .collect::<Result<Vec<_>, _>>()?;
    let action = match &r.action {
        RouteAction::Forward(f) => {
            let rewrite = f.rewrite.clone().unwrap_or_default();
            let rewrite_authority = match &rewrite.authority {
                Some(a) => Some(
                    HeaderValue::from_str(a)
                        .ok()
                        .filter(|_| a.parse::<http::uri::Authority>().is_ok())
                        .ok_or_else(|| {
                            Error::config(
                                &r.name,
                                format!("rewrite authority {a:?} is not a valid authority"),
                            )
                        })?,
                ),
                None => None,
            };
            if let Some(u) = &rewrite.uri
                && !u.starts_with('/')
            {
                return Err(Error::config(
                    &r.name,
                    format!("rewrite uri {u:?} must start with /"),
                ));
            }
            let rewrite_regex = match &rewrite.uri_regex_rewrite {
                Some(_) if rewrite.uri.is_some() => {
                    return Err(Error::config(
                        &r.name,
                        "rewrite has both uri and uriRegexRewrite",
                    ));
                }
                Some(rx) => {
                    let compiled = regex::RegexBuilder::new(&rx.pattern)
                        .size_limit(super::matcher::MAX_REGEX_PROGRAM_BYTES)
                        .build()
                        .map_err(|e| Error::InvalidRegex {
                            route: r.name.clone(),
                            pattern: rx.pattern.clone(),
                            reason: e.to_string(),
                        })?;
                    Some(Box::new((compiled, re2_substitution(&rx.substitution))))
                }
                None => None,
            };
            ActionRt::Forward(ForwardRt {
                destinations: WeightedClusters::compile(&r.name, &f.destinations, index)?,
                retries: f
                    .retries
                    .as_ref()
                    .map(|p| RetryRt::compile(&r.name, p, warnings)),
                rewrite_uri: rewrite.uri.map(String::into_boxed_str),
                rewrite_authority,
                rewrite_regex,
            })
        }
        RouteAction::Redirect(rd) => {
            let status = StatusCode::from_u16(rd.status)
                .ok()
                .filter(|s| s.is_redirection())
                .ok_or_else(|| {
                    Error::config(
                        &r.name,
                        format!("redirect status {} is not a 3xx code", rd.status),
                    )
                })?;
            if let Some(s) = &rd.scheme
                && s.parse::<http::uri::Scheme>().is_err()
            {
                return Err(Error::config(
                    &r.name,
                    format!("redirect scheme {s:?} is not valid"),
                ));
            }
            ActionRt::Redirect(RedirectRt {
                status,
                uri: rd.uri.clone().map(String::into_boxed_str),
                authority: rd.authority.clone().map(String::into_boxed_str),
                scheme: rd.scheme.clone().map(String::into_boxed_str),
                port: rd.port,
            })
        }
        RouteAction::DirectResponse { status, body } => ActionRt::Direct {
            status: StatusCode::from_u16(*status).map_err(|_| {
                Error::config(
                    &r.name,
                    format!("direct response status {status} is not valid"),
                )
            })?,
            body: body.clone().map(Bytes::from).unwrap_or_default(),
        },
    };
    Ok(RouteRt {
        name: r.name.as_str().into(),
        matches,
        action,
        timeout: r.timeout.filter(|t| !t.is_zero()),
        fault: None,
        policy: None,
    })
}

/// An RE2 substitution (`\1` for group 1, `\\` for a backslash) in the regex
/// crate's form (`${1}`, and `$$` for a literal `$`).
pub(crate) fn re2_substitution(sub: &str) -> String {
    let mut out = String::with_capacity(sub.len() + 4);
    let mut chars = sub.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    chars.next();
                    out.push_str("${");
                    out.push(d);
                    out.push('}');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

/// Gives each route its `fault`, by route name; a fault that names no route is warned
/// about (the rule it came from did not compile into this proxy's routes).
pub(super) fn attach_faults(
    faults: &std::collections::BTreeMap<String, model::Fault>,
    outbound: &mut [PortRoutes],
    gateway: &mut [PortRoutes],
    warnings: &mut Vec<String>,
) -> Result<(), Error> {
    if faults.is_empty() {
        return Ok(());
    }
    let mut used = std::collections::HashSet::new();
    let routes = outbound
        .iter_mut()
        .chain(gateway.iter_mut())
        .flat_map(|p| p.http.vhosts.iter_mut())
        .flat_map(|vh| vh.routes.iter_mut());
    for route in routes {
        let Some(f) = faults.get(&*route.name) else {
            continue;
        };
        used.insert(route.name.clone());
        route.fault = Some(Box::new(compile_fault(&route.name, f)?));
    }
    for name in faults.keys().filter(|n| !used.contains(n.as_str())) {
        warnings.push(format!(
            "fault for route {name}, which no route of this proxy has"
        ));
    }
    Ok(())
}

/// Gives each route its header rules, mirrors and CORS, by route name, as
/// [`attach_faults`].
pub(super) fn attach_policies(
    policies: &std::collections::BTreeMap<String, model::HttpRoutePolicy>,
    index: &HashMap<&str, usize>,
    outbound: &mut [PortRoutes],
    gateway: &mut [PortRoutes],
    warnings: &mut Vec<String>,
) -> Result<(), Error> {
    if policies.is_empty() {
        return Ok(());
    }
    let mut used = std::collections::HashSet::new();
    let routes = outbound
        .iter_mut()
        .chain(gateway.iter_mut())
        .flat_map(|p| p.http.vhosts.iter_mut())
        .flat_map(|vh| vh.routes.iter_mut());
    for route in routes {
        let Some(p) = policies.get(&*route.name) else {
            continue;
        };
        used.insert(route.name.clone());
        let destinations = match &route.action {
            ActionRt::Forward(f) => f.destinations.len(),
            _ => 0,
        };
        let compiled = crate::http_route::HttpPolicyRt::compile(
            &route.name,
            p,
            destinations,
            |c| index.get(c).copied(),
            warnings,
        )?;
        route.policy = Some(Box::new(compiled));
    }
    for name in policies.keys().filter(|n| !used.contains(n.as_str())) {
        warnings.push(format!(
            "header rules, mirrors or CORS for route {name}, which no route of this proxy has"
        ));
    }
    Ok(())
}

fn compile_fault(route: &str, f: &model::Fault) -> Result<FaultRt, Error> {
    let share = |what: &str, per_million: u32| {
        if per_million > 1_000_000 {
            Err(Error::config(
                route,
                format!("fault {what} share {per_million} is over 1000000 (100%)"),
            ))
        } else {
            Ok(per_million)
        }
    };
    let delay = match &f.delay {
        Some(d) => Some((d.fixed_delay, share("delay", d.per_million)?)),
        None => None,
    };
    let abort = match &f.abort {
        Some(a) => {
            let status = StatusCode::from_u16(a.http_status)
                .ok()
                .filter(|s| (200..600).contains(&s.as_u16()))
                .ok_or_else(|| {
                    Error::config(
                        route,
                        format!("fault abort status {} is not in 200..=599", a.http_status),
                    )
                })?;
            Some((status, share("abort", a.per_million)?))
        }
        None => None,
    };
    Ok(FaultRt {
        delay,
        abort,
        abort_grpc: f.abort.as_ref().and_then(|a| a.grpc_status),
    })
}

/// The workload behind an endpoint, for the `destination_*` labels: its name and
/// namespace from `<name>.<namespace>`, its labels from the config's
/// `workload_labels`, its principal when the proxy proves it with mutual TLS.
fn endpoint_workload(
    config: &ProxyConfig,
    e: &skiff_model::config::Endpoint,
    mtls: bool,
) -> Arc<crate::metrics::Workload> {
    if e.workload.is_empty() {
        return crate::metrics::Workload::unknown();
    }
    let (name, namespace) = e
        .workload
        .rsplit_once('.')
        .unwrap_or((e.workload.as_str(), crate::metrics::peer::UNKNOWN));
    let none = std::collections::BTreeMap::new();
    let labels = config.workload_labels.get(&e.workload).unwrap_or(&none);
    let principal = (mtls && !e.spiffe_id.is_empty()).then_some(e.spiffe_id.as_str());
    crate::metrics::Workload::from_labels(name, namespace, principal, labels)
}
