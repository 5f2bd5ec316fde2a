//! Fields skiff reads but does not act on yet.
//!
//! Every field set in a resource that matches a row of [`UNENFORCED`] gets a warning
//! naming what is ignored, so nothing is silently accepted. As features land, their rows
//! are removed. Patterns are field paths where `[*]` stands for any list index and `*`
//! for any field name; a pattern matches the field itself (not its children, which are
//! covered by the parent's warning). A row whose pattern is exactly `spec` applies when
//! the spec is empty (`spec: {}`), which for some kinds has a meaning of its own.

use crate::diagnostic::{Diagnostic, Severity};
use crate::resource::{Kind, Resource};

/// One row: kind, field path pattern, and what the user should know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unenforced {
    /// The kind the row applies to.
    pub kind: Kind,
    /// Field path pattern, e.g. `spec.http[*].fault`.
    pub pattern: &'static str,
    /// What skiff does not do.
    pub reason: &'static str,
}

macro_rules! rows {
    ($($kind:ident { $($pattern:literal => $reason:literal,)* })*) => {
        &[$($(Unenforced { kind: Kind::$kind, pattern: $pattern, reason: $reason },)*)*]
    };
}

/// The table of fields skiff parses but does not enforce yet.
pub const UNENFORCED: &[Unenforced] = rows! {
    VirtualService {
        "spec.tcp[*].match[*].sourceSubnet" => "matching on the source subnet is not implemented: this condition is ignored",
        "spec.http[*].match[*].statPrefix" => "per-match stat prefixes are not implemented",
        "spec.http[*].retries.retryRemoteLocalities" => "locality-aware retries are not implemented: a retry may pick an endpoint in any locality",
        "spec.http[*].retries.retryIgnorePreviousHosts" => "retryIgnorePreviousHosts is not implemented: a retry may go to the same endpoint",
    }
    DestinationRule {
        "spec.trafficPolicy.tls.caCrl" => "certificate revocation lists are not checked",
        "spec.trafficPolicy.tunnel" => "tunnelling is not implemented",
        "spec.trafficPolicy.proxyProtocol" => "the PROXY protocol is not implemented",
        "spec.trafficPolicy.retryBudget" => "retry budgets are not implemented",
        "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes" => "extra cookie attributes: a generated cookie carries only its name, value, Max-Age, Path and HttpOnly",
        "spec.trafficPolicy.connectionPool.http.http2KeepAlive" => "HTTP/2 keepalive pings are not sent: idle upstream connections are not probed",
        "spec.subsets[*].trafficPolicy.tls.caCrl" => "certificate revocation lists are not checked",
        "spec.subsets[*].trafficPolicy.tunnel" => "tunnelling is not implemented",
        "spec.subsets[*].trafficPolicy.proxyProtocol" => "the PROXY protocol is not implemented",
        "spec.subsets[*].trafficPolicy.retryBudget" => "retry budgets are not implemented",
        "spec.subsets[*].trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes" => "extra cookie attributes: a generated cookie carries only its name, value, Max-Age, Path and HttpOnly",
        "spec.subsets[*].trafficPolicy.connectionPool.http.http2KeepAlive" => "HTTP/2 keepalive pings are not sent: idle upstream connections are not probed",
        "spec.trafficPolicy.portLevelSettings[*].tls.caCrl" => "certificate revocation lists are not checked",
        "spec.trafficPolicy.portLevelSettings[*].loadBalancer.consistentHash.httpCookie.attributes" => "extra cookie attributes: a generated cookie carries only its name, value, Max-Age, Path and HttpOnly",
        "spec.trafficPolicy.portLevelSettings[*].connectionPool.http.http2KeepAlive" => "HTTP/2 keepalive pings are not sent: idle upstream connections are not probed",
        "spec.subsets[*].trafficPolicy.portLevelSettings[*].tls.caCrl" => "certificate revocation lists are not checked",
        "spec.subsets[*].trafficPolicy.portLevelSettings[*].loadBalancer.consistentHash.httpCookie.attributes" => "extra cookie attributes: a generated cookie carries only its name, value, Max-Age, Path and HttpOnly",
    }
    Gateway {
        "spec.servers[*].tls.caCrl" => "certificate revocation lists are not checked",
        "spec.servers[*].tls.subjectAltNames" => "client subjectAltNames are not checked: any certificate of the CA is accepted",
        "spec.servers[*].tls.verifyCertificateSpki" => "client certificate SPKI pins are not checked",
        "spec.servers[*].tls.verifyCertificateHash" => "client certificate hash pins are not checked",
        "spec.servers[*].tls.credentialNames" => "several credentials per server are not implemented: use credentialName",
        "spec.servers[*].tls.tlsCertificates" => "several certificates per server are not implemented: use serverCertificate",
        "spec.servers[*].tls.caCertCredentialName" => "caCertCredentialName is not implemented: put ca.crt in the credentialName secret (or <name>-cacert)",
        "spec.servers[*].bind" => "binding a gateway server to an address is not implemented",
        "spec.servers[*].defaultEndpoint" => "defaultEndpoint is not implemented",
    }
    ServiceEntry {
        "spec.addresses" => "ServiceEntry addresses: the hosts are matched by name only",
        "spec.location" => "location (MESH_EXTERNAL/MESH_INTERNAL): it changes nothing yet",
        "spec.subjectAltNames" => "subjectAltNames: the endpoints' identities are not verified",
    }
    WorkloadGroup {
        "spec.*" => "WorkloadGroup: workloads do not register themselves from this template",
    }
    Sidecar {
        "spec.ingress" => "Sidecar ingress listeners are not implemented: inbound ports come from the Services",
        "spec.outboundTrafficPolicy.egressProxy" => "egressProxy is not implemented: ALLOW_ANY traffic goes to its own destination",
        "spec.inboundConnectionPool" => "inbound connection pool limits are not implemented",
    }
    Telemetry {
        "spec.metrics[*].reportingInterval" => "reportingInterval: skiff's metrics are scraped (Prometheus), not pushed",
        "spec.metrics[*].overrides[*].match.customMetric" => "custom metrics are not implemented: this override changes nothing",
    }
};

/// The warnings for fields of `resource` that skiff does not enforce yet, one per field
/// set.
pub fn warnings(resource: &Resource) -> Vec<Diagnostic> {
    let kind = resource.kind();
    let rows: Vec<&Unenforced> = UNENFORCED.iter().filter(|r| r.kind == kind).collect();
    if rows.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    // Split every written path once, then compare segment lists.
    let mut fields: Vec<(&String, Vec<String>)> = resource
        .origin
        .fields
        .map
        .keys()
        .map(|p| (p, segments(p)))
        .collect();
    fields.sort();
    for row in rows {
        if row.pattern == "spec" {
            if spec_is_empty(resource) {
                out.push(Diagnostic::for_key(
                    Severity::Warning,
                    resource,
                    "spec",
                    format!("parsed, not enforced yet: {}", row.reason),
                ));
            }
            continue;
        }
        let pattern = segments(row.pattern);
        for (path, segs) in &fields {
            if segments_match(&pattern, segs) {
                out.push(Diagnostic::for_key(
                    Severity::Warning,
                    resource,
                    (*path).clone(),
                    format!("parsed, not enforced yet: {}", row.reason),
                ));
            }
        }
    }
    out
}

fn spec_is_empty(resource: &Resource) -> bool {
    !resource
        .origin
        .fields
        .map
        .keys()
        .any(|p| p.starts_with("spec.") || p.starts_with("spec["))
}

/// Splits `spec.http[0]["a.b"].x` into `spec`, `http`, `[0]`, `a.b`, `x`.
fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
            continue;
        }
        if let Some(r) = rest.strip_prefix("[\"") {
            // a quoted key: up to the closing `"]`
            let end = r.find("\"]").unwrap_or(r.len());
            out.push(r[..end].replace("\\\"", "\""));
            rest = r.get(end + 2..).unwrap_or("");
            continue;
        }
        if rest.starts_with('[') {
            let end = rest.find(']').map_or(rest.len(), |i| i + 1);
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        out.push(rest[..end].to_owned());
        rest = &rest[end..];
    }
    out
}

/// Whether a field path matches a pattern (`[*]`: any index, `*`: any field name).
#[cfg(test)]
pub(crate) fn path_matches(pattern: &str, path: &str) -> bool {
    segments_match(&segments(pattern), &segments(path))
}

fn segments_match(p: &[String], s: &[String]) -> bool {
    p.len() == s.len()
        && p.iter().zip(s).all(|(p, s)| match p.as_str() {
            "[*]" => s.starts_with('['),
            "*" => !s.starts_with('['),
            _ => p == s,
        })
}

#[cfg(test)]
mod tests;
