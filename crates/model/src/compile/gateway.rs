//! Gateway listeners: one per port of the Gateway servers that select this proxy, with
//! the virtual hosts of the VirtualServices bound to those Gateways.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use skiff_api::networking::ServerTlsMode;

use crate::config::{GatewayPort, Protocol, TcpRoute, VirtualHost};
use crate::host;
use crate::rules::{GatewayInfo, ServerInfo};

use super::Compiler;
use super::l4::L4Kind;

struct PortAcc {
    protocol: Protocol,
    tcp: Vec<TcpRoute>,
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
                gateways: BTreeSet::new(),
                virtual_hosts: BTreeMap::new(),
                seen: HashSet::new(),
            });
            acc.gateways.insert(gw.key.clone());
            if let Some(kind) = l4_kind(server) {
                l4_server(c, gw, server, kind, acc);
                continue;
            }
            if !server.protocol.is_http() {
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
        _ => None,
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
