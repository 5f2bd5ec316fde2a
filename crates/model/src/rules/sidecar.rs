//! `Sidecar` resources: which services a sidecar sees (egress scoping).
//!
//! skiff applies the `egress` hosts (and their `port`): a proxy under a Sidecar gets
//! virtual hosts and clusters only for the services its egress listeners name, which
//! keeps each proxy's configuration proportional to what it calls rather than to the
//! mesh. Other Sidecar fields are reported by the loader as not enforced.

use skiff_api::ResourceSet;

use crate::diagnostic::{Code, Findings, ResourceRef, Severity, resource_ref};
use crate::host;
use crate::registry::{Labels, Registry, labels_match};

/// A Sidecar as the compiler uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarInfo {
    /// The resource.
    pub resource: ResourceRef,
    /// Namespace.
    pub namespace: String,
    /// `workloadSelector` labels; `None` for the namespace's (or, in the root
    /// namespace, the mesh's) default.
    pub selector: Option<Labels>,
    /// Egress listeners.
    pub egress: Vec<EgressInfo>,
    /// `outboundTrafficPolicy.mode`, when set.
    pub outbound_traffic_policy: Option<crate::config::OutboundTrafficPolicy>,
}

/// One egress listener: the hosts it reaches, on one port or all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressInfo {
    /// Only this port of the hosts (`None`: every port).
    pub port: Option<u16>,
    /// `namespace/host` entries.
    pub hosts: Vec<EgressHost>,
}

/// An egress host entry: `<namespace>/<dnsName>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressHost {
    /// The namespace whose services it names (`None` for `*`); `~` names none.
    pub namespace: Option<String>,
    /// Host pattern: `*`, `*.example.com` or a name.
    pub host: String,
}

impl EgressHost {
    /// Reads `ns/host`, `./host`, `*/host` or `~/host` written in `namespace`.
    pub fn parse(written: &str, namespace: &str) -> EgressHost {
        let (ns, h) = written.split_once('/').unwrap_or(("*", written));
        EgressHost {
            namespace: match ns {
                "*" => None,
                "." => Some(namespace.to_string()),
                other => Some(other.to_string()),
            },
            host: h.to_ascii_lowercase(),
        }
    }

    /// Whether the entry names a service of `namespace` with host `hostname`.
    pub fn admits(&self, namespace: &str, hostname: &str) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && host::covers(&self.host, hostname)
    }
}

pub(super) fn collect(
    resources: &ResourceSet,
    registry: &Registry,
    findings: &mut Findings,
) -> Vec<SidecarInfo> {
    let mut out: Vec<SidecarInfo> = Vec::new();
    for sc in resources.sidecars() {
        let r = sc.resource;
        let ns = sc.namespace();
        let selector = sc
            .workload_selector
            .as_ref()
            .map(|s| s.labels.clone())
            .filter(|l| !l.is_empty());
        if selector.is_none()
            && let Some(first) = out
                .iter()
                .find(|s| s.namespace == ns && s.selector.is_none())
        {
            findings.report(
                Severity::Warning,
                Code::ConflictingPolicies,
                r,
                None,
                format!(
                    "{} is already the default Sidecar of namespace {ns}; only one applies \
                     (the first by name), so this one is ignored",
                    first.resource
                ),
            );
            continue;
        }
        if let Some(selector) = &selector
            && registry.select(ns, selector).is_empty()
        {
            findings.report_args(
                Severity::Info,
                Code::PolicyWithoutWorkload,
                r,
                Some("spec.workloadSelector"),
                format!(
                    "no workload in namespace {ns} has labels {}; this Sidecar applies to nothing",
                    crate::registry::display_labels(selector)
                ),
                vec!["selector".into(), crate::registry::display_labels(selector)],
            );
        }
        let egress = sc
            .egress
            .iter()
            .map(|e| EgressInfo {
                port: e
                    .port
                    .as_ref()
                    .and_then(|p| p.number)
                    .and_then(|n| u16::try_from(n).ok()),
                hosts: e.hosts.iter().map(|h| EgressHost::parse(h, ns)).collect(),
            })
            .collect();
        out.push(SidecarInfo {
            resource: resource_ref(r),
            namespace: ns.to_string(),
            selector,
            egress,
            outbound_traffic_policy: sc
                .outbound_traffic_policy
                .as_ref()
                .and_then(|p| p.mode)
                .map(|m| match m {
                    skiff_api::networking::OutboundTrafficMode::AllowAny => {
                        crate::config::OutboundTrafficPolicy::AllowAny
                    }
                    skiff_api::networking::OutboundTrafficMode::RegistryOnly => {
                        crate::config::OutboundTrafficPolicy::RegistryOnly
                    }
                }),
        });
    }
    out
}

/// The Sidecar of a workload: one of its namespace that selects it, else its
/// namespace's default, else the root namespace's default.
pub(super) fn for_workload<'s>(
    sidecars: &'s [SidecarInfo],
    namespace: &str,
    labels: &Labels,
    root_namespace: &str,
) -> Option<&'s SidecarInfo> {
    sidecars
        .iter()
        .find(|s| {
            s.namespace == namespace
                && s.selector
                    .as_ref()
                    .is_some_and(|sel| labels_match(sel, labels))
        })
        .or_else(|| {
            sidecars
                .iter()
                .find(|s| s.namespace == namespace && s.selector.is_none())
        })
        .or_else(|| {
            sidecars
                .iter()
                .find(|s| s.namespace == root_namespace && s.selector.is_none())
        })
}
