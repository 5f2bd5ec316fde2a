//! AuthorizationPolicy → [`AuthzPolicy`], normalised as Istio's RBAC builder does
//! (`pilot/pkg/security/authz/model/{model,generator}.go`, trust domain aliases from
//! `pilot/pkg/security/trustdomain/bundle.go`), so the proxy compares plain values.

use skiff_api::security::{self as api, AuthorizationAction};
use skiff_api::{Entry, Resource};

use crate::config::{
    AuthzAction, AuthzCondition, AuthzOperation, AuthzPolicy, AuthzRule, AuthzSource,
};

/// The annotation that makes a policy dry-run.
pub(crate) const DRY_RUN: &str = "istio.io/dry-run";

/// Istio's trust domain bundle: the mesh's trust domain first, then its aliases.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustDomains(pub(crate) Vec<String>);

impl TrustDomains {
    /// Principals `<td>/ns/<ns>/sa/<sa>` whose trust domain is one of the bundle (or
    /// Istio's default `cluster.local`) stand for the same identity in every trust
    /// domain of the bundle; other values are kept as written.
    pub(crate) fn principals(&self, values: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |v: String| {
            if !out.contains(&v) {
                out.push(v);
            }
        };
        for value in values {
            let parts: Vec<&str> = value.split('/').collect();
            let td = parts[0];
            let enforced = parts.len() == 5 && td != "*";
            if !enforced || !(td == "cluster.local" || self.0.iter().any(|t| loose_match(td, t))) {
                push(value.clone());
                continue;
            }
            let rest = &value[td.len()..];
            for t in &self.0 {
                if suffix_pattern(t, td) {
                    push(value.clone());
                } else {
                    push(format!("{t}{rest}"));
                }
            }
        }
        out
    }

    /// Trust domain values: one of the bundle stands for all of them.
    pub(crate) fn trust_domains(&self, values: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in values {
            let expanded = if self.0.contains(v) {
                self.0.clone()
            } else {
                vec![v.clone()]
            };
            for e in expanded {
                if !out.contains(&e) {
                    out.push(e);
                }
            }
        }
        out
    }
}

/// `pattern` is `*suffix` and `a` ends with it.
fn suffix_pattern(a: &str, pattern: &str) -> bool {
    pattern.strip_prefix('*').is_some_and(|p| a.ends_with(p))
}

/// `prefix*` and `a` starts with it.
fn prefix_pattern(a: &str, pattern: &str) -> bool {
    pattern.strip_suffix('*').is_some_and(|p| a.starts_with(p))
}

/// Istio's two-way wildcard comparison of trust domains (either side may hold the `*`).
fn loose_match(a: &str, b: &str) -> bool {
    a == b
        || b == "*"
        || prefix_pattern(a, b)
        || prefix_pattern(b, a)
        || suffix_pattern(a, b)
        || suffix_pattern(b, a)
}

/// Go's `strconv.ParseBool`, which Istio uses for the dry-run annotation.
pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Compiles one policy; `None` for CUSTOM (refused at load time, so never here).
pub(super) fn compile(
    ap: &Entry<'_, api::AuthorizationPolicy>,
    trust: &TrustDomains,
) -> Option<AuthzPolicy> {
    let action = match ap.action.unwrap_or(AuthorizationAction::Allow) {
        AuthorizationAction::Allow => AuthzAction::Allow,
        AuthorizationAction::Deny => AuthzAction::Deny,
        AuthorizationAction::Audit => AuthzAction::Audit,
        AuthorizationAction::Custom => return None,
    };
    let namespace = ap.namespace();
    Some(AuthzPolicy {
        name: format!("{namespace}/{}", ap.name()),
        action,
        dry_run: dry_run(ap.resource),
        rules: ap
            .rules
            .iter()
            .map(|r| AuthzRule {
                from: r
                    .from
                    .iter()
                    .map(|f| source(f.source.as_ref(), namespace, trust))
                    .collect(),
                to: r
                    .to
                    .iter()
                    .map(|t| operation(t.operation.as_ref()))
                    .collect(),
                when: r
                    .when
                    .iter()
                    .map(|c| condition(c, namespace, trust))
                    .collect(),
            })
            .collect(),
    })
}

/// `istio.io/dry-run`, read with Go's `strconv.ParseBool` as Istio does; a value that
/// is no boolean (the loader warns about it) leaves the policy enforced.
fn dry_run(r: &Resource) -> bool {
    r.metadata
        .annotations
        .get(DRY_RUN)
        .and_then(|v| parse_bool(v))
        .unwrap_or(false)
}

/// `sa` means a service account of the policy's namespace.
fn service_accounts(values: &[String], namespace: &str) -> Vec<String> {
    values
        .iter()
        .map(|v| {
            if v.contains('/') {
                v.clone()
            } else {
                format!("{namespace}/{v}")
            }
        })
        .collect()
}

fn source(s: Option<&api::Source>, namespace: &str, trust: &TrustDomains) -> AuthzSource {
    let Some(s) = s else {
        return AuthzSource::default();
    };
    AuthzSource {
        principals: trust.principals(&s.principals),
        not_principals: trust.principals(&s.not_principals),
        request_principals: s.request_principals.clone(),
        not_request_principals: s.not_request_principals.clone(),
        namespaces: s.namespaces.clone(),
        not_namespaces: s.not_namespaces.clone(),
        service_accounts: service_accounts(&s.service_accounts, namespace),
        not_service_accounts: service_accounts(&s.not_service_accounts, namespace),
        trust_domains: trust.trust_domains(&s.trust_domains),
        not_trust_domains: trust.trust_domains(&s.not_trust_domains),
        ip_blocks: s.ip_blocks.clone(),
        not_ip_blocks: s.not_ip_blocks.clone(),
        remote_ip_blocks: s.remote_ip_blocks.clone(),
        not_remote_ip_blocks: s.not_remote_ip_blocks.clone(),
    }
}

fn operation(o: Option<&api::Operation>) -> AuthzOperation {
    let Some(o) = o else {
        return AuthzOperation::default();
    };
    let ports = |list: &[String]| list.iter().filter_map(|p| p.parse().ok()).collect();
    let lower = |list: &[String]| list.iter().map(|h| h.to_ascii_lowercase()).collect();
    AuthzOperation {
        hosts: lower(&o.hosts),
        not_hosts: lower(&o.not_hosts),
        ports: ports(&o.ports),
        not_ports: ports(&o.not_ports),
        methods: o.methods.clone(),
        not_methods: o.not_methods.clone(),
        paths: o.paths.clone(),
        not_paths: o.not_paths.clone(),
    }
}

fn condition(c: &api::Condition, namespace: &str, trust: &TrustDomains) -> AuthzCondition {
    let normalise = |values: &[String]| match c.key.as_str() {
        "source.serviceAccount" => service_accounts(values, namespace),
        "source.principal" => trust.principals(values),
        "source.trustDomain" => trust.trust_domains(values),
        _ => values.to_vec(),
    };
    AuthzCondition {
        key: c.key.clone(),
        values: normalise(&c.values),
        not_values: normalise(&c.not_values),
    }
}
