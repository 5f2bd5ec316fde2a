//! Security policies (PeerAuthentication, AuthorizationPolicy, RequestAuthentication)
//! and Istio's rules for which of them apply to a workload, compiled into the data the
//! proxy enforces.
//!
//! Scoping (`pilot/pkg/model/policyattachment.go`, `authorization.go`): a policy of the
//! workload's namespace or of the root namespace applies when it has no selector or its
//! selector matches. A policy with `targetRef(s)` applies to no sidecar; it applies to a
//! Gateway API gateway (a workload labelled `gateway.networking.k8s.io/gateway-name`)
//! of the policy's namespace that it names with kind `Gateway`. Service and ServiceEntry
//! targets attach policies to waypoints only (ambient mode), which skiff does not run.

mod authz;
mod jwt;
mod peer;

use skiff_api::types::{PolicyTargetReference, Timestamp, WorkloadSelector};
use skiff_api::{Resource, ResourceSet};

use crate::MeshOptions;
use crate::config::{AuthzPolicy, JwtRule, MtlsMode, Policies};
use crate::diagnostic::{Code, Findings, Severity};
use crate::registry::{Labels, Registry, display_labels, labels_match};

pub(crate) use authz::TrustDomains;
use peer::PeerAuthn;
pub use peer::PeerDecision;

/// The label Istio reads to know a workload runs a Gateway API gateway, and which.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// The policies of the mesh, each list in Istio's order (oldest first).
#[derive(Debug, Clone, Default)]
pub struct PolicyIndex {
    peer: Vec<PeerAuthn>,
    authorization: Vec<Scoped<Option<AuthzPolicy>>>,
    request_authentication: Vec<Scoped<Vec<JwtRule>>>,
    root_namespace: String,
    /// Namespaces with a workload-level PeerAuthentication (a selector).
    peer_selectors: std::collections::HashSet<String>,
}

/// A policy scoped by namespace and selector or target, with its compiled form.
#[derive(Debug, Clone)]
struct Scoped<T> {
    key: String,
    namespace: String,
    name: String,
    created: Option<Timestamp>,
    selector: Option<Labels>,
    /// With `targetRef(s)`: the Gateway API gateways named (`None`: no targetRef).
    gateways: Option<Vec<String>>,
    compiled: T,
}

impl<T> Scoped<T> {
    fn age(&self) -> (Option<&Timestamp>, &str, &str) {
        (self.created.as_ref(), &self.name, &self.namespace)
    }

    /// Istio's `ShouldAttachPolicy`, for a policy already known to be of the workload's
    /// namespace or of the root namespace.
    fn attaches(&self, namespace: &str, labels: &Labels) -> bool {
        match (&self.gateways, labels.get(GATEWAY_NAME_LABEL)) {
            (None, _) => self
                .selector
                .as_ref()
                .is_none_or(|s| labels_match(s, labels)),
            (Some(_), None) => false,
            (Some(names), Some(gateway)) => self.namespace == namespace && names.contains(gateway),
        }
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
        options: &MeshOptions,
        findings: &mut Findings,
    ) -> PolicyIndex {
        let root_namespace = options.root_namespace.as_str();
        let mut trust = vec![options.trust_domain.clone()];
        trust.extend(options.trust_domain_aliases.iter().cloned());
        let trust = TrustDomains(trust);
        let mut index = PolicyIndex {
            root_namespace: root_namespace.to_string(),
            ..PolicyIndex::default()
        };
        let mut peers: Vec<(PeerAuthn, &Resource)> = resources
            .peer_authentications()
            .map(|pa| {
                let policy = PeerAuthn {
                    key: format!("{}/{}", pa.namespace(), pa.name()),
                    namespace: pa.namespace().to_string(),
                    name: pa.name().to_string(),
                    created: pa.metadata().creation_timestamp.clone(),
                    mode: peer::mode(pa.mtls.as_ref().and_then(|m| m.mode)),
                    ports: pa
                        .port_level_mtls
                        .iter()
                        .filter_map(|(p, m)| Some((u16::try_from(*p).ok()?, peer::mode(m.mode))))
                        .collect(),
                    selector: selector(&pa.selector),
                };
                (policy, pa.resource)
            })
            .collect();
        peers.sort_by(|a, b| a.0.age().cmp(&b.0.age()));
        for (policy, r) in peers {
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
                         the oldest (creationTimestamp, then name), so this one is ignored",
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
            if policy.selector.is_some() {
                index.peer_selectors.insert(policy.namespace.clone());
            }
            index.peer.push(policy);
        }
        for ap in resources.authorization_policies() {
            let scope = (ap.target_ref.as_ref(), &ap.target_refs[..], &ap.selector);
            let compiled = authz::compile(&ap, &trust);
            let scoped = scoped(
                ap.resource,
                scope,
                compiled,
                registry,
                root_namespace,
                findings,
            );
            index.authorization.push(scoped);
        }
        index.authorization.sort_by(|a, b| a.age().cmp(&b.age()));
        for ra in resources.request_authentications() {
            let scope = (ra.target_ref.as_ref(), &ra.target_refs[..], &ra.selector);
            let compiled = jwt::compile(&ra);
            let scoped = scoped(
                ra.resource,
                scope,
                compiled,
                registry,
                root_namespace,
                findings,
            );
            index.request_authentication.push(scoped);
        }
        index
            .request_authentication
            .sort_by(|a, b| a.age().cmp(&b.age()));
        index
    }

    /// The policies that apply to a workload of `namespace` with `labels`.
    pub fn for_workload(&self, namespace: &str, labels: &Labels) -> Policies {
        let authorization = self.applicable(&self.authorization, namespace, labels, true);
        let request_authentication =
            self.applicable(&self.request_authentication, namespace, labels, false);

        let mut jwt_rules: Vec<JwtRule> = request_authentication
            .iter()
            .flat_map(|p| p.compiled.iter().cloned())
            .collect();
        jwt_rules.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        Policies {
            mtls: self.peer(namespace, labels).to_policy(),
            authorization: sorted_keys(&authorization),
            request_authentication: sorted_keys(&request_authentication),
            authorization_policies: authorization
                .iter()
                .filter_map(|p| p.compiled.clone())
                .collect(),
            jwt_rules,
        }
    }

    /// The effective PeerAuthentication of a workload, with who decided each mode.
    pub fn peer(&self, namespace: &str, labels: &Labels) -> PeerDecision {
        peer::resolve(&self.peer, &self.root_namespace, namespace, labels)
    }

    /// Whether some PeerAuthentication of `namespace` selects workloads; without one,
    /// every workload there has the namespace's mode ([`Self::namespace_mtls`]) on
    /// every port.
    pub fn has_workload_peer_policies(&self, namespace: &str) -> bool {
        self.peer_selectors.contains(namespace)
    }

    /// The namespace-level mode a client assumes for services of `namespace` when it
    /// decides auto mutual TLS (Istio's `BestEffortInferServiceMTLSMode`).
    pub fn namespace_mtls(&self, namespace: &str) -> MtlsMode {
        peer::namespace_mode(&self.peer, &self.root_namespace, namespace)
    }

    /// The policies of `list` that attach to the workload. With `root_first` (Istio's
    /// AuthorizationPolicy order) the root namespace's come first, else the workload
    /// namespace's (RequestAuthentication); each part stays in age order.
    fn applicable<'p, T>(
        &self,
        list: &'p [Scoped<T>],
        namespace: &str,
        labels: &Labels,
        root_first: bool,
    ) -> Vec<&'p Scoped<T>> {
        let mut out: Vec<&Scoped<T>> = list
            .iter()
            .filter(|p| p.namespace == namespace || p.namespace == self.root_namespace)
            .filter(|p| p.attaches(namespace, labels))
            .collect();
        out.sort_by_key(|p| (p.namespace == self.root_namespace) != root_first);
        out
    }
}

fn sorted_keys<T>(list: &[&Scoped<T>]) -> Vec<String> {
    let mut keys: Vec<String> = list.iter().map(|p| p.key.clone()).collect();
    keys.sort();
    keys
}

type Scope<'a> = (
    Option<&'a PolicyTargetReference>,
    &'a [PolicyTargetReference],
    &'a Option<WorkloadSelector>,
);

/// The scope of a policy that may name its targets (`targetRef(s)`) instead of selecting
/// workloads; a selector is checked against the registry only when it is what applies.
fn scoped<T>(
    r: &Resource,
    (one, many, sel): Scope<'_>,
    compiled: T,
    registry: &Registry,
    root_namespace: &str,
    findings: &mut Findings,
) -> Scoped<T> {
    let gateways = targets(one, many, r, registry, findings);
    let scoped = Scoped {
        key: format!("{}/{}", r.namespace(), r.name()),
        namespace: r.namespace().to_string(),
        name: r.name().to_string(),
        created: r.metadata.creation_timestamp.clone(),
        selector: selector(sel),
        gateways,
        compiled,
    };
    if scoped.gateways.is_none() {
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

/// The Gateway API gateways a policy names (`None` without targetRefs), reporting the
/// targets that attach it to nothing skiff runs.
pub(super) fn targets(
    one: Option<&PolicyTargetReference>,
    many: &[PolicyTargetReference],
    r: &Resource,
    registry: &Registry,
    findings: &mut Findings,
) -> Option<Vec<String>> {
    // As Istio: `targetRefs` when given, else `targetRef`.
    let (refs, field): (Vec<&PolicyTargetReference>, &str) = if many.is_empty() {
        (one.into_iter().collect(), "spec.targetRef")
    } else {
        (many.iter().collect(), "spec.targetRefs")
    };
    if refs.is_empty() {
        return None;
    }
    let mut gateways = Vec::new();
    for (i, t) in refs.iter().enumerate() {
        let path = if many.is_empty() {
            field.to_string()
        } else {
            format!("{field}[{i}]")
        };
        let group = t.group.as_deref().unwrap_or("");
        if group == "gateway.networking.k8s.io" && t.kind == "Gateway" {
            let selector = Labels::from([(GATEWAY_NAME_LABEL.to_string(), t.name.clone())]);
            if registry.select(r.namespace(), &selector).is_empty() {
                findings.report(
                    Severity::Info,
                    Code::PolicyWithoutWorkload,
                    r,
                    Some(&path),
                    format!(
                        "no workload in namespace {} runs Gateway {} (label {GATEWAY_NAME_LABEL}={}); \
                         this target applies to nothing",
                        r.namespace(),
                        t.name,
                        t.name
                    ),
                );
            }
            gateways.push(t.name.clone());
        } else {
            findings.report(
                Severity::Warning,
                Code::NotImplemented,
                r,
                Some(&path),
                format!(
                    "a targetRef to a {} attaches the policy to waypoint proxies (ambient \
                     mode), which skiff does not run; it applies to no workload here (use a \
                     selector)",
                    t.kind
                ),
            );
        }
    }
    Some(gateways)
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
        findings.report_args(
            Severity::Info,
            Code::PolicyWithoutWorkload,
            r,
            Some("spec.selector"),
            format!(
                "no workload in namespace {namespace} has labels {}; this policy applies to nothing",
                display_labels(selector)
            ),
            vec![
                selector
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ],
        );
    }
}

#[cfg(test)]
mod tests;
