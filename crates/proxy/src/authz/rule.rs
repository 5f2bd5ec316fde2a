//! One compiled rule of an AuthorizationPolicy: its sources (any), operations (any) and
//! conditions (all), and the words for what it missed.

use std::net::IpAddr;

use http::HeaderName;
use skiff_model::config::{AuthzCondition, AuthzOperation, AuthzRule, AuthzSource};

use super::Attrs;
use super::matcher::{IpBlock, StrMatch};
use crate::Error;

/// Values a field must match (any of `yes`, when given) and must not (none of `no`).
#[derive(Debug)]
struct Field<T> {
    yes: Vec<T>,
    no: Vec<T>,
}

impl<T> Field<T> {
    fn new(yes: Vec<T>, no: Vec<T>) -> Self {
        Field { yes, no }
    }

    fn is_empty(&self) -> bool {
        self.yes.is_empty() && self.no.is_empty()
    }

    /// `value` is the request's attribute (`None` when it has none): with `yes` it must
    /// be there and match one; it must match none of `no` (an absent value matches none).
    fn check<V: ?Sized>(&self, value: Option<&V>, m: impl Fn(&T, &V) -> bool) -> bool {
        if !self.yes.is_empty() && !value.is_some_and(|v| self.yes.iter().any(|y| m(y, v))) {
            return false;
        }
        !value.is_some_and(|v| self.no.iter().any(|n| m(n, v)))
    }
}

fn strs(v: &[String], f: fn(&str) -> StrMatch) -> Vec<StrMatch> {
    v.iter().map(|s| f(s)).collect()
}

fn str_field(yes: &[String], no: &[String], f: fn(&str) -> StrMatch) -> Field<StrMatch> {
    Field::new(strs(yes, f), strs(no, f))
}

fn ip_field(
    yes: &[String],
    no: &[String],
    place: &dyn Fn() -> String,
) -> Result<Field<IpBlock>, Error> {
    let parse = |v: &[String]| {
        v.iter()
            .map(|s| IpBlock::parse(s).map_err(|e| Error::config(place(), e)))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Field::new(parse(yes)?, parse(no)?))
}

#[derive(Debug)]
struct SourceRt {
    principals: Field<StrMatch>,
    request_principals: Field<StrMatch>,
    namespaces: Field<StrMatch>,
    service_accounts: Field<StrMatch>,
    trust_domains: Field<StrMatch>,
    ip_blocks: Field<IpBlock>,
    remote_ip_blocks: Field<IpBlock>,
}

#[derive(Debug)]
struct OperationRt {
    hosts: Field<StrMatch>,
    ports: Field<u16>,
    methods: Field<StrMatch>,
    paths: Field<StrMatch>,
}

/// The attribute a `when` condition reads.
#[derive(Debug)]
enum Key {
    Header(HeaderName),
    SourceIp,
    RemoteIp,
    SourceNamespace,
    SourcePrincipal,
    SourceServiceAccount,
    SourceTrustDomain,
    AuthPrincipal,
    AuthAudiences,
    AuthPresenter,
    AuthClaim(Vec<String>),
    DestinationIp,
    DestinationPort,
    Sni,
    /// A key skiff does not evaluate (`experimental.envoy.filters.*`): fails closed.
    Unsupported,
}

impl Key {
    fn needs_http(&self) -> bool {
        matches!(
            self,
            Key::Header(_)
                | Key::AuthPrincipal
                | Key::AuthAudiences
                | Key::AuthPresenter
                | Key::AuthClaim(_)
        )
    }
}

#[derive(Debug)]
enum Values {
    Str(Field<StrMatch>),
    Ip(Field<IpBlock>),
    Port(Field<u16>),
}

#[derive(Debug)]
struct ConditionRt {
    key: Key,
    raw_key: Box<str>,
    values: Values,
}

/// One rule, compiled for HTTP requests or for TCP connections.
#[derive(Debug)]
pub(super) struct RuleRt {
    /// Its index in the policy, for the words of a denial.
    pub(super) index: usize,
    from: Vec<SourceRt>,
    to: Vec<OperationRt>,
    when: Vec<ConditionRt>,
    /// An ALLOW rule that needs HTTP attributes, compiled for TCP: it never matches.
    needs_http: bool,
    /// A DENY or AUDIT rule: an unsupported condition counts as matching.
    deny_like: bool,
}

/// Why a rule did not match.
pub(super) enum Why {
    /// It needs HTTP attributes and this is a TCP connection.
    Http,
    /// The first field that did not match, in words.
    Field(String),
}

impl RuleRt {
    /// Compiles `r`. For TCP (`tcp`), a DENY or AUDIT rule (`deny_like`) drops its
    /// HTTP-only attributes; an ALLOW rule that has any never matches.
    pub(super) fn compile(
        index: usize,
        r: &AuthzRule,
        deny_like: bool,
        tcp: bool,
        warnings: &mut Vec<String>,
        place: &dyn Fn() -> String,
    ) -> Result<RuleRt, Error> {
        let mut from = Vec::with_capacity(r.from.len());
        for s in &r.from {
            from.push(source(s, place)?);
        }
        let mut to = Vec::with_capacity(r.to.len());
        for o in &r.to {
            to.push(operation(o));
        }
        let mut when = Vec::with_capacity(r.when.len());
        for c in &r.when {
            let c = condition(c, place)?;
            if matches!(c.key, Key::Unsupported) && !tcp {
                warnings.push(format!(
                    "{}: condition {:?} is not evaluated by skiff; the rule {}",
                    place(),
                    c.raw_key,
                    if deny_like {
                        "treats it as matching (it denies more)"
                    } else {
                        "never matches (it allows nothing)"
                    }
                ));
            }
            when.push(c);
        }
        let mut rule = RuleRt {
            index,
            from,
            to,
            when,
            needs_http: false,
            deny_like,
        };
        if tcp {
            let http_only = rule.from.iter().any(|s| !s.request_principals.is_empty())
                || rule
                    .to
                    .iter()
                    .any(|o| !o.hosts.is_empty() || !o.methods.is_empty() || !o.paths.is_empty())
                || rule.when.iter().any(|c| c.key.needs_http());
            if http_only && !deny_like {
                rule.needs_http = true;
            } else if http_only {
                for s in &mut rule.from {
                    s.request_principals = Field::new(vec![], vec![]);
                }
                for o in &mut rule.to {
                    o.hosts = Field::new(vec![], vec![]);
                    o.methods = Field::new(vec![], vec![]);
                    o.paths = Field::new(vec![], vec![]);
                }
                rule.when.retain(|c| !c.key.needs_http());
            }
        }
        Ok(rule)
    }

    pub(super) fn matches(&self, a: &Attrs<'_>) -> bool {
        self.why_not(a).is_none()
    }

    /// `None` when the rule matches; else what it missed first.
    pub(super) fn why_not(&self, a: &Attrs<'_>) -> Option<Why> {
        if self.needs_http {
            return Some(Why::Http);
        }
        if !self.from.is_empty() {
            let misses: Vec<String> = self.from.iter().filter_map(|s| s.why_not(a)).collect();
            if misses.len() == self.from.len() {
                return Some(Why::Field(misses.into_iter().next().unwrap_or_default()));
            }
        }
        if !self.to.is_empty() {
            let misses: Vec<String> = self.to.iter().filter_map(|o| o.why_not(a)).collect();
            if misses.len() == self.to.len() {
                return Some(Why::Field(misses.into_iter().next().unwrap_or_default()));
            }
        }
        self.when
            .iter()
            .find_map(|c| c.why_not(a, self.deny_like))
            .map(Why::Field)
    }
}

fn source(s: &AuthzSource, place: &dyn Fn() -> String) -> Result<SourceRt, Error> {
    Ok(SourceRt {
        principals: str_field(&s.principals, &s.not_principals, StrMatch::new),
        request_principals: str_field(
            &s.request_principals,
            &s.not_request_principals,
            StrMatch::new,
        ),
        namespaces: str_field(&s.namespaces, &s.not_namespaces, StrMatch::new),
        service_accounts: str_field(&s.service_accounts, &s.not_service_accounts, |v| {
            StrMatch::Exact(v.into())
        }),
        trust_domains: str_field(&s.trust_domains, &s.not_trust_domains, StrMatch::new),
        ip_blocks: ip_field(&s.ip_blocks, &s.not_ip_blocks, place)?,
        remote_ip_blocks: ip_field(&s.remote_ip_blocks, &s.not_remote_ip_blocks, place)?,
    })
}

fn operation(o: &AuthzOperation) -> OperationRt {
    OperationRt {
        hosts: str_field(&o.hosts, &o.not_hosts, StrMatch::lowercase),
        ports: Field::new(o.ports.clone(), o.not_ports.clone()),
        methods: str_field(&o.methods, &o.not_methods, |v| StrMatch::Exact(v.into())),
        paths: str_field(&o.paths, &o.not_paths, StrMatch::path),
    }
}

fn condition(c: &AuthzCondition, place: &dyn Fn() -> String) -> Result<ConditionRt, Error> {
    let k = c.key.as_str();
    let key = if let Some(name) = k
        .strip_prefix("request.headers[")
        .and_then(|r| r.strip_suffix(']'))
    {
        Key::Header(
            HeaderName::try_from(name.to_ascii_lowercase()).map_err(|_| {
                Error::config(place(), format!("{k:?}: {name:?} is not a header name"))
            })?,
        )
    } else if let Some(path) = k.strip_prefix("request.auth.claims") {
        let parts: Vec<String> = path
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split("][")
            .map(str::to_owned)
            .collect();
        Key::AuthClaim(parts)
    } else {
        match k {
            "source.ip" => Key::SourceIp,
            "remote.ip" => Key::RemoteIp,
            "source.namespace" => Key::SourceNamespace,
            "source.principal" => Key::SourcePrincipal,
            "source.serviceAccount" => Key::SourceServiceAccount,
            "source.trustDomain" => Key::SourceTrustDomain,
            "request.auth.principal" => Key::AuthPrincipal,
            "request.auth.audiences" => Key::AuthAudiences,
            "request.auth.presenter" => Key::AuthPresenter,
            "destination.ip" => Key::DestinationIp,
            "destination.port" => Key::DestinationPort,
            "connection.sni" => Key::Sni,
            _ => Key::Unsupported,
        }
    };
    let values = match key {
        Key::SourceIp | Key::RemoteIp | Key::DestinationIp => {
            Values::Ip(ip_field(&c.values, &c.not_values, place)?)
        }
        Key::DestinationPort => {
            let parse = |v: &[String]| {
                v.iter()
                    .map(|p| {
                        p.parse::<u16>().map_err(|_| {
                            Error::config(place(), format!("destination.port {p:?} is not a port"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            Values::Port(Field::new(parse(&c.values)?, parse(&c.not_values)?))
        }
        Key::SourceServiceAccount => Values::Str(str_field(&c.values, &c.not_values, |v| {
            StrMatch::Exact(v.into())
        })),
        _ => Values::Str(str_field(&c.values, &c.not_values, StrMatch::new)),
    };
    Ok(ConditionRt {
        key,
        raw_key: k.into(),
        values,
    })
}

/// `what value is not one of a, b` / `there is no what`.
fn miss<T: std::fmt::Display>(what: &str, value: Option<&str>, f: &Field<T>) -> String {
    let list = |v: &[T]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match value {
        None => format!("there is no {what} (one of {} is required)", list(&f.yes)),
        Some(v) if !f.yes.is_empty() && f.no.is_empty() => {
            format!("{what} {v} is not one of {}", list(&f.yes))
        }
        Some(v) => format!("{what} {v} is excluded"),
    }
}

impl SourceRt {
    fn why_not(&self, a: &Attrs<'_>) -> Option<String> {
        // Only what a field needs is computed, and text only for the words of a miss:
        // this runs for every request to a workload with policies.
        let str_m = |m: &StrMatch, v: &str| m.matches(v);
        let ip_m = |b: &IpBlock, ip: &IpAddr| b.contains(*ip);
        let principal = a.principal();
        if !self.principals.check(principal, str_m) {
            return Some(miss("principal", principal, &self.principals));
        }
        if !self.request_principals.is_empty() {
            let jwt = a.jwt.map(|j| j.principal());
            if !self.request_principals.check(jwt.as_deref(), str_m) {
                return Some(miss(
                    "request principal",
                    jwt.as_deref(),
                    &self.request_principals,
                ));
            }
        }
        let parts = a.peer_parts();
        let ns = parts.map(|p| p.1);
        if !self.namespaces.check(ns, str_m) {
            return Some(miss("namespace", ns, &self.namespaces));
        }
        if !self.service_accounts.is_empty() {
            let sa = parts.map(|(_, ns, sa)| format!("{ns}/{sa}"));
            if !self.service_accounts.check(sa.as_deref(), str_m) {
                return Some(miss(
                    "service account",
                    sa.as_deref(),
                    &self.service_accounts,
                ));
            }
        }
        let td = parts.map(|p| p.0);
        if !self.trust_domains.check(td, str_m) {
            return Some(miss("trust domain", td, &self.trust_domains));
        }
        if !self.ip_blocks.check(Some(&a.peer_ip), ip_m) {
            let ip = a.peer_ip.to_string();
            return Some(miss("source address", Some(&ip), &self.ip_blocks));
        }
        if !self.remote_ip_blocks.check(Some(&a.remote_ip), ip_m) {
            let ip = a.remote_ip.to_string();
            return Some(miss("remote address", Some(&ip), &self.remote_ip_blocks));
        }
        None
    }
}

impl OperationRt {
    fn why_not(&self, a: &Attrs<'_>) -> Option<String> {
        let str_m = |m: &StrMatch, v: &str| m.matches(v);
        if !self.ports.check(Some(&a.dest_port), |p, v| p == v) {
            let port = a.dest_port.to_string();
            return Some(miss("port", Some(&port), &self.ports));
        }
        let http = a.http.as_ref();
        let host = http.map(|h| h.host.to_ascii_lowercase());
        let host_ok = |h: &str| {
            // The authority matches with or without its port.
            self.hosts.check(Some(h), str_m)
                || self.hosts.check(Some(crate::config::strip_port(h)), str_m)
        };
        if !self.hosts.is_empty() && !host.as_deref().is_some_and(host_ok) {
            return Some(miss("host", host.as_deref(), &self.hosts));
        }
        let method = http.map(|h| h.method);
        if !self.methods.check(method, str_m) {
            return Some(miss("method", method, &self.methods));
        }
        let path = http.map(|h| h.path);
        if !self.paths.check(path, str_m) {
            return Some(miss("path", path, &self.paths));
        }
        None
    }
}

impl ConditionRt {
    fn why_not(&self, a: &Attrs<'_>, deny_like: bool) -> Option<String> {
        let key = &*self.raw_key;
        let ok = match &self.values {
            Values::Ip(f) => {
                let ip = match self.key {
                    Key::SourceIp => a.peer_ip,
                    Key::RemoteIp => a.remote_ip,
                    _ => a.dest_ip,
                };
                if f.check(Some(&ip), |b, ip| b.contains(*ip)) {
                    return None;
                }
                return Some(miss(key, Some(&ip.to_string()), f));
            }
            Values::Port(f) => {
                if f.check(Some(&a.dest_port), |want, port| want == port) {
                    return None;
                }
                return Some(miss(key, Some(&a.dest_port.to_string()), f));
            }
            Values::Str(f) => f,
        };
        let m = |m: &StrMatch, v: &str| m.matches(v);
        let values: Vec<String> = match &self.key {
            Key::Unsupported => {
                return (!deny_like).then(|| format!("condition {key} is not evaluated by skiff"));
            }
            Key::Header(name) => a
                .http
                .as_ref()
                .map(|h| {
                    h.headers
                        .get_all(name)
                        .iter()
                        .filter_map(|v| v.to_str().ok().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            Key::SourceNamespace => a.peer_parts().map(|p| p.1.to_owned()).into_iter().collect(),
            Key::SourcePrincipal => a.principal().map(str::to_owned).into_iter().collect(),
            Key::SourceServiceAccount => a
                .peer_parts()
                .map(|(_, ns, sa)| format!("{ns}/{sa}"))
                .into_iter()
                .collect(),
            Key::SourceTrustDomain => a.peer_parts().map(|p| p.0.to_owned()).into_iter().collect(),
            Key::AuthPrincipal => a.jwt.map(|j| j.principal()).into_iter().collect(),
            Key::AuthAudiences => a
                .jwt
                .map(|j| j.audiences().into_iter().map(str::to_owned).collect())
                .unwrap_or_default(),
            Key::AuthPresenter => a
                .jwt
                .and_then(|j| j.presenter().map(str::to_owned))
                .into_iter()
                .collect(),
            Key::AuthClaim(path) => {
                let path: Vec<&str> = path.iter().map(String::as_str).collect();
                a.jwt
                    .map(|j| {
                        j.claim_values(&path)
                            .into_iter()
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default()
            }
            Key::Sni => a.sni.map(str::to_owned).into_iter().collect(),
            Key::SourceIp | Key::RemoteIp | Key::DestinationIp | Key::DestinationPort => {
                unreachable!("address keys have address values")
            }
        };
        // Any of the attribute's values may satisfy `values`; none may hit `notValues`.
        let yes = ok.yes.is_empty() || values.iter().any(|v| ok.yes.iter().any(|y| m(y, v)));
        let no = values.iter().any(|v| ok.no.iter().any(|n| m(n, v)));
        if yes && !no {
            return None;
        }
        Some(match values.first() {
            None => format!("there is no {key}"),
            Some(v) if !yes => miss(key, Some(v), ok),
            Some(v) => format!("{key} {v} is excluded"),
        })
    }
}
