//! From the hop that failed to the configuration object responsible: one rule per
//! response flag, each naming the object with file:line and the fix.

use std::fmt;

use serde::Serialize;

use super::Hop;
use super::provenance::{Place, Provenance, parse_cluster, short_host};

/// Why a request failed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Explanation {
    /// The proxy whose hop failed.
    pub(crate) proxy: String,
    /// `outbound`, `inbound` or `gateway`.
    pub(crate) direction: String,
    /// The status the proxy answered.
    pub(crate) status: u64,
    /// Envoy's response flags (`-`: none; the status came from elsewhere).
    pub(crate) flag: String,
    /// What the flag means, in Envoy's words.
    pub(crate) meaning: String,
    /// What went wrong, naming the objects.
    pub(crate) cause: String,
    /// The configuration object responsible, `Kind namespace/name`.
    pub(crate) object: Option<String>,
    /// Where it is written, `file:line`.
    pub(crate) location: Option<String>,
    /// What to change.
    pub(crate) fix: String,
    /// What the proxy said, as it said it.
    pub(crate) details: Option<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} {} at {} ({}): {}",
            self.status, self.flag, self.proxy, self.direction, self.meaning
        )?;
        writeln!(f, "  cause: {}", self.cause)?;
        if let Some(object) = &self.object {
            match &self.location {
                Some(at) => writeln!(f, "  responsible: {object} ({at})")?,
                None => writeln!(f, "  responsible: {object}")?,
            }
        }
        writeln!(f, "  fix: {}", self.fix)?;
        if let Some(d) = &self.details {
            writeln!(f, "  proxy said: {d}")?;
        }
        Ok(())
    }
}

/// Envoy's meaning of a response flag.
fn meaning(flag: &str) -> &'static str {
    match flag {
        "NR" => "no route configured for the request",
        "NC" => "no cluster: the route names an upstream cluster that does not exist",
        "UH" => "no healthy upstream host in the cluster",
        "UF" => "upstream connection failure",
        "UC" => "upstream connection terminated",
        "UT" => "upstream request timeout",
        "UO" => "upstream overflow (circuit breaking)",
        "URX" => "the upstream retry limit (or the route's timeout over all tries) was reached",
        "FI" => "the request was aborted by a fault injection",
        "DI" => "the request was delayed by a fault injection",
        "DC" => "the downstream connection was terminated",
        "DPE" => "the downstream request had an HTTP protocol error",
        _ => "no response flag: the proxy passed on an answer or refused by policy",
    }
}

/// Explains the failing hop: the last of `hops` (see [`super::select`]).
pub(crate) fn explain(hops: &[Hop], p: &Provenance) -> Explanation {
    let hop = hops
        .last()
        .unwrap_or_else(|| unreachable!("select returns at least one hop"));
    let flag = hop.field("flag").unwrap_or("-").to_owned();
    let mut e = Explanation {
        proxy: hop.proxy.clone(),
        direction: hop.field("direction").unwrap_or("-").to_owned(),
        status: hop.failure["status"].as_u64().unwrap_or(0),
        meaning: meaning(flag.split(',').next().unwrap_or("-")).to_owned(),
        flag: flag.clone(),
        cause: String::new(),
        object: None,
        location: None,
        fix: String::new(),
        details: hop.field("details").map(str::to_owned),
    };
    let flags: Vec<&str> = flag.split(',').collect();
    let primary = flags[0];
    let (cause, place, fix) = match primary {
        "NR" => no_route(hop, p),
        "NC" => no_cluster(hop, p),
        "UH" => no_endpoints(hop, p),
        "UF" | "UC" => connect_failure(hop, p, primary),
        "UO" => overflow(hop, p),
        "UT" => route_field(
            hop,
            p,
            "timeout",
            "the route's timeout ran out before the upstream answered",
            "raise the route's `timeout` (or make the upstream faster)",
        ),
        "URX" => route_field(
            hop,
            p,
            "retries",
            "every try failed and the retry policy's attempts were used up",
            "fix the upstream's failures (see its access log), or change `retries`",
        ),
        "FI" => route_field(
            hop,
            p,
            "fault",
            "the route's fault injection aborted the request",
            "remove the `fault` block (fault injection is for tests)",
        ),
        _ if e.status == 403
            && e.details
                .as_deref()
                .is_some_and(|d| d.starts_with("rbac_access_denied")) =>
        {
            denied(hop, p)
        }
        _ => (
            format!(
                "{} answered {} and the mesh passed it on",
                hop.field("upstreamHost").unwrap_or("the upstream"),
                e.status
            ),
            None,
            "look at the app's own log: the mesh did not fail this request".to_owned(),
        ),
    };
    if primary == "-"
        && e.status == 403
        && e.details
            .as_deref()
            .is_some_and(|d| d.starts_with("rbac_access_denied"))
    {
        "denied by an AuthorizationPolicy (RBAC: access denied)".clone_into(&mut e.meaning);
    }
    e.cause = cause;
    let mut fix = fix;
    if flags.len() > 1 && flags.contains(&"URX") {
        let policy = match written_rule_field(hop, p, "retries") {
            Some(place) => place.to_string(),
            None => "Istio's default retry policy, 2 retries on connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes: the rule sets no `retries`".to_owned(),
        };
        e.cause.push_str(&format!(
            "; URX: {} tries in all, as the retry policy allows, all failed that way ({policy})",
            hop.failure["attempts"],
        ));
        fix.push_str("; retrying does not help while this lasts");
    }
    if let Some(place) = place {
        e.object = Some(place.object.clone());
        e.location = place.at.clone();
        if place.field.is_some() && e.location.is_none() {
            e.location = place.field.clone();
        }
    }
    e.fix = fix;
    e
}

type Why = (String, Option<Place>, String);

fn proxy_namespace(hop: &Hop) -> &str {
    hop.proxy.rsplit_once('.').map_or("default", |(_, ns)| ns)
}

fn authority_host(hop: &Hop) -> String {
    let a = hop.field("authority").unwrap_or("");
    match a.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h.to_owned(),
        _ => a.to_owned(),
    }
}

fn no_route(hop: &Hop, p: &Provenance) -> Why {
    let host = authority_host(hop);
    let path = hop.field("path").unwrap_or("/");
    let Some(service) = p.lookup_host(&host, proxy_namespace(hop)) else {
        return (
            format!(
                "no Service or ServiceEntry has host {host:?} (seen from namespace {})",
                proxy_namespace(hop)
            ),
            None,
            format!("check the host name, or declare {host:?} with a Service or ServiceEntry"),
        );
    };
    let fqdn = service.hostname.clone();
    match p.virtual_services_for(&fqdn).first() {
        Some(vs) => {
            let place = p.place(&vs.resource, Some("spec.http"));
            (
                format!("no rule of {} matches path {path:?} of {}", place.object, short_host(&fqdn)),
                Some(place),
                "add a rule for this path, or a last rule without `match` that takes every other request".to_owned(),
            )
        }
        None => {
            let place = p.place(&service.resource, Some("spec.ports"));
            (
                format!("{} has no route for this port or path", short_host(&fqdn)),
                Some(place),
                "check the port the client calls against the Service's ports".to_owned(),
            )
        }
    }
}

fn rule_place(hop: &Hop, p: &Provenance, field: Option<&str>) -> Option<Place> {
    let (vs, rule) = p.route_rule(hop.field("route")?)?;
    let field = match field {
        Some(f) => format!("{}.{f}", rule.field),
        None => rule.field.clone(),
    };
    Some(p.place(&vs.resource, Some(&field)))
}

/// The rule's `field`, when the rule writes it.
fn written_rule_field(hop: &Hop, p: &Provenance, field: &str) -> Option<Place> {
    let (vs, rule) = p.route_rule(hop.field("route")?)?;
    let path = format!("{}.{field}", rule.field);
    p.has_field(&vs.resource, &path)
        .then(|| p.place(&vs.resource, Some(&path)))
}

fn no_cluster(hop: &Hop, p: &Provenance) -> Why {
    let cluster = hop.field("cluster").unwrap_or("-");
    let Some((port, subset, fqdn)) = parse_cluster(cluster) else {
        return (
            format!("cluster {cluster} does not exist"),
            rule_place(hop, p, Some("route")),
            "fix the route's destination".to_owned(),
        );
    };
    let rule = rule_place(hop, p, Some("route"));
    let by = rule
        .as_ref()
        .map_or_else(|| "the route".to_owned(), |r| r.object.clone());
    match subset {
        Some(subset) => {
            let rules = p.destination_rules(fqdn);
            let cause = match rules.first() {
                Some(dr) => format!(
                    "{by} sends to subset {subset} of {}, which {} does not define",
                    short_host(fqdn),
                    dr.resource
                ),
                None => format!(
                    "{by} sends to subset {subset} of {}, and no DestinationRule for that host exists",
                    short_host(fqdn)
                ),
            };
            let fix = match rules.first() {
                Some(dr) => format!(
                    "add subset {subset} to {} (or route to a subset it defines)",
                    dr.resource
                ),
                None => format!(
                    "add a DestinationRule for host {} that defines subset {subset}",
                    short_host(fqdn)
                ),
            };
            (cause, rule, fix)
        }
        None => (
            format!(
                "{by} sends to {}:{port}, which no Service or ServiceEntry declares",
                fqdn
            ),
            rule,
            "fix the destination host or port, or declare the service".to_owned(),
        ),
    }
}

fn labels(l: &std::collections::BTreeMap<String, String>) -> String {
    let parts: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(",")
}

fn no_endpoints(hop: &Hop, p: &Provenance) -> Why {
    let cluster = hop.field("cluster").unwrap_or("-");
    let Some((_, subset, fqdn)) = parse_cluster(cluster) else {
        return (
            format!("cluster {cluster} has no endpoint to send to"),
            None,
            "start a workload for it".to_owned(),
        );
    };
    if let Some(subset) = subset
        && let (_, Some((dr, s))) = p.subset(fqdn, subset)
    {
        let place = p.place(&dr.resource, Some(&format!("spec.subsets[{}]", s.index)));
        let at = place
            .at
            .as_deref()
            .map_or(String::new(), |a| format!(", {a}"));
        return (
            format!(
                "subset {subset} of {} ({}{at}) selects no endpoints: no WorkloadEntry has labels {}",
                short_host(fqdn),
                dr.resource,
                labels(&s.labels)
            ),
            Some(place),
            format!(
                "give a workload of {} the labels {} (or change the subset's labels to ones its workloads have)",
                short_host(fqdn),
                labels(&s.labels)
            ),
        );
    }
    match p.service(fqdn) {
        Some(svc) => {
            let place = p.place(&svc.resource, Some("spec.selector"));
            (
                format!("{} ({}) has no endpoints: no workload matches it, or every one is ejected by outlier detection (see `skiff proxy-config endpoints {}`)", short_host(fqdn), svc.resource, hop.proxy),
                Some(place),
                "start a workload whose labels match the Service's selector (a WorkloadEntry with an address)".to_owned(),
            )
        }
        None => (
            format!("{fqdn} has no endpoints"),
            None,
            "declare a workload for it".to_owned(),
        ),
    }
}

fn connect_failure(hop: &Hop, p: &Provenance, flag: &str) -> Why {
    let verb = if flag == "UF" {
        "could not connect to"
    } else {
        "lost the connection to"
    };
    let Some(host) = hop.field("upstreamHost") else {
        // The proxy did not name the endpoint: the service's workloads are the ones.
        let service = hop
            .field("cluster")
            .and_then(parse_cluster)
            .and_then(|(_, _, fqdn)| p.service(fqdn));
        let Some(service) = service else {
            return (
                format!("the proxy {verb} the upstream"),
                None,
                "start the app, or fix its address and port".to_owned(),
            );
        };
        let workloads = p.workloads_of(service);
        let names: Vec<String> = workloads
            .iter()
            .map(|w| {
                format!(
                    "workload {}.{} at {}",
                    w.name,
                    w.namespace,
                    w.address
                        .map_or_else(|| "no address".to_owned(), |a| a.to_string())
                )
            })
            .collect();
        return (
            format!("the proxy {verb} the endpoints of {} ({}): nothing listens there, or it refused", short_host(&service.hostname), names.join(", ")),
            workloads.first().map(|w| p.place(&w.resource, Some("spec.address"))),
            "start the app (and its sidecar) at that address, or fix the address / the Service's targetPort".to_owned(),
        );
    };
    match p.workload_at(host) {
        Some(w) => {
            let place = p.place(&w.resource, Some("spec.address"));
            (
                format!("the proxy {verb} {host}, the address of workload {}.{}: nothing listens there, or it refused", w.name, w.namespace),
                Some(place),
                "start the app (and its sidecar) at that address, or fix the address / the Service's targetPort".to_owned(),
            )
        }
        None => (
            format!("the proxy {verb} {host}: nothing listens there, or it refused"),
            None,
            "start the app at that address, or fix its address and port".to_owned(),
        ),
    }
}

fn overflow(hop: &Hop, p: &Provenance) -> Why {
    let cluster = hop.field("cluster").unwrap_or("-");
    let dr = parse_cluster(cluster)
        .and_then(|(_, _, fqdn)| p.destination_rules(fqdn).into_iter().next());
    let limit = hop.field("details").unwrap_or("a connection-pool limit");
    match dr {
        Some(dr) => {
            let place = p.place(&dr.resource, Some("spec.trafficPolicy.connectionPool"));
            (
                format!("{limit}: the circuit breaker of {} refused the request", dr.resource),
                Some(place),
                "raise the connectionPool limits (http1MaxPendingRequests, http2MaxRequests, maxConnections, maxRetries) or send less".to_owned(),
            )
        }
        None => (
            format!("{limit}: the cluster {cluster} is at its limit"),
            None,
            "raise the connectionPool limits".to_owned(),
        ),
    }
}

fn route_field(hop: &Hop, p: &Provenance, field: &str, cause: &str, fix: &str) -> Why {
    let place = rule_place(hop, p, Some(field));
    let cause = match &place {
        Some(pl) => format!(
            "{cause} ({}, rule {})",
            pl.object,
            hop.field("route").unwrap_or("-")
        ),
        None => format!("{cause} (route {})", hop.field("route").unwrap_or("-")),
    };
    (cause, place, fix.to_owned())
}

fn denied(hop: &Hop, p: &Provenance) -> Why {
    let details = hop.field("details").unwrap_or("");
    let policy = details
        .strip_prefix("rbac_access_denied_matched_policy[")
        .and_then(|rest| rest.split_once(']'))
        .map(|(name, _)| name);
    let reason = details.split_once("]: ").map_or(details, |(_, r)| r);
    match policy.filter(|n| *n != "none") {
        Some(name) => (
            reason.to_owned(),
            p.authorization_policy(name),
            format!(
                "change the DENY rule of AuthorizationPolicy {name}, or call from an identity it does not match"
            ),
        ),
        None => {
            let policies = p.authorization_policies_in(proxy_namespace(hop));
            let names: Vec<String> = policies.iter().map(|pl| pl.to_string()).collect();
            (
                format!("no ALLOW policy matched: {reason}{}", if names.is_empty() { String::new() } else { format!(" (policies: {})", names.join("; ")) }),
                policies.into_iter().next(),
                "add an ALLOW rule for this caller (from.source.principals) and operation, in a policy that selects the workload".to_owned(),
            )
        }
    }
}
