//! Inbound: the ports of this workload that services target.

use std::collections::BTreeMap;

use crate::config::{InboundPort, Protocol};

use super::Compiler;

pub(super) fn build(c: &Compiler<'_>, w: usize) -> Vec<InboundPort> {
    let registry = c.mesh.registry();
    let mut ports: BTreeMap<u16, (Vec<Protocol>, Vec<String>)> = BTreeMap::new();
    for &s in registry.services_of(w) {
        let service = &registry.services()[s];
        for p in &service.ports {
            let Some(target) = c.workload.target_port(p) else {
                continue;
            };
            let entry = ports.entry(target).or_default();
            entry.0.push(p.protocol);
            entry.1.push(format!("{}:{}", service.hostname, p.port));
        }
    }
    let peer = c
        .mesh
        .rules()
        .policies()
        .peer(&c.workload.namespace, &c.workload.labels);
    ports
        .into_iter()
        .map(|(target_port, (protocols, mut services))| {
            services.sort();
            services.dedup();
            InboundPort {
                target_port,
                protocol: inbound_protocol(&protocols),
                services,
                mtls: peer.for_port(target_port).0,
            }
        })
        .collect()
}

/// One workload port reached through several service ports: HTTP wins when declared,
/// otherwise they must agree, else the proxy detects the protocol.
fn inbound_protocol(protocols: &[Protocol]) -> Protocol {
    if let Some(p) = protocols.iter().find(|p| p.is_http()) {
        return *p;
    }
    if protocols.iter().all(|p| *p == protocols[0]) {
        protocols[0]
    } else {
        Protocol::Unspecified
    }
}
