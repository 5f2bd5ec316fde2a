//! VirtualServices, translated once into route templates the compiler instantiates per
//! proxy and port.

use std::time::Duration;

use skiff_api::networking::{HttpRoute, HttpRouteDestination, VirtualService};
use skiff_api::{Entry, HeaderMatch as ApiHeaderMatch, Resource, StringMatch as ApiStringMatch};

use crate::config::{
    CorsPolicy, Fault, FaultAbort, FaultDelay, HeaderMatch, HeaderOps, HeaderRules, Redirect,
    RetryPolicy, Rewrite, RouteMatch, StringMatch,
};
use crate::diagnostic::{Code, Findings, ResourceRef, Severity, resource_ref};
use crate::registry::{Labels, Registry, Visibility};

mod l4;

pub use l4::{L4Condition, L4Rule};

/// The reserved gateway name for all sidecars.
pub const MESH: &str = "mesh";

/// A VirtualService as the compiler uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualServiceInfo {
    /// The resource.
    pub resource: ResourceRef,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Hosts, resolved (`backend` → `backend.prod.svc.cluster.local`).
    pub hosts: Vec<String>,
    /// Bound to the sidecars (`gateways` empty or holding `mesh`).
    pub mesh: bool,
    /// Gateways it is bound to, as `namespace/name`.
    pub gateways: Vec<String>,
    /// `exportTo`.
    pub visibility: Visibility,
    /// HTTP rules, in order.
    pub http: Vec<HttpRule>,
    /// `tcp` rules, in order.
    pub tcp: Vec<L4Rule>,
    /// `tls` rules, in order.
    pub tls: Vec<L4Rule>,
}

/// One HTTP rule.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRule {
    /// Route name: `<namespace>/<virtualservice>/<rule name or index>`.
    pub name: String,
    /// Field path of the rule, `spec.http[i]`.
    pub field: String,
    /// Alternatives; empty matches every request.
    pub matches: Vec<MatchCondition>,
    /// What the rule does.
    pub action: RuleAction,
    /// Whole-request timeout.
    pub timeout: Option<Duration>,
    /// Fault injection (`fault`), when it delays or aborts any request.
    pub fault: Option<Fault>,
    /// The rule's `headers`.
    pub headers: HeaderRules,
    /// `mirror` (with `mirrorPercentage`) and `mirrors`, destinations resolved.
    pub mirrors: Vec<MirrorRef>,
    /// `corsPolicy`.
    pub cors: Option<CorsPolicy>,
    /// `redirect.derivePort: FROM_REQUEST_PORT`: the redirect names the port the
    /// request came to (set per port when the rule is compiled, as istiod does).
    pub redirect_from_request_port: bool,
}

/// A mirror destination of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorRef {
    /// Where the copies go (its weight is unused).
    pub destination: DestinationRef,
    /// Share of requests copied, in millionths.
    pub per_million: u32,
}

/// One alternative of a rule's match, with the conditions the compiler settles per
/// proxy rather than per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchCondition {
    /// The per-request part.
    pub route_match: RouteMatch,
    /// `gateways` of the match (resolved); when not empty, replaces the VirtualService's.
    pub gateways: Vec<String>,
    /// `sourceLabels`: only proxies with these labels.
    pub source_labels: Labels,
    /// `sourceNamespace`: only proxies in this namespace.
    pub source_namespace: Option<String>,
}

impl MatchCondition {
    /// Whether the alternative can hold for a proxy at `place` (`mesh` or a gateway's
    /// `namespace/name`) with these labels and namespace, on destination `port`.
    pub fn applies(&self, place: &str, labels: &Labels, namespace: &str, port: u16) -> bool {
        (self.gateways.is_empty() || self.gateways.iter().any(|g| g == place))
            && crate::registry::labels_match(&self.source_labels, labels)
            && self
                .source_namespace
                .as_deref()
                .is_none_or(|ns| ns == namespace)
            && self.route_match.port.is_none_or(|p| p == port)
    }
}

/// What a rule does.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleAction {
    /// Forward to weighted destinations.
    Forward {
        /// Destinations; weights already normalised to sum to 100.
        destinations: Vec<DestinationRef>,
        /// Retry policy (Istio's default when the rule sets none).
        retries: Option<RetryPolicy>,
        /// Rewrite before forwarding.
        rewrite: Option<Rewrite>,
    },
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer directly.
    DirectResponse {
        /// Status.
        status: u16,
        /// Body.
        body: Option<String>,
    },
}

/// A destination of a rule, host resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationRef {
    /// Host, resolved.
    pub host: String,
    /// Subset.
    pub subset: Option<String>,
    /// Port, when the rule names one.
    pub port: Option<u16>,
    /// Weight, 0–100.
    pub weight: u32,
    /// Field path, `spec.http[i].route[j].destination`.
    pub field: String,
    /// `route[j].headers`.
    pub headers: HeaderRules,
}

/// Istio's retry policy for rules that set none (`retry.DefaultPolicy` in istiod): two
/// retries on `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`
/// with 503 as the one retriable status code.
pub fn default_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        per_try_timeout: None,
        retry_on: [
            "connect-failure",
            "refused-stream",
            "unavailable",
            "cancelled",
            "retriable-status-codes",
            "503",
        ]
        .map(String::from)
        .to_vec(),
        backoff: None,
    }
}

/// Resolves a gateway reference written in namespace `namespace`: `mesh`, `ns/name`,
/// a legacy `name.ns[.svc.…]`, or `name` in the same namespace.
pub fn resolve_gateway(written: &str, namespace: &str) -> String {
    let written = written.trim();
    if written == MESH {
        return MESH.to_string();
    }
    if written.contains('/') {
        return written.to_string();
    }
    match written.split_once('.') {
        Some((name, rest)) => {
            let ns = rest.split('.').next().unwrap_or(namespace);
            format!("{ns}/{name}")
        }
        None => format!("{namespace}/{written}"),
    }
}

pub(super) fn convert(
    vs: &Entry<'_, VirtualService>,
    delegates: &super::delegate::Delegates<'_>,
    registry: &Registry,
    findings: &mut Findings,
) -> VirtualServiceInfo {
    let r = vs.resource;
    let ns = vs.namespace();
    let mut hosts = Vec::new();
    for (i, h) in vs.hosts.iter().enumerate() {
        let (resolved, lenient) = registry.resolve_host(h, ns);
        if lenient {
            super::destination_rule::report_lenient(
                findings,
                r,
                &format!("spec.hosts[{i}]"),
                h,
                &resolved,
            );
        }
        if !hosts.contains(&resolved) {
            hosts.push(resolved);
        }
    }
    let gateways: Vec<String> = vs.gateways.iter().map(|g| resolve_gateway(g, ns)).collect();
    let mesh = gateways.is_empty() || gateways.iter().any(|g| g == MESH);
    let mut http: Vec<HttpRule> = Vec::with_capacity(vs.http.len());
    for (i, rule) in vs.http.iter().enumerate() {
        match &rule.delegate {
            None => http.extend(http_rule(vs, i, rule, registry, findings)),
            Some(d) => delegated(vs, i, rule, d, delegates, registry, findings, &mut http),
        }
    }
    unique_rule_names(&mut http, r, findings);
    VirtualServiceInfo {
        resource: resource_ref(r),
        namespace: ns.to_string(),
        name: vs.name().to_string(),
        hosts,
        mesh,
        gateways: gateways.into_iter().filter(|g| g != MESH).collect(),
        visibility: Visibility::from_export_to(&vs.export_to, ns),
        http,
        tcp: l4::tcp_rules(vs, registry, findings),
        tls: l4::tls_rules(vs, registry, findings),
    }
}

/// The rules a root rule delegates to, merged with it (istiod's semantics, in
/// `delegate.rs`). They are named after the root: `<ns>/<root>/<delegate rule name or
/// i.j>`; their destinations resolve in the delegate's namespace.
#[allow(
    clippy::too_many_arguments,
    reason = "the conversion's context, passed through"
)]
fn delegated(
    vs: &Entry<'_, VirtualService>,
    i: usize,
    rule: &HttpRoute,
    d: &skiff_api::networking::Delegate,
    delegates: &super::delegate::Delegates<'_>,
    registry: &Registry,
    findings: &mut Findings,
    out: &mut Vec<HttpRule>,
) {
    let r = vs.resource;
    let field = format!("spec.http[{i}].delegate");
    let ns = d
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(vs.namespace());
    let name = d.name.as_deref().unwrap_or_default();
    let Some(child) = delegates.get(&(ns, name)) else {
        findings.report(
            Severity::Warning,
            Code::UnknownDelegate,
            r,
            Some(&field),
            format!(
                "delegate VirtualService {ns}/{name} does not exist (a delegate has no hosts): this rule routes nothing"
            ),
        );
        return;
    };
    for (j, child_rule) in child.http.iter().enumerate() {
        if child_rule.delegate.is_some() {
            findings.report(
                Severity::Warning,
                Code::UnknownDelegate,
                child.resource,
                Some(&format!("spec.http[{j}].delegate")),
                "a delegate cannot delegate again (one level only): this rule is ignored",
            );
            continue;
        }
        let Some(merged) = super::delegate::merge_route(rule, child_rule) else {
            findings.report(
                Severity::Warning,
                Code::UnknownDelegate,
                child.resource,
                Some(&format!("spec.http[{j}].match")),
                format!(
                    "the matches of this rule are not narrower than those of {}/{} spec.http[{i}], which delegates to it: the rule is ignored",
                    vs.namespace(),
                    vs.name()
                ),
            );
            continue;
        };
        if let Some(mut compiled) = http_rule(child, j, &merged, registry, findings) {
            let label = merged.name.clone().unwrap_or_else(|| format!("{i}.{j}"));
            compiled.name = format!("{}/{}/{label}", vs.namespace(), vs.name());
            out.push(compiled);
        }
    }
}

fn http_rule(
    vs: &Entry<'_, VirtualService>,
    i: usize,
    rule: &HttpRoute,
    registry: &Registry,
    findings: &mut Findings,
) -> Option<HttpRule> {
    let r = vs.resource;
    let ns = vs.namespace();
    let field = format!("spec.http[{i}]");
    let action = if let Some(redirect) = &rule.redirect {
        RuleAction::Redirect(Redirect {
            uri: redirect.uri.clone(),
            authority: redirect.authority.clone(),
            scheme: redirect.scheme.clone(),
            port: redirect.port.and_then(|p| u16::try_from(p).ok()),
            status: redirect
                .redirect_code
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(301),
        })
    } else if let Some(direct) = &rule.direct_response {
        let body = direct.body.as_ref().and_then(|b| match (&b.string, &b.bytes) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(bytes)) => match decode_base64(bytes).and_then(|v| String::from_utf8(v).ok()) {
                Some(text) => Some(text),
                None => {
                    not_implemented(findings, r, &format!("{field}.directResponse.body.bytes"),
                        "a binary (non UTF-8) direct response body is not supported yet; the body is left empty");
                    None
                }
            },
            (None, None) => None,
        });
        RuleAction::DirectResponse {
            status: u16::try_from(direct.status).unwrap_or(500),
            body,
        }
    } else if !rule.route.is_empty() {
        let mut rewrite = None;
        if let Some(rw) = &rule.rewrite {
            let regex = rw.uri_regex_rewrite.as_ref().and_then(|r| {
                Some(crate::config::RegexRewrite {
                    pattern: r.r#match.clone()?,
                    substitution: r.rewrite.clone().unwrap_or_default(),
                })
            });
            if rw.uri.is_some() || rw.authority.is_some() || regex.is_some() {
                rewrite = Some(Rewrite {
                    uri: rw.uri.clone(),
                    authority: rw.authority.clone(),
                    uri_regex_rewrite: regex,
                });
            }
        }
        RuleAction::Forward {
            destinations: http_destinations(&rule.route, &field, ns, registry, r, findings),
            retries: retries(rule),
            rewrite,
        }
    } else {
        // Only a delegate (reported by the loader as not implemented), or nothing.
        return None;
    };
    let matches = rule
        .r#match
        .iter()
        .map(|m| MatchCondition {
            route_match: RouteMatch {
                uri: m.uri.as_ref().map(string_match),
                method: m.method.as_ref().map(string_match),
                scheme: m.scheme.as_ref().map(string_match),
                authority: m.authority.as_ref().map(string_match),
                headers: header_matches(&m.headers),
                without_headers: header_matches(&m.without_headers),
                query_params: m
                    .query_params
                    .iter()
                    .map(|(k, v)| HeaderMatch {
                        name: k.clone(),
                        value: header_value(v),
                    })
                    .collect(),
                port: m.port.and_then(|p| u16::try_from(p).ok()),
                ignore_uri_case: m.ignore_uri_case,
            },
            gateways: m.gateways.iter().map(|g| resolve_gateway(g, ns)).collect(),
            source_labels: m.source_labels.clone(),
            source_namespace: m.source_namespace.clone(),
        })
        .collect();
    let label = rule.name.clone().unwrap_or_else(|| i.to_string());
    let mirrors = mirrors(rule, &field, ns, registry, r, findings);
    Some(HttpRule {
        name: format!("{ns}/{}/{label}", vs.name()),
        field,
        matches,
        action,
        timeout: rule
            .timeout
            .as_ref()
            .map(|d| d.value())
            .filter(|d| !d.is_zero()),
        fault: rule.fault.as_ref().and_then(fault),
        headers: rule.headers.as_ref().map(header_rules).unwrap_or_default(),
        mirrors,
        cors: rule.cors_policy.as_ref().map(cors),
        redirect_from_request_port: rule.redirect.as_ref().is_some_and(|r| {
            r.port.is_none()
                && r.derive_port
                    == Some(skiff_api::networking::RedirectPortSelection::FromRequestPort)
        }),
    })
}

/// `headers` as the proxy applies them: names in lower case, sorted.
pub(crate) fn header_rules(h: &skiff_api::networking::Headers) -> HeaderRules {
    fn ops(o: Option<&skiff_api::networking::HeaderOperations>) -> HeaderOps {
        let Some(o) = o else {
            return HeaderOps::default();
        };
        let pairs = |m: &std::collections::BTreeMap<String, String>| {
            let mut v: Vec<(String, String)> = m
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect();
            v.sort();
            v
        };
        let mut remove: Vec<String> = o.remove.iter().map(|k| k.to_ascii_lowercase()).collect();
        remove.sort();
        remove.dedup();
        HeaderOps {
            set: pairs(&o.set),
            add: pairs(&o.add),
            remove,
        }
    }
    HeaderRules {
        request: ops(h.request.as_ref()),
        response: ops(h.response.as_ref()),
    }
}

/// `mirror` + `mirrorPercentage` (or the deprecated integer `mirrorPercent`), then each
/// of `mirrors`. Istio's default share is 100% when no percentage is given.
fn mirrors(
    rule: &HttpRoute,
    field: &str,
    ns: &str,
    registry: &Registry,
    r: &Resource,
    findings: &mut Findings,
) -> Vec<MirrorRef> {
    let share = |p: Option<&skiff_api::Percent>| {
        p.map_or(1_000_000, |p| {
            (p.value.clamp(0.0, 100.0) * 10_000.0).round() as u32
        })
    };
    let mut out = Vec::new();
    let mut push =
        |d: &skiff_api::networking::Destination, dest_field: String, per_million: u32| {
            let (host, lenient) = registry.resolve_host(&d.host, ns);
            if lenient {
                super::destination_rule::report_lenient(
                    findings,
                    r,
                    &format!("{dest_field}.host"),
                    &d.host,
                    &host,
                );
            }
            if per_million == 0 {
                return;
            }
            out.push(MirrorRef {
                destination: DestinationRef {
                    host,
                    subset: d.subset.clone().filter(|s| !s.is_empty()),
                    port: d
                        .port
                        .and_then(|p| p.number)
                        .and_then(|n| u16::try_from(n).ok()),
                    weight: 0,
                    field: dest_field,
                    headers: HeaderRules::default(),
                },
                per_million,
            });
        };
    if let Some(m) = &rule.mirror {
        let per_million = match (&rule.mirror_percentage, rule.mirror_percent) {
            (Some(p), _) => share(Some(p)),
            (None, Some(p)) => p.min(100) * 10_000,
            (None, None) => 1_000_000,
        };
        push(m, format!("{field}.mirror"), per_million);
    }
    for (i, m) in rule.mirrors.iter().enumerate() {
        push(
            &m.destination,
            format!("{field}.mirrors[{i}].destination"),
            share(m.percentage.as_ref()),
        );
    }
    out
}

/// `corsPolicy`, as Envoy's CORS filter takes it.
fn cors(c: &skiff_api::networking::CorsPolicy) -> CorsPolicy {
    let join = |v: &[String]| (!v.is_empty()).then(|| v.join(","));
    let mut allow_origins: Vec<StringMatch> = c.allow_origins.iter().map(string_match).collect();
    allow_origins.extend(c.allow_origin.iter().map(|o| StringMatch::Exact(o.clone())));
    CorsPolicy {
        allow_origins,
        allow_methods: join(&c.allow_methods),
        allow_headers: join(&c.allow_headers),
        expose_headers: join(&c.expose_headers),
        max_age_seconds: c.max_age.as_ref().map(|d| d.value().as_secs()),
        allow_credentials: c.allow_credentials.unwrap_or(false),
        ignore_unmatched_preflights: matches!(
            c.unmatched_preflights,
            Some(skiff_api::networking::UnmatchedPreflights::Ignore)
        ),
    }
}

/// Route names key per-route settings in the proxy config (faults), so they must be
/// unique: a rule whose `name` an earlier rule of the same VirtualService already
/// carries is renamed `<name>#<index>`, with a warning.
fn unique_rule_names(http: &mut [HttpRule], r: &Resource, findings: &mut Findings) {
    let mut seen = std::collections::HashSet::new();
    for rule in http.iter_mut() {
        if !seen.insert(rule.name.clone()) {
            let index = rule
                .field
                .trim_start_matches("spec.http[")
                .trim_end_matches(']');
            let renamed = format!("{}#{index}", rule.name);
            findings.report(
                Severity::Warning,
                Code::DuplicateRouteName,
                r,
                Some(&format!("{}.name", rule.field)),
                format!(
                    "route name {:?} is already used by an earlier rule; this rule is named {renamed:?} in proxy configs",
                    rule.name.rsplit('/').next().unwrap_or_default()
                ),
            );
            rule.name = renamed;
            seen.insert(rule.name.clone());
        }
    }
}

/// The numeric code of a gRPC status name (`UNAVAILABLE` → 14), as istiod maps
/// `fault.abort.grpcStatus`.
pub fn grpc_code(name: &str) -> Option<u8> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name.trim()))
        .and_then(|i| u8::try_from(i).ok())
}

/// `fault`, as the share of requests (in millionths) delayed and aborted. Istio's
/// semantics, from istiod's translation and Envoy's fault filter: an unset `percentage`
/// delays or aborts no request (istiod leaves Envoy's fractional percentage unset, and
/// an unset one is 0%; a delay falls back to the deprecated integer `percent`). An
/// HTTP/2 abort is reported by the loader as not implemented and left out here.
fn fault(f: &skiff_api::networking::HttpFaultInjection) -> Option<Fault> {
    fn per_million(percentage: Option<&skiff_api::Percent>, percent: Option<i32>) -> u32 {
        match (percentage, percent) {
            (Some(p), _) => (p.value.clamp(0.0, 100.0) * 10_000.0).round() as u32,
            (None, Some(p)) => u32::try_from(p.clamp(0, 100)).unwrap_or(0) * 10_000,
            (None, None) => 0,
        }
    }
    let delay = f.delay.as_ref().and_then(|d| {
        Some(FaultDelay {
            fixed_delay: d.fixed_delay.as_ref()?.value(),
            per_million: per_million(d.percentage.as_ref(), d.percent),
        })
    });
    let abort = f.abort.as_ref().and_then(|a| {
        let (http_status, grpc_status) = match (a.http_status, a.grpc_status.as_deref()) {
            (Some(code), _) => (u16::try_from(code).ok()?, None),
            (None, Some(name)) => (200, Some(grpc_code(name)?)),
            (None, None) => return None,
        };
        Some(FaultAbort {
            http_status,
            grpc_status,
            per_million: per_million(a.percentage.as_ref(), None),
        })
    });
    let delay = delay.filter(|d| d.per_million > 0 && !d.fixed_delay.is_zero());
    let abort = abort.filter(|a| a.per_million > 0);
    (delay.is_some() || abort.is_some()).then_some(Fault { delay, abort })
}

/// One weighted destination of a rule, whichever its kind (`http`, `tcp`, `tls`).
pub(super) struct Weighted<'a> {
    pub(super) destination: &'a skiff_api::networking::Destination,
    pub(super) weight: Option<i32>,
    /// `http` destinations only.
    pub(super) headers: Option<&'a skiff_api::networking::Headers>,
}

fn http_destinations(
    route: &[HttpRouteDestination],
    field: &str,
    ns: &str,
    registry: &Registry,
    r: &Resource,
    findings: &mut Findings,
) -> Vec<DestinationRef> {
    let route: Vec<Weighted<'_>> = route
        .iter()
        .map(|d| Weighted {
            destination: &d.destination,
            weight: d.weight,
            headers: d.headers.as_ref(),
        })
        .collect();
    destinations(&route, "traffic", field, ns, registry, r, findings)
}

/// A rule's destinations: hosts resolved, weights normalised to sum to 100. `what`
/// names what is split ("traffic", "connections") in the warning for a rule whose
/// destinations all lack a weight.
pub(super) fn destinations(
    route: &[Weighted<'_>],
    what: &str,
    field: &str,
    ns: &str,
    registry: &Registry,
    r: &Resource,
    findings: &mut Findings,
) -> Vec<DestinationRef> {
    let raw: Vec<u32> = route
        .iter()
        .map(|d| match (d.weight, route.len()) {
            (None, 1) => 100,
            (w, _) => w.unwrap_or(0).max(0) as u32,
        })
        .collect();
    let weights = normalise_weights(&raw);
    if raw.iter().all(|w| *w == 0) && route.len() > 1 {
        findings.report(
            Severity::Warning,
            Code::NotImplemented,
            r,
            Some(&format!("{field}.route")),
            format!("no destination has a weight; skiff splits the {what} evenly between them"),
        );
    }
    route
        .iter()
        .zip(weights)
        .enumerate()
        .map(|(j, (d, weight))| {
            let dest_field = format!("{field}.route[{j}].destination");
            let (host, lenient) = registry.resolve_host(&d.destination.host, ns);
            if lenient {
                super::destination_rule::report_lenient(
                    findings,
                    r,
                    &format!("{dest_field}.host"),
                    &d.destination.host,
                    &host,
                );
            }
            DestinationRef {
                host,
                subset: d.destination.subset.clone().filter(|s| !s.is_empty()),
                port: d
                    .destination
                    .port
                    .and_then(|p| p.number)
                    .and_then(|n| u16::try_from(n).ok()),
                weight,
                field: dest_field,
                headers: d.headers.map(header_rules).unwrap_or_default(),
            }
        })
        .collect()
}

/// Scales weights to sum to 100, rounding by largest remainder (ties to the earlier
/// destination). All zero: an even split.
pub fn normalise_weights(raw: &[u32]) -> Vec<u32> {
    if raw.is_empty() {
        return Vec::new();
    }
    let total: u64 = raw.iter().map(|&w| u64::from(w)).sum();
    let shares: Vec<u64> = if total == 0 {
        vec![1; raw.len()]
    } else {
        raw.iter().map(|&w| u64::from(w)).collect()
    };
    let total: u64 = shares.iter().sum();
    let mut out: Vec<u32> = shares.iter().map(|&s| (s * 100 / total) as u32).collect();
    let mut left = 100 - out.iter().sum::<u32>();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(shares[i] * 100 % total), i));
    for i in order {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    out
}

fn retries(rule: &HttpRoute) -> Option<RetryPolicy> {
    let Some(retry) = &rule.retries else {
        return Some(default_retries());
    };
    let attempts = retry.attempts.unwrap_or(0);
    if attempts <= 0 {
        return None;
    }
    let retry_on = match retry.retry_on.as_deref().map(str::trim) {
        Some(text) if !text.is_empty() => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        _ => default_retries().retry_on,
    };
    Some(RetryPolicy {
        attempts: attempts as u32,
        per_try_timeout: retry.per_try_timeout.as_ref().map(|d| d.value()),
        retry_on,
        backoff: retry
            .backoff
            .as_ref()
            .map(|d| d.value())
            .filter(|d| !d.is_zero()),
    })
}

fn string_match(m: &ApiStringMatch) -> StringMatch {
    match m {
        ApiStringMatch::Exact(s) => StringMatch::Exact(s.clone()),
        ApiStringMatch::Prefix(s) => StringMatch::Prefix(s.clone()),
        ApiStringMatch::Regex(s) => StringMatch::Regex(s.clone()),
    }
}

fn header_value(m: &ApiHeaderMatch) -> StringMatch {
    match m {
        ApiHeaderMatch::Present => StringMatch::Present,
        ApiHeaderMatch::Value(v) => string_match(v),
    }
}

fn header_matches(map: &std::collections::BTreeMap<String, ApiHeaderMatch>) -> Vec<HeaderMatch> {
    map.iter()
        .map(|(k, v)| HeaderMatch {
            name: k.to_ascii_lowercase(),
            value: header_value(v),
        })
        .collect()
}

fn not_implemented(findings: &mut Findings, r: &Resource, field: &str, message: &str) {
    findings.report(
        Severity::Warning,
        Code::NotImplemented,
        r,
        Some(field),
        message,
    );
}

/// Standard base64 (padding optional), as protobuf JSON writes `bytes`.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}
