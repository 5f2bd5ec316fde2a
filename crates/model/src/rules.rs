//! The routing and policy resources, translated once per snapshot and indexed for the
//! per-proxy compiler: DestinationRules by host, VirtualServices by host (for the
//! sidecars) and by gateway, Gateways by the workloads that run them, and the security
//! policies.

mod checks;
mod delegate;
pub mod destination_rule;
pub mod gateway;
pub mod policy;
pub mod sidecar;
pub mod telemetry;
pub mod traffic_policy;
pub mod virtual_service;

use std::collections::{BTreeSet, HashMap};

use skiff_api::ResourceSet;

use crate::MeshOptions;
use crate::diagnostic::Findings;
use crate::host;
use crate::registry::{Labels, Registry, labels_match};

pub(crate) use checks::find_service;
pub use destination_rule::{DestinationRuleInfo, SubsetInfo, TlsLevels, tls_mode};
pub use gateway::{GatewayInfo, ServerHost, ServerInfo};
pub use policy::{PeerDecision, PolicyIndex};
pub use sidecar::{EgressHost, EgressInfo, SidecarInfo};
pub use telemetry::TelemetryIndex;
pub use traffic_policy::{ClusterPolicy, LbSettings, PoolSettings};
pub use virtual_service::{
    DestinationRef, HttpRule, L4Condition, L4Rule, MESH, MatchCondition, MirrorRef, RuleAction,
    VirtualServiceInfo,
};

/// Translated routing and policy resources, with their indexes.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    destination_rules: Vec<DestinationRuleInfo>,
    dr_exact: HashMap<String, Vec<usize>>,
    dr_wildcard: Vec<usize>,
    virtual_services: Vec<VirtualServiceInfo>,
    vs_mesh_exact: HashMap<String, Vec<usize>>,
    vs_mesh_wildcard: Vec<usize>,
    vs_by_gateway: HashMap<String, Vec<usize>>,
    gateways: Vec<GatewayInfo>,
    gateway_by_key: HashMap<String, usize>,
    gateways_of_workload: HashMap<usize, Vec<usize>>,
    policies: PolicyIndex,
    sidecars: Vec<SidecarInfo>,
    telemetry: TelemetryIndex,
    root_namespace: String,
    client_label_keys: BTreeSet<String>,
}

impl Rules {
    pub(crate) fn build(
        resources: &ResourceSet,
        registry: &Registry,
        options: &MeshOptions,
        findings: &mut Findings,
    ) -> Rules {
        let mut rules = Rules {
            root_namespace: options.root_namespace.clone(),
            ..Rules::default()
        };
        rules.destination_rules = destination_rule::collect(resources, registry, findings);
        for (i, dr) in rules.destination_rules.iter().enumerate() {
            if host::is_wildcard(&dr.host) {
                rules.dr_wildcard.push(i);
            } else {
                rules.dr_exact.entry(dr.host.clone()).or_default().push(i);
            }
        }
        rules.gateways = gateway::collect(resources, registry, findings);
        for (i, gw) in rules.gateways.iter().enumerate() {
            rules.gateway_by_key.insert(gw.key.clone(), i);
            for &w in &gw.workloads {
                rules.gateways_of_workload.entry(w).or_default().push(i);
            }
        }
        let all: Vec<_> = resources.virtual_services().collect();
        let delegates = delegate::collect(&all);
        for vs in &all {
            let info = virtual_service::convert(vs, &delegates, registry, findings);
            let i = rules.virtual_services.len();
            if info.mesh {
                for h in &info.hosts {
                    if host::is_wildcard(h) {
                        if !rules.vs_mesh_wildcard.contains(&i) {
                            rules.vs_mesh_wildcard.push(i);
                        }
                    } else {
                        rules.vs_mesh_exact.entry(h.clone()).or_default().push(i);
                    }
                }
            }
            for g in &info.gateways {
                rules.vs_by_gateway.entry(g.clone()).or_default().push(i);
            }
            rules.virtual_services.push(info);
        }
        rules.policies = PolicyIndex::build(resources, registry, options, findings);
        rules.sidecars = sidecar::collect(resources, registry, findings);
        rules.telemetry = TelemetryIndex::build(resources, registry, options, findings);
        rules.client_label_keys = client_label_keys(&rules);
        checks::run(&rules, resources, registry, findings);
        rules
    }

    /// The label keys that decide, besides its namespace and locality, what a
    /// sidecar's outbound configuration holds: those of VirtualService
    /// `sourceLabels`, DestinationRule and Sidecar `workloadSelector`s and
    /// DestinationRule `failoverPriority`. Two sidecars of one namespace and locality
    /// that agree on these labels compile the same outbound configuration.
    pub fn client_label_keys(&self) -> &BTreeSet<String> {
        &self.client_label_keys
    }

    /// The Telemetry resources, for resolving what applies to a workload.
    pub fn telemetry(&self) -> &TelemetryIndex {
        &self.telemetry
    }

    /// All VirtualServices, in namespace/name order.
    pub fn virtual_services(&self) -> &[VirtualServiceInfo] {
        &self.virtual_services
    }

    /// All DestinationRules (merged per namespace and host), in namespace/name order.
    pub fn destination_rules(&self) -> &[DestinationRuleInfo] {
        &self.destination_rules
    }

    /// All Gateways, in namespace/name order.
    pub fn gateways(&self) -> &[GatewayInfo] {
        &self.gateways
    }

    /// A Gateway by `namespace/name`.
    pub fn gateway(&self, key: &str) -> Option<&GatewayInfo> {
        self.gateway_by_key.get(key).map(|&i| &self.gateways[i])
    }

    /// The Gateways a workload runs (empty for sidecars).
    pub fn gateways_of(&self, workload: usize) -> impl Iterator<Item = &GatewayInfo> {
        self.gateways_of_workload
            .get(&workload)
            .into_iter()
            .flatten()
            .map(|&i| &self.gateways[i])
    }

    /// The security policies.
    pub fn policies(&self) -> &PolicyIndex {
        &self.policies
    }

    /// The Sidecar that scopes a workload of `namespace` with `labels`, if any.
    pub fn sidecar_for(&self, namespace: &str, labels: &Labels) -> Option<&SidecarInfo> {
        sidecar::for_workload(&self.sidecars, namespace, labels, &self.root_namespace)
    }

    /// The VirtualServices bound to a gateway (`namespace/name`), in order.
    pub fn virtual_services_of_gateway(
        &self,
        key: &str,
    ) -> impl Iterator<Item = &VirtualServiceInfo> {
        self.vs_by_gateway
            .get(key)
            .into_iter()
            .flatten()
            .map(|&i| &self.virtual_services[i])
    }

    /// The mesh VirtualService that routes `hostname` for a proxy in `namespace`: one
    /// naming the host exactly before one whose wildcard covers it (the narrowest
    /// wildcard first), one of the proxy's namespace before others, then the first by
    /// namespace/name. Only VirtualServices exported to the namespace count.
    pub fn mesh_virtual_service(
        &self,
        hostname: &str,
        namespace: &str,
    ) -> Option<&VirtualServiceInfo> {
        let exact = self.vs_mesh_exact.get(hostname).into_iter().flatten();
        let best_exact = exact
            .map(|&i| &self.virtual_services[i])
            .filter(|vs| vs.visibility.includes(namespace))
            .min_by_key(|vs| vs.namespace != namespace);
        if best_exact.is_some() {
            return best_exact;
        }
        self.vs_mesh_wildcard
            .iter()
            .map(|&i| &self.virtual_services[i])
            .filter(|vs| vs.visibility.includes(namespace))
            .filter_map(|vs| {
                let pattern = vs
                    .hosts
                    .iter()
                    .filter(|h| host::covers(h, hostname))
                    .max_by_key(|h| h.len())?;
                Some((
                    std::cmp::Reverse(pattern.len()),
                    vs.namespace != namespace,
                    vs,
                ))
            })
            .min_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)))
            .map(|(_, _, vs)| vs)
    }

    /// The DestinationRule that applies to traffic from a proxy (namespace, labels) to
    /// `hostname` (a service of `service_namespace`), as Istio chooses it: a rule of the
    /// proxy's namespace, then of the service's, then of the root namespace, then any
    /// other exported to the proxy; within a namespace a rule with a matching
    /// `workloadSelector` first, then the exact host before the narrowest wildcard.
    pub fn destination_rule(
        &self,
        hostname: &str,
        namespace: &str,
        labels: &Labels,
        service_namespace: &str,
    ) -> Option<&DestinationRuleInfo> {
        let exact = self.dr_exact.get(hostname).into_iter().flatten();
        let wildcard = self
            .dr_wildcard
            .iter()
            .filter(|&&i| host::covers(&self.destination_rules[i].host, hostname));
        exact
            .chain(wildcard)
            .map(|&i| &self.destination_rules[i])
            .filter(|dr| dr.visibility.includes(namespace) || dr.namespace == namespace)
            .filter(|dr| match &dr.workload_selector {
                Some(selector) => dr.namespace == namespace && labels_match(selector, labels),
                None => true,
            })
            .min_by_key(|dr| {
                let place = if dr.namespace == namespace {
                    0
                } else if dr.namespace == service_namespace {
                    1
                } else if dr.namespace == self.root_namespace {
                    2
                } else {
                    3
                };
                (
                    place,
                    dr.workload_selector.is_none(),
                    host::is_wildcard(&dr.host),
                    std::cmp::Reverse(dr.host.len()),
                )
            })
    }
}

fn client_label_keys(rules: &Rules) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for vs in &rules.virtual_services {
        let http = vs
            .http
            .iter()
            .flat_map(|r| &r.matches)
            .map(|m| &m.source_labels);
        let l4 = vs
            .tcp
            .iter()
            .chain(&vs.tls)
            .flat_map(|r| &r.matches)
            .map(|m| &m.source_labels);
        for labels in http.chain(l4) {
            keys.extend(labels.keys().cloned());
        }
    }
    let selectors = rules
        .destination_rules
        .iter()
        .filter_map(|dr| dr.workload_selector.as_ref())
        .chain(rules.sidecars.iter().filter_map(|s| s.selector.as_ref()));
    for selector in selectors {
        keys.extend(selector.keys().cloned());
    }
    // `failoverPriority` compares the client's labels with the endpoints' (`key` or
    // `key=value`).
    for dr in &rules.destination_rules {
        let policies = std::iter::once(&dr.policy)
            .chain(dr.port_policies.iter().map(|(_, p)| p))
            .chain(dr.subsets.iter().flat_map(|s| {
                std::iter::once(&s.policy).chain(s.port_policies.iter().map(|(_, p)| p))
            }));
        for policy in policies {
            let setting = policy
                .load_balancer
                .as_ref()
                .and_then(|lb| lb.locality.as_ref());
            for entry in setting.into_iter().flat_map(|s| &s.failover_priority) {
                let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
                keys.insert(key.trim().to_owned());
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests;
