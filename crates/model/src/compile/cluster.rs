//! Clusters: the upstreams the proxy's routes name, with endpoints, load balancing,
//! connect timeout, connection-pool limits, outlier detection and consistent hashing
//! from the DestinationRule that applies.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{
    Cluster, ClusterTls, Endpoint, LbPolicy, LocalityWeighted, Protocol, TrafficPolicy,
};
use crate::locality::Member;
use crate::registry::labels_match;

use super::Compiler;
use super::tls::{EndpointTls, PeerCache, cluster_tls};

/// Istio's default TCP connect timeout.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn build(c: &Compiler<'_>) -> Vec<Cluster> {
    let registry = c.mesh.registry();
    let w = c.workload;
    let proxy_port = c.mesh.options().inbound_proxy_port;
    let trust_domain = &c.mesh.options().trust_domain;
    let policies = c.mesh.rules().policies();
    let mut peers = PeerCache::default();
    let mut keys: Vec<(&String, &super::ClusterKey)> = c.clusters.iter().collect();
    keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
    keys.into_iter()
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
                tls: ClusterTls::Auto,
                traffic: TrafficPolicy::default(),
            };
            let Some(service) = key.service.map(|id| &registry.services()[id]) else {
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
            // Without a rule, the mesh's setting (Istio's default turns it on).
            let mesh_locality = &c.mesh.options().locality_lb;
            let mut locality = crate::locality::effective(None, mesh_locality);
            let mut failover = false;
            if let Some(dr) = dr {
                let policy = dr.policy_for(key.port, subset);
                locality = crate::locality::effective(
                    policy
                        .load_balancer
                        .as_ref()
                        .and_then(|l| l.locality.as_ref()),
                    mesh_locality,
                );
                // Istio: failover only with outlier detection, or Envoy would never
                // leave the first priority.
                failover = policy.outlier_detection.is_some();
                cluster.lb = policy.lb().unwrap_or_default();
                cluster.connect_timeout =
                    policy.connect_timeout().unwrap_or(DEFAULT_CONNECT_TIMEOUT);
                cluster.traffic = TrafficPolicy {
                    connection_pool: policy.connection_pool.map(|p| p.limits),
                    outlier_detection: policy.outlier_detection,
                    consistent_hash: policy
                        .load_balancer
                        .as_ref()
                        .and_then(|l| l.consistent_hash.clone()),
                    warmup: policy.load_balancer.and_then(|l| l.warmup),
                    locality_weighted: None,
                };
                if let Some(t) = dr.tls_for(key.port, subset) {
                    cluster.tls = cluster_tls(t);
                }
            }
            let rule_mode = dr.and_then(|dr| dr.endpoint_tls_mode(key.port, subset));
            let endpoint_tls = EndpointTls::new(&cluster.tls, rule_mode, service, policies);
            let Some(port) = service.ports.iter().find(|p| p.port == key.port) else {
                return cluster;
            };
            cluster.protocol = port.protocol;
            // Istio sets `maxConcurrentStreams` in the cluster's explicit HTTP/2 options
            // only: an `http2`/`grpc` port, not one upgraded by `h2UpgradePolicy` (its
            // options are made afresh) nor one under `useClientProtocol`.
            if let Some(p) = &mut cluster.traffic.connection_pool
                && (p.use_client_protocol
                    || !matches!(port.protocol, Protocol::Http2 | Protocol::Grpc))
            {
                p.max_concurrent_streams = None;
            }
            let mut endpoints = Vec::new();
            let mut members = Vec::new();
            for &e in &service.endpoints {
                let workload = &registry.workloads()[e];
                if subset.is_some_and(|s| !labels_match(&s.labels, &workload.labels)) {
                    continue;
                }
                // A name the proxy resolves has no address yet: the unspecified one.
                let address = workload.address.or_else(|| {
                    workload
                        .dns
                        .as_ref()
                        .map(|_| std::net::IpAddr::from([0, 0, 0, 0]))
                });
                let (Some(ip), Some(target)) = (address, workload.target_port(port)) else {
                    continue;
                };
                // A gateway proxy has no inbound listener: reach it directly.
                let proxy_port =
                    if workload.sidecar && c.mesh.rules().gateways_of(e).next().is_none() {
                        proxy_port
                    } else {
                        None
                    };
                let sidecar = proxy_port.is_some();
                let mtls = endpoint_tls.mtls(workload, sidecar, target, |port| {
                    peers.mode(policies, e, workload, port)
                });
                endpoints.push(Endpoint {
                    address: SocketAddr::new(ip, target),
                    proxy_port,
                    workload: registry.workload_id(e).to_string(),
                    weight: workload.weight,
                    spiffe_id: workload.spiffe_id(trust_domain),
                    sidecar,
                    mtls,
                    dns: workload.dns.clone(),
                    locality: workload.locality.label(),
                    priority: 0,
                });
                members.push(e);
            }
            apply_locality(
                c,
                locality.as_ref(),
                failover,
                &mut cluster,
                &mut endpoints,
                &members,
            );
            cluster.endpoints = endpoints;
            cluster
                .endpoints
                .sort_by(|a, b| (a.address, &a.workload).cmp(&(b.address, &b.workload)));
            cluster
        })
        .collect()
}

/// Locality load balancing for this client: endpoint priorities, locality weights,
/// and the endpoints `distribute` leaves out.
fn apply_locality(
    c: &Compiler<'_>,
    setting: Option<&skiff_api::networking::LocalityLoadBalancerSetting>,
    failover: bool,
    cluster: &mut Cluster,
    endpoints: &mut Vec<Endpoint>,
    members: &[usize],
) {
    // Most clusters have nothing to do: no `distribute`, no outlier detection.
    let Some(s) = setting.filter(|s| failover || !s.distribute.is_empty()) else {
        return;
    };
    static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
    let workloads = c.mesh.registry().workloads();
    let client = &c.workload.locality;
    // Labels (with the topology labels of the locality) only for `failoverPriority`.
    let by_labels = !s.failover_priority.is_empty();
    let client_labels = if by_labels {
        client.augment(&c.workload.labels)
    } else {
        BTreeMap::new()
    };
    let labels: Vec<_> = if by_labels {
        members
            .iter()
            .map(|&e| workloads[e].locality.augment(&workloads[e].labels))
            .collect()
    } else {
        Vec::new()
    };
    let list: Vec<Member<'_>> = members
        .iter()
        .zip(endpoints.iter())
        .enumerate()
        .map(|(i, (&e, ep))| Member {
            locality: &workloads[e].locality,
            labels: labels.get(i).unwrap_or(&NO_LABELS),
            weight: ep.weight,
        })
        .collect();
    let Some(plan) = crate::locality::plan(setting, failover, client, &client_labels, &list) else {
        return;
    };
    if plan.locality_weighted {
        cluster.traffic.locality_weighted = Some(LocalityWeighted {
            weights: plan.weights,
        });
    }
    let mut priorities = plan.priorities.into_iter();
    endpoints.retain_mut(|ep| match priorities.next().flatten() {
        Some(p) => {
            ep.priority = p;
            true
        }
        None => false,
    });
}

/// The referenced clusters that do not exist, with why: a host that no service or
/// ServiceEntry declares, or a subset that the host's DestinationRule (as this proxy
/// sees it) does not define.
pub(crate) fn missing(c: &Compiler<'_>) -> std::collections::BTreeMap<String, String> {
    let registry = c.mesh.registry();
    let w = c.workload;
    let mut out = std::collections::BTreeMap::new();
    for (name, key) in &c.clusters {
        let Some(service) = key.service.map(|id| &registry.services()[id]) else {
            out.insert(
                name.clone(),
                format!("no service or ServiceEntry declares host {}", key.host),
            );
            continue;
        };
        let Some(subset) = &key.subset else {
            continue;
        };
        let dr = c.mesh.rules().destination_rule(
            &service.hostname,
            &w.namespace,
            &w.labels,
            &service.namespace,
        );
        match dr {
            Some(dr) if dr.subset(subset).is_some() => {}
            Some(dr) => {
                out.insert(
                    name.clone(),
                    format!(
                        "subset {subset} of {} is not defined: {} defines no subset named {subset}",
                        service.hostname, dr.resource
                    ),
                );
            }
            None => {
                out.insert(
                    name.clone(),
                    format!(
                        "subset {subset} of {} is not defined: no DestinationRule for it applies",
                        service.hostname
                    ),
                );
            }
        }
    }
    out
}
