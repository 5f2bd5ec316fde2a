//! Gateway listeners: one per port of the Gateway servers that select this proxy, with
//! the virtual hosts of the VirtualServices bound to those Gateways.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::config::{GatewayPort, Protocol, VirtualHost};
use crate::host;
use crate::rules::GatewayInfo;

use super::Compiler;

struct PortAcc {
    protocol: Protocol,
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
                gateways: BTreeSet::new(),
                virtual_hosts: BTreeMap::new(),
                seen: HashSet::new(),
            });
            acc.gateways.insert(gw.key.clone());
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
