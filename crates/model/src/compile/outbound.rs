//! Outbound: for each port, the virtual hosts of every service this proxy sees, with the
//! routes of the VirtualService that covers it (or a default route), and TCP routes for
//! opaque traffic.

use std::collections::BTreeMap;

use crate::config::{OutboundPort, Protocol, TcpRoute, VirtualHost, WeightedCluster};
use crate::host;
use crate::rules::MESH;

use super::l4::{L4Kind, L4Routes};
use super::{ClusterKey, Compiler, scope};

#[derive(Default)]
struct PortAcc {
    protocols: Vec<Protocol>,
    virtual_hosts: Vec<VirtualHost>,
    tcp: Vec<TcpRoute>,
}

pub(super) fn build(c: &mut Compiler<'_>) -> Vec<OutboundPort> {
    let mesh = c.mesh;
    let namespace = c.workload.namespace.as_str();
    let suffix = mesh.options().domain_suffix.as_str();
    let mut ports: BTreeMap<u16, PortAcc> = BTreeMap::new();
    let sidecar = mesh.rules().sidecar_for(namespace, &c.workload.labels);
    for (id, allowed) in scope::visible_services(mesh.registry(), namespace, sidecar) {
        let service = &mesh.registry().services()[id];
        let vs = mesh
            .rules()
            .mesh_virtual_service(&service.hostname, namespace);
        for p in service.ports.iter().filter(|p| allowed.includes(p.port)) {
            let acc = ports.entry(p.port).or_default();
            acc.protocols.push(p.protocol);
            let name = format!("{}:{}", service.hostname, p.port);
            let domains = host::service_domains(
                &service.hostname,
                p.port,
                namespace,
                suffix,
                &service.addresses,
            );
            if p.protocol.is_http() || p.protocol == Protocol::Unspecified {
                let mut routes = match vs {
                    Some(vs) => c.virtual_service_routes(vs, MESH, p.port),
                    None => Vec::new(),
                };
                if routes.is_empty() {
                    routes.push(c.default_route(id, p.port));
                }
                let acc = ports.entry(p.port).or_default();
                acc.virtual_hosts.push(VirtualHost {
                    name: name.clone(),
                    domains: domains.clone(),
                    routes,
                });
            }
            if !p.protocol.is_http() {
                let kind = match p.protocol {
                    Protocol::Tls | Protocol::Https => L4Kind::Tls,
                    _ => L4Kind::Tcp,
                };
                let l4 = match vs {
                    Some(vs) => c.l4_routes(vs, kind, MESH, p.port, &domains),
                    None => L4Routes::default(),
                };
                let acc = ports.entry(p.port).or_default();
                acc.tcp.extend(l4.routes);
                if !l4.catch_all {
                    let cluster = c.use_cluster(ClusterKey {
                        host: service.hostname.clone(),
                        port: p.port,
                        subset: None,
                        service: Some(id),
                    });
                    ports.entry(p.port).or_default().tcp.push(TcpRoute {
                        name,
                        domains,
                        destinations: vec![WeightedCluster {
                            cluster,
                            weight: 100,
                        }],
                        matches: Vec::new(),
                    });
                }
            }
        }
    }
    ports
        .into_iter()
        .map(|(port, acc)| OutboundPort {
            port,
            protocol: port_protocol(&acc.protocols),
            virtual_hosts: acc.virtual_hosts,
            tcp: acc.tcp,
        })
        .collect()
}

/// The protocol of a port several services share. HTTP wins over opaque protocols (as
/// in Istio); HTTP next to services that declare nothing means detection; HTTP kinds
/// that disagree (HTTP/1.1 and HTTP/2) are HTTP; opaque kinds that disagree are TCP.
pub(super) fn port_protocol(protocols: &[Protocol]) -> Protocol {
    let first = protocols[0];
    if protocols.iter().all(|p| *p == first) {
        return first;
    }
    let http: Vec<Protocol> = protocols.iter().copied().filter(|p| p.is_http()).collect();
    if http.is_empty() {
        return if protocols.contains(&Protocol::Unspecified) {
            Protocol::Unspecified
        } else {
            Protocol::Tcp
        };
    }
    if protocols.contains(&Protocol::Unspecified) {
        return Protocol::Unspecified;
    }
    if http.iter().all(|p| *p == http[0]) {
        http[0]
    } else {
        Protocol::Http
    }
}
