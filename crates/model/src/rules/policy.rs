//! Security policies (PeerAuthentication, AuthorizationPolicy, RequestAuthentication)
//! and Istio's rules for which of them apply to a workload.

use std::collections::BTreeMap;

use skiff_api::security::MtlsMode as ApiMode;
use skiff_api::types::{PolicyTargetReference, WorkloadSelector};
use skiff_api::{Resource, ResourceSet};

use crate::config::{MtlsMode, MtlsPolicy, Policies};
use crate::diagnostic::{Code, Findings, Severity};
use crate::registry::{Labels, Registry, display_labels, labels_match};

/// The policies of the mesh, in `namespace/name` order.
#[derive(Debug, Clone, Default)]
pub struct PolicyIndex {
    peer: Vec<PeerAuthn>,
    authorization: Vec<Scoped>,
    request_authentication: Vec<Scoped>,
    root_namespace: String,
}

/// A PeerAuthentication: its scope and modes (`None` is UNSET: inherit).
#[derive(Debug, Clone)]
struct PeerAuthn {
    key: String,
    namespace: String,
    selector: Option<Labels>,
    mode: Option<MtlsMode>,
    ports: BTreeMap<u16, Option<MtlsMode>>,
}

/// A policy scoped by namespace and selector.
#[derive(Debug, Clone)]
struct Scoped {
    key: String,
    namespace: String,
    selector: Option<Labels>,
    /// Attached with `targetRef(s)` instead: it applies to no workload by selector.
    targeted: bool,
}

fn mode(m: Option<ApiMode>) -> Option<MtlsMode> {
    match m? {
        ApiMode::Unset => None,
        ApiMode::Disable => Some(MtlsMode::Disable),
        ApiMode::Permissive => Some(MtlsMode::Permissive),
        ApiMode::Strict => Some(MtlsMode::Strict),
    }
}

fn selector(s: &Option<WorkloadSelector>) -> Option<Labels> {
    s.as_ref()
        .map(|s| s.match_labels.clone())
        .filter(|l| !l.is_empty())
}

impl PolicyIndex {
    pub(super) fn build(
        resources: &ResourceSet,
        registry: &Registry,
        root_namespace: &str,
        findings: &mut Findings,
    ) -> PolicyIndex {
        let mut index = PolicyIndex {
            root_namespace: root_namespace.to_string(),
            ..PolicyIndex::default()
        };
        for pa in resources.peer_authentications() {
            let r = pa.resource;
            let selector = selector(&pa.selector);
            let policy = PeerAuthn {
                key: format!("{}/{}", pa.namespace(), pa.name()),
                namespace: pa.namespace().to_string(),
                mode: mode(pa.mtls.as_ref().and_then(|m| m.mode)),
                ports: pa
                    .port_level_mtls
                    .iter()
                    .filter_map(|(p, m)| Some((u16::try_from(*p).ok()?, mode(m.mode))))
                    .collect(),
                selector,
            };
            if policy.selector.is_none()
                && let Some(first) = index
                    .peer
                    .iter()
                    .find(|p| p.selector.is_none() && p.namespace == policy.namespace)
            {
                let scope = if policy.namespace == root_namespace {
                    "mesh-wide".to_string()
                } else {
                    format!("namespace-wide in {}", policy.namespace)
                };
                findings.report(
                    Severity::Warning,
                    Code::ConflictingPolicies,
                    r,
                    None,
                    format!(
                        "PeerAuthentication {} is already the {scope} policy; Istio uses only \
                         one (the oldest), and skiff uses the first by name, so this one is ignored",
                        first.key
                    ),
                );
                continue;
            }
            if policy.selector.is_some() && policy.namespace == root_namespace {
                findings.report(
                    Severity::Warning,
                    Code::ConflictingPolicies,
                    r,
                    Some("spec.selector"),
                    "a PeerAuthentication with a selector in the root namespace is ignored, as \
                     in Istio; put it in the workload's namespace, or drop the selector to make \
                     it mesh-wide",
                );
                continue;
            }
            check_selector(
                registry,
                r,
                policy.selector.as_ref(),
                &policy.namespace,
                root_namespace,
                findings,
            );
            index.peer.push(policy);
        }
        for ap in resources.authorization_policies() {
            let scoped = targeted_or_selected(
                (
                    ap.resource,
                    ap.target_ref.as_ref(),
                    &ap.target_refs,
                    &ap.selector,
                ),
                registry,
                root_namespace,
                findings,
            );
            index.authorization.push(scoped);
        }
        for ra in resources.request_authentications() {
            let scoped = targeted_or_selected(
                (
                    ra.resource,
                    ra.target_ref.as_ref(),
                    &ra.target_refs,
                    &ra.selector,
                ),
                registry,
                root_namespace,
                findings,
            );
            index.request_authentication.push(scoped);
        }
        index
    }

    /// The policies that apply to a workload of `namespace` with `labels`.
    pub fn for_workload(&self, namespace: &str, labels: &Labels) -> Policies {
        Policies {
            mtls: self.mtls(namespace, labels),
            authorization: self.applicable(&self.authorization, namespace, labels),
            request_authentication: self.applicable(
                &self.request_authentication,
                namespace,
                labels,
            ),
        }
    }

    /// Istio's precedence: a policy selecting the workload (in its namespace), then the
    /// namespace-wide policy, then the mesh-wide one (root namespace, no selector), then
    /// PERMISSIVE. UNSET defers to the next. Port-level modes come only from the
    /// selecting policy; an UNSET port takes the workload's mode.
    fn mtls(&self, namespace: &str, labels: &Labels) -> MtlsPolicy {
        let workload = self.peer.iter().find(|p| {
            p.namespace == namespace && p.selector.as_ref().is_some_and(|s| labels_match(s, labels))
        });
        let namespace_wide = self
            .peer
            .iter()
            .find(|p| p.namespace == namespace && p.selector.is_none());
        let mesh_wide = self
            .peer
            .iter()
            .find(|p| p.namespace == self.root_namespace && p.selector.is_none());
        let chain = [workload, namespace_wide, mesh_wide];
        let mut out = MtlsPolicy::default();
        if let Some(decided) = chain.iter().flatten().position(|p| p.mode.is_some()) {
            let chain: Vec<&PeerAuthn> = chain.iter().flatten().copied().collect();
            out.mode = chain[decided].mode.unwrap_or_default();
            out.from = chain[..=decided].iter().map(|p| p.key.clone()).collect();
            out.from.dedup();
        }
        if let Some(w) = workload {
            for (port, m) in &w.ports {
                out.ports.insert(*port, m.unwrap_or(out.mode));
            }
            if !w.ports.is_empty() && !out.from.contains(&w.key) {
                out.from.insert(0, w.key.clone());
            }
        }
        out
    }

    fn applicable(&self, list: &[Scoped], namespace: &str, labels: &Labels) -> Vec<String> {
        let mut keys: Vec<String> = list
            .iter()
            .filter(|p| !p.targeted)
            .filter(|p| p.namespace == namespace || p.namespace == self.root_namespace)
            .filter(|p| p.selector.as_ref().is_none_or(|s| labels_match(s, labels)))
            .map(|p| p.key.clone())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

/// The scope of a policy that may name its targets (`targetRef(s)`) instead of selecting
/// workloads; a selector is checked against the registry only when it is what applies.
fn targeted_or_selected(
    (r, target_ref, target_refs, sel): (
        &Resource,
        Option<&PolicyTargetReference>,
        &[PolicyTargetReference],
        &Option<WorkloadSelector>,
    ),
    registry: &Registry,
    root_namespace: &str,
    findings: &mut Findings,
) -> Scoped {
    let targeted = is_targeted(target_ref, target_refs, r, findings);
    let scoped = scoped(r, selector(sel), targeted);
    if !targeted {
        check_selector(
            registry,
            r,
            scoped.selector.as_ref(),
            &scoped.namespace,
            root_namespace,
            findings,
        );
    }
    scoped
}

fn scoped(r: &Resource, selector: Option<Labels>, targeted: bool) -> Scoped {
    Scoped {
        key: format!("{}/{}", r.namespace(), r.name()),
        namespace: r.namespace().to_string(),
        selector,
        targeted,
    }
}

fn is_targeted(
    one: Option<&PolicyTargetReference>,
    many: &[PolicyTargetReference],
    r: &Resource,
    findings: &mut Findings,
) -> bool {
    if one.is_none() && many.is_empty() {
        return false;
    }
    findings.report(
        Severity::Warning,
        Code::NotImplemented,
        r,
        Some(if one.is_some() {
            "spec.targetRef"
        } else {
            "spec.targetRefs"
        }),
        "policies attached with targetRef are not supported yet; this policy applies to no \
         workload (use a selector)",
    );
    true
}

fn check_selector(
    registry: &Registry,
    r: &Resource,
    selector: Option<&Labels>,
    namespace: &str,
    root_namespace: &str,
    findings: &mut Findings,
) {
    let Some(selector) = selector else { return };
    let selected = if namespace == root_namespace {
        registry.select_everywhere(selector)
    } else {
        registry.select(namespace, selector)
    };
    if selected.is_empty() {
        findings.report(
            Severity::Info,
            Code::PolicyWithoutWorkload,
            r,
            Some("spec.selector"),
            format!(
                "no workload in namespace {namespace} has labels {}; this policy applies to nothing",
                display_labels(selector)
            ),
        );
    }
}
