//! Gateway listeners: one per port of the Gateway servers that select this proxy, with
//! the virtual hosts of the VirtualServices bound to those Gateways.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use skiff_api::networking::ServerTlsMode;

use crate::config::{
    GatewayPort, Protocol, Redirect, Route, RouteAction, ServerTls, ServerTlsMode as Mode,
    TcpRoute, VirtualHost,
};
use crate::host;
use crate::rules::{GatewayInfo, ServerInfo};

use super::Compiler;
use super::l4::L4Kind;

struct PortAcc {
    protocol: Protocol,
    tcp: Vec<TcpRoute>,
    tls: Vec<ServerTls>,
    gateways: BTreeSet<String>,
    virtual_hosts: BTreeMap<String, VirtualHost>,
    /// (host, VirtualService) pairs already added, so one VirtualService reached through
    /// two server host entries adds its routes once.
    seen: HashSet<(String, String)>,
}

pub(super) fn build(c: &mut Compiler<'_>, gateways: &[&GatewayInfo]) -> Vec<GatewayPort> {
    let mesh = c.mesh;
    let mut ports: BTreeMap<u16, PortAcc> = BTreeMap::new();
    for gw in gateways {
        for server in &gw.servers {
            let acc = ports.entry(server.port).or_insert_with(|| PortAcc {
                protocol: server.protocol,
                tcp: Vec::new(),
                tls: Vec::new(),
                gateways: BTreeSet::new(),
                virtual_hosts: BTreeMap::new(),
                seen: HashSet::new(),
            });
            acc.gateways.insert(gw.key.clone());
            if let Some(tls) = terminated(server) {
                acc.tls.push(tls);
            }
            if let Some(kind) = l4_kind(server) {
                l4_server(c, gw, server, kind, acc);
                continue;
            }
            if server.tls.as_ref().is_some_and(|t| t.https_redirect) && server.protocol.is_http() {
                https_redirect(server, acc);
                continue;
            }
            if !server.protocol.is_http() && server.protocol != Protocol::Https {
                continue;
            }
            for vs in mesh.rules().virtual_services_of_gateway(&gw.key) {
                if !vs.visibility.includes(&gw.namespace) {
                    continue;
                }
                for vs_host in &vs.hosts {
                    for server_host in server.hosts.iter().filter(|h| h.admits(&vs.namespace)) {
                        let Some(name) = host::intersect(vs_host, &server_host.host) else {
                            continue;
                        };
                        let vs_key = format!("{}/{}", vs.namespace, vs.name);
                        let acc = ports.get_mut(&server.port).expect("inserted above");
                        if !acc.seen.insert((name.clone(), vs_key)) {
                            continue;
                        }
                        let routes = c.virtual_service_routes(vs, &gw.key, server.port);
                        let acc = ports.get_mut(&server.port).expect("inserted above");
                        let vhost =
                            acc.virtual_hosts
                                .entry(name.clone())
                                .or_insert_with(|| VirtualHost {
                                    name: format!("{name}:{}", server.port),
                                    domains: gateway_domains(&name, server.port),
                                    routes: Vec::new(),
                                });
                        vhost.routes.extend(routes);
                    }
                }
            }
        }
    }
    ports
        .into_iter()
        .map(|(port, acc)| GatewayPort {
            port,
            protocol: acc.protocol,
            gateways: acc.gateways.into_iter().collect(),
            virtual_hosts: acc.virtual_hosts.into_values().collect(),
            tcp: acc.tcp,
            tls: acc.tls,
        })
        .collect()
}

/// The names a gateway virtual host answers to: the host, and with the port (`*`
/// alone covers every authority).
fn gateway_domains(name: &str, port: u16) -> Vec<String> {
    if name == host::ANY {
        vec![name.to_string()]
    } else {
        vec![name.to_string(), format!("{name}:{port}")]
    }
}

/// Which VirtualService rules an opaque server carries: `tcp` rules for TCP servers,
/// `tls` rules (by SNI) for TLS and HTTPS servers in `PASSTHROUGH` mode. `None` for
/// servers that carry HTTP routes (or nothing).
fn l4_kind(server: &ServerInfo) -> Option<L4Kind> {
    match (server.protocol, server.tls_mode()) {
        (Protocol::Tcp, _) => Some(L4Kind::Tcp),
        (Protocol::Tls | Protocol::Https, Some(ServerTlsMode::Passthrough)) => Some(L4Kind::Tls),
        // TLS terminated, then opaque: the bytes inside go by `tcp` rules.
        (
            Protocol::Tls,
            Some(
                ServerTlsMode::Simple
                | ServerTlsMode::Mutual
                | ServerTlsMode::OptionalMutual
                | ServerTlsMode::IstioMutual,
            ),
        ) => Some(L4Kind::Tcp),
        _ => None,
    }
}

/// The TLS a server terminates, when its mode is `SIMPLE`, `MUTUAL`, `OPTIONAL_MUTUAL`
/// or `ISTIO_MUTUAL` on an `HTTPS` or `TLS` port.
fn terminated(server: &ServerInfo) -> Option<ServerTls> {
    if !matches!(server.protocol, Protocol::Https | Protocol::Tls) {
        return None;
    }
    let t = server.tls.as_ref()?;
    let mode = match t.mode? {
        ServerTlsMode::Simple => Mode::Simple,
        ServerTlsMode::Mutual => Mode::Mutual,
        ServerTlsMode::OptionalMutual => Mode::OptionalMutual,
        ServerTlsMode::IstioMutual => Mode::IstioMutual,
        _ => return None,
    };
    let version = |v: Option<skiff_api::networking::TlsProtocol>| {
        v.and_then(|v| serde_json::to_value(v).ok())
            .and_then(|v| v.as_str().map(String::from))
    };
    Some(ServerTls {
        hosts: server.hosts.iter().map(|h| h.host.clone()).collect(),
        mode,
        server_certificate: t.server_certificate.clone(),
        private_key: t.private_key.clone(),
        ca_certificates: t.ca_certificates.clone(),
        credential_name: t.credential_name.clone(),
        min_protocol_version: version(t.min_protocol_version),
        max_protocol_version: version(t.max_protocol_version),
        cipher_suites: t.cipher_suites.clone(),
    })
}

/// `httpsRedirect`: every request to the server's hosts is answered `301` to the same
/// URL with `https` (Envoy's `require_tls: ALL`), whatever the VirtualServices say.
fn https_redirect(server: &ServerInfo, acc: &mut PortAcc) {
    for h in &server.hosts {
        acc.virtual_hosts.insert(
            h.host.clone(),
            VirtualHost {
                name: format!("{}:{}", h.host, server.port),
                domains: gateway_domains(&h.host, server.port),
                routes: vec![Route {
                    name: "https-redirect".to_string(),
                    matches: Vec::new(),
                    action: RouteAction::Redirect(Redirect {
                        uri: None,
                        authority: None,
                        scheme: Some("https".to_string()),
                        port: None,
                        status: 301,
                    }),
                    timeout: None,
                }],
            },
        );
    }
}

/// The TCP or TLS routes of the VirtualServices bound to `gw` whose hosts the server
/// serves, as Istio builds a gateway's network filters: for TLS, each route's `sniHosts`
/// narrowed to the names the server hosts allow (a route left with none is dropped).
fn l4_server(
    c: &mut Compiler<'_>,
    gw: &GatewayInfo,
    server: &ServerInfo,
    kind: L4Kind,
    acc: &mut PortAcc,
) {
    let mesh = c.mesh;
    for vs in mesh.rules().virtual_services_of_gateway(&gw.key) {
        if !vs.visibility.includes(&gw.namespace) {
            continue;
        }
        let admitted: Vec<&str> = server
            .hosts
            .iter()
            .filter(|h| h.admits(&vs.namespace))
            .map(|h| h.host.as_str())
            .collect();
        let bound = vs
            .hosts
            .iter()
            .any(|vh| admitted.iter().any(|sh| host::intersect(vh, sh).is_some()));
        let vs_key = format!("{}/{}", vs.namespace, vs.name);
        if !bound || !acc.seen.insert((String::new(), vs_key)) {
            continue;
        }
        let routes = c.l4_routes(vs, kind, &gw.key, server.port, &[]).routes;
        for mut route in routes {
            if kind == L4Kind::Tls {
                for m in &mut route.matches {
                    m.sni_hosts = m
                        .sni_hosts
                        .iter()
                        .flat_map(|sni| admitted.iter().filter_map(|sh| host::intersect(sni, sh)))
                        .collect();
                    m.sni_hosts.dedup();
                }
                route.matches.retain(|m| !m.sni_hosts.is_empty());
                if route.matches.is_empty() {
                    continue;
                }
            }
            acc.tcp.push(route);
        }
    }
}
