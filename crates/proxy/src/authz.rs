//! Authorization (AuthorizationPolicy): phase 4 of an inbound request, and the check of
//! an inbound TCP connection. Compiled once per snapshot from the policies the control
//! plane sends; evaluated as Istio's RBAC filters do:
//!
//! 1. a request that matches any DENY policy is denied;
//! 2. when any ALLOW policy applies to the workload, a request must match one of them;
//! 3. AUDIT policies only mark what they match;
//! 4. dry-run policies (`istio.io/dry-run: "true"`) are evaluated the same way and only
//!    logged.
//!
//! A policy matches when any of its rules does; a rule when its sources, operations and
//! conditions all do (an empty rule matches everything; a policy without rules matches
//! nothing, so `spec: {}` denies all). On plain TCP, a rule that needs HTTP attributes
//! (hosts, methods, paths, request principals, `request.*` conditions) never matches for
//! ALLOW, and for DENY and AUDIT those attributes are dropped, so the rule is broader —
//! Istio's rule, which errs towards denying.
//!
//! Every denial says which policy decided and why, in words: "peer
//! spiffe://cluster.local/ns/prod/sa/frontend not allowed by AuthorizationPolicy
//! prod/backend-allow (rule 0: method POST is not one of GET)".

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use skiff_model::config::{AuthzAction, AuthzPolicy};

use crate::Error;

mod matcher;
mod rule;

pub(crate) use matcher::IpBlock;
use rule::{RuleRt, Why};

/// What authorization looks at in a verified token (the authenticate phase's output).
pub(crate) trait JwtView: Send + Sync {
    /// `<iss>/<sub>`.
    fn principal(&self) -> String;
    /// The `aud` values.
    fn audiences(&self) -> Vec<&str>;
    /// `azp`.
    fn presenter(&self) -> Option<&str>;
    /// The values of the claim at a nested path (strings, string lists, and
    /// space-delimited claims split into words).
    fn claim_values(&self, path: &[&str]) -> Vec<&str>;
}

/// The attributes of one request (or TCP connection) authorization reads.
pub(crate) struct Attrs<'a> {
    /// The downstream's address (`source.ip`, `ipBlocks`).
    pub(crate) peer_ip: IpAddr,
    /// The original client's address (`remote.ip`, `remoteIpBlocks`). Without a
    /// configured number of trusted proxies, as Istio's default, the downstream's.
    pub(crate) remote_ip: IpAddr,
    /// The peer's SPIFFE id from mutual TLS, with `spiffe://`.
    pub(crate) peer: Option<&'a str>,
    /// This workload's address and port the connection came to.
    pub(crate) dest_ip: IpAddr,
    pub(crate) dest_port: u16,
    /// The TLS server name the client asked for.
    pub(crate) sni: Option<&'a str>,
    /// `None` for plain TCP.
    pub(crate) http: Option<HttpAttrs<'a>>,
    /// The verified token, if the request carried one.
    pub(crate) jwt: Option<&'a dyn JwtView>,
}

/// The HTTP part of [`Attrs`].
pub(crate) struct HttpAttrs<'a> {
    pub(crate) method: &'a str,
    /// Without the query string.
    pub(crate) path: &'a str,
    /// The authority, as sent.
    pub(crate) host: &'a str,
    pub(crate) headers: &'a HeaderMap,
}

impl Attrs<'_> {
    /// The peer identity as Istio's principals are written: without `spiffe://`.
    fn principal(&self) -> Option<&str> {
        self.peer.map(|p| p.strip_prefix("spiffe://").unwrap_or(p))
    }

    /// The parts of the peer's SPIFFE id: (trust domain, namespace, service account).
    fn peer_parts(&self) -> Option<(&str, &str, &str)> {
        let p = self.principal()?;
        let (td, rest) = p.split_once('/')?;
        let rest = rest.strip_prefix("ns/")?;
        let (ns, sa) = rest.split_once("/sa/")?;
        Some((td, ns, sa))
    }
}

/// The outcome of authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Allow,
    Deny {
        /// The DENY policy that matched, or `None` when no ALLOW policy did.
        policy: Option<Arc<str>>,
        /// Why, in words.
        reason: String,
    },
}

impl Decision {
    /// Envoy's response code details for a denial, followed by the reason:
    /// `rbac_access_denied_matched_policy[prod/deny-all]: …`.
    pub(crate) fn details(&self) -> Option<String> {
        match self {
            Decision::Allow => None,
            Decision::Deny { policy, reason } => Some(format!(
                "rbac_access_denied_matched_policy[{}]: {reason}",
                policy.as_deref().unwrap_or("none")
            )),
        }
    }
}

/// The compiled AuthorizationPolicies of a workload.
#[derive(Debug, Default)]
pub(crate) struct Authz {
    policies: Vec<PolicyRt>,
    /// Any enforced ALLOW policy: then a request must match one.
    has_allow: bool,
}

#[derive(Debug)]
struct PolicyRt {
    name: Arc<str>,
    action: AuthzAction,
    dry_run: bool,
    /// Rules for HTTP requests.
    http: Vec<RuleRt>,
    /// Rules for plain TCP connections (HTTP-only attributes handled as Istio does).
    tcp: Vec<RuleRt>,
}

impl PolicyRt {
    fn rules(&self, http: bool) -> &[RuleRt] {
        if http { &self.http } else { &self.tcp }
    }
}

impl Authz {
    /// Compiles the policies; a value that cannot be used (a bad CIDR) rejects the
    /// config, so nothing is silently looser than written. Conditions skiff cannot
    /// evaluate are returned as warnings (they fail closed: an ALLOW rule with one never
    /// matches, a DENY rule treats it as matching).
    pub(crate) fn compile(
        policies: &[AuthzPolicy],
        warnings: &mut Vec<String>,
    ) -> Result<Authz, Error> {
        let mut out = Authz::default();
        for p in policies {
            let name: Arc<str> = p.name.as_str().into();
            let deny_like = p.action != AuthzAction::Allow;
            let mut http = Vec::with_capacity(p.rules.len());
            let mut tcp = Vec::new();
            for (i, r) in p.rules.iter().enumerate() {
                let place = || format!("AuthorizationPolicy {} rule {i}", p.name);
                let compiled = RuleRt::compile(i, r, deny_like, false, warnings, &place)?;
                http.push(compiled);
                tcp.push(RuleRt::compile(i, r, deny_like, true, warnings, &place)?);
            }
            out.has_allow |= p.action == AuthzAction::Allow && !p.dry_run;
            out.policies.push(PolicyRt {
                name,
                action: p.action,
                dry_run: p.dry_run,
                http,
                tcp,
            });
        }
        Ok(out)
    }

    /// No policy applies: everything is allowed without looking.
    pub(crate) fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Decides about a request or connection. Dry-run policies are evaluated too and
    /// their would-be outcome logged.
    pub(crate) fn check(&self, a: &Attrs<'_>) -> Decision {
        let decision = self.decide(a, false);
        if self.policies.iter().any(|p| p.dry_run) {
            let shadow = self.decide(a, true);
            if let Decision::Deny { .. } = &shadow {
                tracing::info!(
                    peer = a.peer.unwrap_or("-"),
                    "dry-run: {}",
                    shadow.details().unwrap_or_default()
                );
            }
        }
        decision
    }

    fn decide(&self, a: &Attrs<'_>, dry_run: bool) -> Decision {
        let http = a.http.is_some();
        let considered = || self.policies.iter().filter(move |p| p.dry_run == dry_run);
        for p in considered().filter(|p| p.action == AuthzAction::Deny) {
            if let Some(rule) = p.rules(http).iter().find(|r| r.matches(a)) {
                return Decision::Deny {
                    policy: Some(p.name.clone()),
                    reason: format!(
                        "{} denied by AuthorizationPolicy {} (rule {} matched)",
                        who(a),
                        p.name,
                        rule.index
                    ),
                };
            }
        }
        for p in considered().filter(|p| p.action == AuthzAction::Audit) {
            if p.rules(http).iter().any(|r| r.matches(a)) {
                tracing::info!(peer = a.peer.unwrap_or("-"), policy = %p.name, "audit: AuthorizationPolicy matched");
            }
        }
        let mut allow = considered()
            .filter(|p| p.action == AuthzAction::Allow)
            .peekable();
        let has_allow = if dry_run {
            allow.peek().is_some()
        } else {
            self.has_allow
        };
        if !has_allow {
            return Decision::Allow;
        }
        let allow: Vec<&PolicyRt> = allow.collect();
        if allow
            .iter()
            .any(|p| p.rules(http).iter().any(|r| r.matches(a)))
        {
            return Decision::Allow;
        }
        Decision::Deny {
            policy: None,
            reason: not_allowed(a, &allow),
        }
    }
}

/// "peer spiffe://…" or "a caller without a mesh identity (10.0.0.1)".
fn who(a: &Attrs<'_>) -> String {
    match a.peer {
        Some(p) => format!("peer {p}"),
        None => format!("a caller without a mesh identity ({})", a.peer_ip),
    }
}

/// Why no ALLOW policy matched: each policy's rules and the first thing each missed.
fn not_allowed(a: &Attrs<'_>, allow: &[&PolicyRt]) -> String {
    let names: Vec<&str> = allow.iter().map(|p| &*p.name).collect();
    let mut whys = Vec::new();
    for p in allow {
        let rs = p.rules(a.http.is_some());
        if rs.is_empty() {
            whys.push(format!("{} has no rules, so it allows nothing", p.name));
        }
        for r in rs {
            if whys.len() == 3 {
                whys.push("…".into());
                break;
            }
            if let Some(why) = r.why_not(a) {
                whys.push(match why {
                    Why::Http => format!("rule {} needs HTTP attributes and this is TCP", r.index),
                    Why::Field(w) => format!("rule {}: {w}", r.index),
                });
            }
        }
    }
    let policies = if names.len() == 1 {
        format!("AuthorizationPolicy {}", names[0])
    } else {
        format!("any of the AuthorizationPolicies {}", names.join(", "))
    };
    format!("{} not allowed by {policies} ({})", who(a), whys.join("; "))
}

#[cfg(test)]
mod tests;
