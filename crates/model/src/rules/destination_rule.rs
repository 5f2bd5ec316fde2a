//! DestinationRules: subsets, load balancing, connection pools, outlier detection and
//! TLS, indexed by host.

use std::collections::HashMap;

use skiff_api::networking::{ClientTlsMode, ClientTlsSettings, TrafficPolicy};
use skiff_api::{Entry, Resource, ResourceSet};

use crate::diagnostic::{Code, Findings, ResourceRef, Severity, resource_ref};
use crate::host;
use crate::registry::{Labels, Registry, Visibility, display_labels};

use super::traffic_policy::ClusterPolicy;

/// The `tls` blocks of one traffic policy: top level and port level.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsLevels {
    /// `tls` of the policy.
    pub tls: Option<ClientTlsSettings>,
    /// `portLevelSettings[].tls`, by port, in order (`None`: that port's settings have
    /// no `tls`).
    pub ports: Vec<(u16, Option<ClientTlsSettings>)>,
}

impl TlsLevels {
    /// The first port-level entry for `port`, if any, and its `tls`.
    fn port_entry(&self, port: u16) -> Option<Option<&ClientTlsSettings>> {
        self.ports
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, t)| t.as_ref())
    }

    /// Istio's per-endpoint reading (`tlsModeForDestinationRule` in
    /// `pilot/pkg/xds/endpoints/mtls_checker.go`): a port-level `tls` for the port,
    /// else the top-level one.
    fn endpoint_mode(&self, port: u16) -> Option<ClientTlsMode> {
        self.ports
            .iter()
            .find_map(|(p, t)| t.as_ref().filter(|_| *p == port))
            .or(self.tls.as_ref())
            .map(tls_mode)
    }
}

/// A `tls` block's mode; `DISABLE` when unset (the first value of Istio's enum).
pub fn tls_mode(t: &ClientTlsSettings) -> ClientTlsMode {
    t.mode.unwrap_or(ClientTlsMode::Disable)
}

/// A DestinationRule as the compiler uses it (rules for one host in one namespace
/// merged, as Istio merges them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationRuleInfo {
    /// The (first) resource.
    pub resource: ResourceRef,
    /// Namespace.
    pub namespace: String,
    /// The host, resolved (may be a wildcard).
    pub host: String,
    /// `exportTo`.
    pub visibility: Visibility,
    /// `workloadSelector`: only proxies of the namespace with these labels use it.
    pub workload_selector: Option<Labels>,
    /// Top-level policy.
    pub policy: ClusterPolicy,
    /// `portLevelSettings`, by port.
    pub port_policies: Vec<(u16, ClusterPolicy)>,
    /// `tls` of the traffic policy and of its port-level settings.
    pub tls: TlsLevels,
    /// Subsets, in order.
    pub subsets: Vec<SubsetInfo>,
}

/// A subset of a DestinationRule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsetInfo {
    /// Name.
    pub name: String,
    /// Labels that narrow the service's endpoints.
    pub labels: Labels,
    /// The subset's own policy (over the rule's).
    pub policy: ClusterPolicy,
    /// The subset's own port-level settings.
    pub port_policies: Vec<(u16, ClusterPolicy)>,
    /// The subset's own `tls` blocks.
    pub tls: TlsLevels,
    /// The DestinationRule that defines it (rules for one host are merged).
    pub defined_in: ResourceRef,
    /// Its index in that rule's `subsets`.
    pub index: usize,
}

impl DestinationRuleInfo {
    /// The load balancer, connection pool and outlier detection for `port` of the host,
    /// narrowed to `subset`, as Istio merges them: the rule's port-level entry for the
    /// port replaces the rule's components wholesale; then each component the subset
    /// sets replaces the rule's, or the subset's port-level entry replaces them all.
    pub fn policy_for(&self, port: u16, subset: Option<&SubsetInfo>) -> ClusterPolicy {
        let at_port = |list: &[(u16, ClusterPolicy)]| {
            list.iter()
                .find(|(p, _)| *p == port)
                .map(|(_, c)| c.clone())
        };
        let rule = at_port(&self.port_policies).unwrap_or_else(|| self.policy.clone());
        match subset {
            None => rule,
            Some(s) => match at_port(&s.port_policies) {
                Some(whole) => whole,
                None => rule.overlay(&s.policy),
            },
        }
    }

    /// The `tls` a cluster for `port` (narrowed to `subset`) uses, as Istio's cluster
    /// builder merges them (`MergeSubsetTrafficPolicy`): port-level settings replace the
    /// level they belong to wholesale, so a subset's port-level entry for the port
    /// decides even without `tls`; then the subset's `tls`; then the rule's port-level
    /// entry, then the rule's `tls`.
    pub fn tls_for<'a>(
        &'a self,
        port: u16,
        subset: Option<&'a SubsetInfo>,
    ) -> Option<&'a ClientTlsSettings> {
        let rule = match self.tls.port_entry(port) {
            Some(at_port) => at_port,
            None => self.tls.tls.as_ref(),
        };
        if let Some(s) = subset {
            if let Some(at_port) = s.tls.port_entry(port) {
                return at_port;
            }
            if let Some(t) = &s.tls.tls {
                return Some(t);
            }
        }
        rule
    }

    /// The TLS mode Istio reads for an endpoint of such a cluster (`mtls_checker.go`):
    /// the subset's (port level, then top), else the rule's; a port-level entry without
    /// `tls` does not hide the top-level one here. Differs from [`Self::tls_for`] only in
    /// that corner, as in Istio.
    pub fn endpoint_tls_mode(
        &self,
        port: u16,
        subset: Option<&SubsetInfo>,
    ) -> Option<ClientTlsMode> {
        subset
            .and_then(|s| s.tls.endpoint_mode(port))
            .or_else(|| self.tls.endpoint_mode(port))
    }

    /// A subset by name.
    pub fn subset(&self, name: &str) -> Option<&SubsetInfo> {
        self.subsets.iter().find(|s| s.name == name)
    }
}

pub(super) fn collect(
    resources: &ResourceSet,
    registry: &Registry,
    findings: &mut Findings,
) -> Vec<DestinationRuleInfo> {
    let mut out: Vec<DestinationRuleInfo> = Vec::new();
    let mut merged: HashMap<(String, String), usize> = HashMap::new();
    for dr in resources.destination_rules() {
        let r = dr.resource;
        let (hostname, lenient) = registry.resolve_host(&dr.host, dr.namespace());
        if lenient {
            report_lenient(findings, r, "spec.host", &dr.host, &hostname);
        }
        let info = convert(&dr, hostname);
        let key = (info.namespace.clone(), info.host.clone());
        match merged.get(&key) {
            Some(&first)
                if info.workload_selector.is_none() && out[first].workload_selector.is_none() =>
            {
                let into = &mut out[first];
                findings.report(
                    Severity::Info,
                    Code::ConflictingDestinationRules,
                    r,
                    None,
                    format!(
                        "{} also configures host {}; as Istio does, their subsets are merged \
                         and the traffic policy of the first one is used",
                        into.resource, info.host
                    ),
                );
                for s in info.subsets {
                    if into.subset(&s.name).is_some() {
                        findings.report(
                            Severity::Warning,
                            Code::ConflictingDestinationRules,
                            r,
                            Some(&format!("spec.subsets[{}].name", s.index)),
                            format!(
                                "subset {} is already defined by {}; this one is ignored",
                                s.name, into.resource
                            ),
                        );
                    } else {
                        into.subsets.push(s);
                    }
                }
            }
            _ => {
                merged.entry(key).or_insert(out.len());
                out.push(info);
            }
        }
    }
    for info in &out {
        check_subsets(info, resources, registry, findings);
    }
    out
}

fn convert(
    dr: &Entry<'_, skiff_api::networking::DestinationRule>,
    host: String,
) -> DestinationRuleInfo {
    let r = dr.resource;
    let (policy, port_policies) = match &dr.traffic_policy {
        Some(tp) => traffic_policy(tp),
        None => (ClusterPolicy::default(), Vec::new()),
    };
    let tls = tls_levels(dr.traffic_policy.as_ref());
    let subsets = dr
        .subsets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (policy, port_policies) = match &s.traffic_policy {
                Some(tp) => traffic_policy(tp),
                None => (ClusterPolicy::default(), Vec::new()),
            };
            SubsetInfo {
                name: s.name.clone(),
                labels: s.labels.clone(),
                policy,
                port_policies,
                tls: tls_levels(s.traffic_policy.as_ref()),
                defined_in: resource_ref(r),
                index: i,
            }
        })
        .collect();
    DestinationRuleInfo {
        resource: resource_ref(r),
        namespace: dr.namespace().to_string(),
        host,
        visibility: Visibility::from_export_to(&dr.export_to, dr.namespace()),
        workload_selector: dr
            .workload_selector
            .as_ref()
            .map(|s| s.match_labels.clone()),
        policy,
        port_policies,
        tls,
        subsets,
    }
}

fn tls_levels(tp: Option<&TrafficPolicy>) -> TlsLevels {
    let Some(tp) = tp else {
        return TlsLevels::default();
    };
    TlsLevels {
        tls: tp.tls.clone(),
        ports: tp
            .port_level_settings
            .iter()
            .filter_map(|p| {
                let port = p.port.and_then(|s| s.number)?;
                Some((u16::try_from(port).ok()?, p.tls.clone()))
            })
            .collect(),
    }
}

fn traffic_policy(tp: &TrafficPolicy) -> (ClusterPolicy, Vec<(u16, ClusterPolicy)>) {
    let top = super::traffic_policy::convert(
        tp.load_balancer.as_ref(),
        tp.connection_pool.as_ref(),
        tp.outlier_detection.as_ref(),
    );
    let mut ports = Vec::new();
    for p in &tp.port_level_settings {
        let Some(port) = p
            .port
            .and_then(|s| s.number)
            .and_then(|n| u16::try_from(n).ok())
        else {
            continue;
        };
        let policy = super::traffic_policy::convert(
            p.load_balancer.as_ref(),
            p.connection_pool.as_ref(),
            p.outlier_detection.as_ref(),
        );
        ports.push((port, policy));
    }
    (top, ports)
}

/// Each subset should select at least one endpoint of its service.
fn check_subsets(
    info: &DestinationRuleInfo,
    resources: &ResourceSet,
    registry: &Registry,
    findings: &mut Findings,
) {
    let kind = skiff_api::Kind::DestinationRule;
    let Some(r) = resources.get(kind, &info.namespace, &info.resource.name) else {
        return;
    };
    if host::is_wildcard(&info.host) {
        return;
    }
    let Some(service) = registry.lookup(&info.host, &info.namespace) else {
        findings.report_args(
            Severity::Warning,
            Code::DestinationRuleWithoutService,
            r,
            Some("spec.host"),
            format!(
                "host {} is not a service of the mesh (no Service or ServiceEntry declares it); \
                 this rule applies to nothing",
                info.host
            ),
            vec![info.host.clone()],
        );
        return;
    };
    let service = &registry.services()[service];
    let shown = host::display_name(&service.hostname, registry.domain_suffix());
    let workloads = registry.workloads();
    for subset in &info.subsets {
        let Some(r) = resources.get(kind, &info.namespace, &subset.defined_in.name) else {
            continue;
        };
        // Topology labels come from the workload's Node, which skiff does not read.
        if subset
            .labels
            .iter()
            .any(|(k, v)| TOPOLOGY_LABELS.contains(&k.as_str()) && !v.is_empty())
        {
            continue;
        }
        let selected: Vec<_> = service
            .endpoints
            .iter()
            .map(|&w| &workloads[w])
            .filter(|w| crate::registry::labels_match(&subset.labels, &w.labels))
            .collect();
        let none = selected.is_empty();
        let message = if none {
            format!(
                "subset {} of {shown} selects no endpoints: no workload has labels {}",
                subset.name,
                display_labels(&subset.labels)
            )
        } else if selected.iter().all(|w| w.address.is_none()) {
            format!(
                "subset {} of {shown} selects no endpoints: its workloads ({}) have no address",
                subset.name,
                selected
                    .iter()
                    .map(|w| w.id())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            continue;
        };
        findings.report_args(
            Severity::Warning,
            Code::SubsetWithoutEndpoints,
            r,
            Some(&format!("spec.subsets[{}].labels", subset.index)),
            message,
            if none {
                vec![subset.name.clone()]
            } else {
                Vec::new()
            },
        );
    }
}

/// Labels Kubernetes and Istio set on a workload from its Node (locality, host name):
/// a subset that selects by them is not checked, as skiff does not read Nodes.
const TOPOLOGY_LABELS: [&str; 4] = [
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
    "kubernetes.io/hostname",
];

/// A host read the Kubernetes way where Istio would take it literally.
pub(super) fn report_lenient(
    findings: &mut Findings,
    r: &Resource,
    field: &str,
    written: &str,
    resolved: &str,
) {
    findings.report(
        Severity::Info,
        Code::HostReadAsKubernetesName,
        r,
        Some(field),
        format!(
            "host `{written}` is read as {resolved}; Istio itself takes names with a dot \
             literally, so write the full name to keep this portable"
        ),
    );
}
