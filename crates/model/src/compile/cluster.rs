//! Clusters: the upstreams the proxy's routes name, with endpoints, load balancing and
//! connect timeout from the DestinationRule that applies.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{Cluster, Endpoint, LbPolicy, Protocol};
use crate::registry::labels_match;
use crate::rules::find_service;

use super::Compiler;

/// Istio's default TCP connect timeout.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn build(c: &Compiler<'_>) -> Vec<Cluster> {
    let registry = c.mesh.registry();
    let w = c.workload;
    let proxy_port = c.mesh.options().inbound_proxy_port;
    c.clusters
        .iter()
        .map(|(name, key)| {
            let mut cluster = Cluster {
                name: name.clone(),
                service: key.host.clone(),
                port: key.port,
                subset: key.subset.clone(),
                protocol: Protocol::Unspecified,
                lb: LbPolicy::default(),
                endpoints: Vec::new(),
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            };
            let Some(service) = find_service(registry, &key.host, &w.namespace) else {
                return cluster;
            };
            let dr = c.mesh.rules().destination_rule(
                &service.hostname,
                &w.namespace,
                &w.labels,
                &service.namespace,
            );
            let subset = match (&key.subset, dr) {
                (Some(name), Some(dr)) => match dr.subset(name) {
                    Some(s) => Some(s),
                    None => return cluster,
                },
                (Some(_), None) => return cluster,
                (None, _) => None,
            };
            if let Some(dr) = dr {
                let policy = dr.policy_for(key.port, subset);
                cluster.lb = policy.lb.unwrap_or_default();
                cluster.connect_timeout = policy.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
            }
            let Some(port) = service.ports.iter().find(|p| p.port == key.port) else {
                return cluster;
            };
            cluster.protocol = port.protocol;
            for &e in &service.endpoints {
                let workload = &registry.workloads()[e];
                if subset.is_some_and(|s| !labels_match(&s.labels, &workload.labels)) {
                    continue;
                }
                let (Some(ip), Some(target)) = (workload.address, workload.target_port(port))
                else {
                    continue;
                };
                cluster.endpoints.push(Endpoint {
                    address: SocketAddr::new(ip, target),
                    proxy_port: if workload.sidecar { proxy_port } else { None },
                    workload: workload.id(),
                    weight: workload.weight,
                });
            }
            cluster
                .endpoints
                .sort_by(|a, b| (a.address, &a.workload).cmp(&(b.address, &b.workload)));
            cluster
        })
        .collect()
}
