//! Checks shared by many kinds: names, hosts, ports, durations, labels, regexes, and
//! the Kubernetes kinds.

use std::net::IpAddr;

use crate::kube::{DeploymentSpec, PodSpec, ServiceSpec};
use crate::resource::{Kind, Resource};
use crate::types::{Duration, Labels, StringMatch, WorkloadSelector};
use crate::validate::Report;

/// The `retryOn` conditions Istio accepts (besides HTTP status codes), from Envoy's
/// `x-envoy-retry-on` and `x-envoy-retry-grpc-on`.
pub const RETRY_ON_POLICIES: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// An enum value as Istio spells it (its serde name), e.g. `DNS_ROUND_ROBIN`.
pub(crate) fn istio_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::from("?"),
    }
}

/// Istio's duration rule: at least 1ms, whole milliseconds.
pub fn validate_duration(d: &Duration) -> Result<(), String> {
    let v = d.value();
    if v < std::time::Duration::from_millis(1) {
        return Err(format!(
            "duration {d} is too short: it must be at least 1ms"
        ));
    }
    if !v.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(format!(
            "duration {d}: only whole milliseconds are supported"
        ));
    }
    Ok(())
}

/// Istio's port rule: 1 to 65535.
pub fn validate_port(port: i64) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("port number {port} must be in the range 1..65535"))
    }
}

/// A DNS-1123 label: 1–63 of `[a-z0-9-]`, starting and ending alphanumeric. Istio
/// accepts upper case letters too.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Like [`is_dns1123_label`] but also `*`, `*foo` or `*-foo` (wildcard first labels).
fn is_wildcard_dns1123_label(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let rest = s
        .strip_prefix("*-")
        .or_else(|| s.strip_prefix('*'))
        .unwrap_or(s);
    s.len() <= 63 && is_dns1123_label(rest)
}

fn check_dns_preconditions(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty domain name not allowed".to_owned());
    }
    if name.len() > 255 {
        return Err(format!("domain name {name:?} too long (max 255)"));
    }
    Ok(())
}

fn dns1123_labels(domain: &str, whole: &str) -> Result<(), String> {
    let parts: Vec<&str> = domain.split('.').collect();
    let last = parts[parts.len() - 1];
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "domain name {whole:?} invalid (top level domain {last:?} cannot be all-numeric)"
        ));
    }
    for (i, label) in parts.iter().enumerate() {
        if i == parts.len() - 1 && label.is_empty() {
            return Ok(());
        }
        if !is_dns1123_label(label) {
            let hint = if label.contains('*') {
                "; a wildcard is only allowed as the first label, like *.example.com"
            } else {
                ""
            };
            return Err(format!(
                "domain name {whole:?} invalid (label {label:?} invalid{hint})"
            ));
        }
    }
    Ok(())
}

/// Istio's `ValidateWildcardDomain`: a host name whose first label may be a wildcard.
pub fn validate_host(host: &str) -> Result<(), String> {
    check_dns_preconditions(host)?;
    let (first, rest) = match host.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (host, None),
    };
    if !is_wildcard_dns1123_label(first) {
        return Err(format!(
            "domain name {host:?} invalid (label {first:?} invalid)"
        ));
    }
    match rest {
        Some(rest) => dns1123_labels(rest, host),
        None => Ok(()),
    }
}

/// Istio's `ValidateFQDN`: a host name without wildcards.
pub(crate) fn validate_fqdn(name: &str) -> Result<(), String> {
    check_dns_preconditions(name)?;
    dns1123_labels(name, name)
}

pub(crate) fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// An IP address or a CIDR block.
pub(crate) fn validate_ip_subnet(s: &str) -> Result<(), String> {
    match s.split_once('/') {
        Some((ip, bits)) => {
            let max = match ip.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => 32,
                Ok(IpAddr::V6(_)) => 128,
                Err(_) => return Err(format!("{s} is not a valid CIDR block")),
            };
            match bits.parse::<u8>() {
                Ok(b) if b <= max => Ok(()),
                _ => Err(format!("{s} is not a valid CIDR block")),
            }
        }
        None if is_ip(s) => Ok(()),
        None => Err(format!("{s} is not a valid IP")),
    }
}

/// Header names as Istio accepts them in matches: `[-_A-Za-z0-9]+`.
pub(crate) fn validate_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".to_owned());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!("header name {name:?} is not a valid header name"));
    }
    Ok(())
}

/// Checks a regex the way Istio does (RE2 syntax, at most 1024 characters). skiff
/// compiles it with the `regex` crate, whose syntax is a close match for RE2.
pub(crate) fn validate_regex(re: &str) -> Result<(), String> {
    if re.is_empty() {
        return Err("regex string match should not be empty".to_owned());
    }
    if re.len() > 1024 {
        return Err("regex is too large, max length allowed is 1024".to_owned());
    }
    regex::Regex::new(re).map(|_| ()).map_err(|e| {
        let detail = e.to_string();
        let last = detail.lines().last().unwrap_or(&detail).trim().to_owned();
        format!("invalid regex {re:?}: {last}; Istio uses RE2 syntax (no look-around, no back-references)")
    })
}

/// Checks the regex of a `regex` string match.
pub(crate) fn string_match(r: &mut Report<'_>, path: &str, m: &StringMatch) {
    if let StringMatch::Regex(re) = m {
        r.check(format!("{path}.regex"), validate_regex(re));
    }
}

/// Kubernetes label rules for keys and values (Istio's `labels.Instance.Validate`).
pub(crate) fn labels(r: &mut Report<'_>, path: &str, labels: &Labels) {
    for (k, v) in labels {
        let p = crate::yaml::join_key(path, k);
        if let Err(e) = label_key(k) {
            r.error(p.clone(), e);
        }
        if !label_value_ok(v) {
            r.error(
                p,
                format!(
                    "invalid label value {v:?}: at most 63 characters of [A-Za-z0-9-_.], \
                     starting and ending alphanumeric"
                ),
            );
        }
    }
}

fn label_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

fn label_value_ok(s: &str) -> bool {
    s.is_empty() || label_name_ok(s)
}

fn label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix
        && (p.is_empty() || p.len() > 253 || validate_fqdn(p).is_err())
    {
        return Err(format!("invalid label key {k:?}: bad prefix {p:?}"));
    }
    if !label_name_ok(name) {
        return Err(format!(
            "invalid label key {k:?}: the name must be at most 63 characters of \
             [A-Za-z0-9-_.], starting and ending alphanumeric"
        ));
    }
    Ok(())
}

/// `selector` / `workloadSelector` with `matchLabels` (Istio's rules: no empty keys, no
/// wildcards, a warning when empty).
pub(crate) fn workload_selector(r: &mut Report<'_>, path: &str, sel: &WorkloadSelector) {
    selector_labels(r, &format!("{path}.matchLabels"), path, &sel.match_labels);
}

pub(crate) fn selector_labels(r: &mut Report<'_>, labels_path: &str, path: &str, l: &Labels) {
    for (k, v) in l {
        let p = crate::yaml::join_key(labels_path, k);
        if k.is_empty() {
            r.error(p.clone(), "empty key is not supported in a selector");
        }
        if k.contains('*') || v.contains('*') {
            r.error(
                p,
                format!("wildcard is not supported in a selector: \"{k}={v}\""),
            );
        }
    }
    if l.is_empty() {
        r.warn(
            path,
            "workload selector specified without labels: it selects every workload of the namespace",
        );
    }
}

/// `exportTo`: `.`, `*`, `~` (ServiceEntry only) or namespace names, without
/// duplicates, and `*` alone.
pub(crate) fn export_to(r: &mut Report<'_>, path: &str, export_to: &[String], service_entry: bool) {
    let ns = r.namespace().to_owned();
    let mut seen: Vec<&str> = Vec::new();
    for (i, e) in export_to.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let key = if e == "." { ns.as_str() } else { e.as_str() };
        if seen.contains(&key) {
            r.error(p, format!("duplicate entries in exportTo: {e}"));
            continue;
        }
        let ok = e == "." || e == "*" || (e == "~" && service_entry) || is_dns1123_label(e);
        if !ok {
            r.error(
                p,
                format!("invalid exportTo value {e:?}: use `.`, `*` or a namespace name"),
            );
        }
        seen.push(key);
    }
    if export_to.len() > 1 && export_to.iter().any(|e| e == "*") {
        r.error(
            path,
            "cannot have both public (*) and non-public exportTo values for a resource",
        );
    }
    if export_to.len() > 1 && export_to.iter().any(|e| e == "~") {
        r.error(
            path,
            "cannot export service entry to no one (~) and someone",
        );
    }
}

/// Gateway references in VirtualServices: `mesh`, `<name>`, or `<namespace>/<name>`.
pub(crate) fn gateway_names(r: &mut Report<'_>, path: &str, names: &[String]) {
    for (i, g) in names.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match g.split_once('/') {
            None => {
                if g.contains('.') {
                    let parts: Vec<&str> = g.split('.').collect();
                    r.warn(
                        p.clone(),
                        format!(
                            "using legacy gateway name format {g:?}; prefer <namespace>/<name>: \"{}/{}\"",
                            parts.get(1).unwrap_or(&""),
                            parts[0]
                        ),
                    );
                }
                r.check(p, validate_fqdn(g));
            }
            Some((ns, name)) => {
                if ns.is_empty() || name.is_empty() {
                    r.error(p, "gateway namespace and name cannot be empty");
                    continue;
                }
                if !is_dns1123_label(ns) {
                    r.error(p.clone(), format!("invalid value for namespace: {ns:?}"));
                }
                if !is_dns1123_label(name) {
                    r.error(p, format!("invalid value for gateway name: {name:?}"));
                }
            }
        }
    }
}

/// `metadata`: a name is required; names and namespaces follow Kubernetes rules.
pub(crate) fn metadata(r: &mut Report<'_>, resource: &Resource) {
    let m = &resource.metadata;
    if m.name.is_empty() {
        r.error("metadata", "missing required field `name`");
    } else if !is_dns1123_subdomain(&m.name) {
        r.error(
            "metadata.name",
            format!(
                "invalid name {:?}: use lower case letters, digits, '-' and '.', \
                 starting and ending with a letter or digit",
                m.name
            ),
        );
    } else if resource.kind() == Kind::Gateway && !is_dns1123_label(&m.name) {
        r.error(
            "metadata.name",
            format!(
                "invalid gateway name {:?}: it must be a DNS label (no dots)",
                m.name
            ),
        );
    }
    if !is_dns1123_label(&m.namespace) || m.namespace.bytes().any(|b| b.is_ascii_uppercase()) {
        r.error(
            "metadata.namespace",
            format!(
                "invalid namespace {:?}: it must be a lower-case DNS label",
                m.namespace
            ),
        );
    }
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.')
            .all(|l| is_dns1123_label(l) && !l.bytes().any(|b| b.is_ascii_uppercase()))
}

/// A Kubernetes Service: ports in range, unique, names valid.
pub(crate) fn service(r: &mut Report<'_>, s: &ServiceSpec) {
    let mut names: Vec<&str> = Vec::new();
    let mut numbers: Vec<(i32, &str)> = Vec::new();
    for (i, p) in s.ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        r.check(format!("{path}.port"), validate_port(p.port.into()));
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            r.error(
                format!("{path}.protocol"),
                format!("unknown protocol {proto:?}: expected TCP, UDP or SCTP"),
            );
        }
        if numbers.contains(&(p.port, proto)) {
            r.error(
                format!("{path}.port"),
                format!("duplicate port {} ({proto})", p.port),
            );
        }
        numbers.push((p.port, proto));
        match &p.name {
            Some(n) => {
                if !is_dns1123_label(n) || n.bytes().any(|b| b.is_ascii_uppercase()) {
                    r.error(format!("{path}.name"), format!("invalid port name {n:?}"));
                }
                if names.contains(&n.as_str()) {
                    r.error(format!("{path}.name"), format!("duplicate port name {n:?}"));
                }
                names.push(n);
            }
            None if s.ports.len() > 1 => r.error(
                path.clone(),
                "ports must be named when a Service has more than one",
            ),
            None => {}
        }
        if let Some(crate::types::IntOrString::Int(t)) = &p.target_port {
            r.check(format!("{path}.targetPort"), validate_port(*t));
        }
    }
    if let Some(sel) = &s.selector {
        labels(r, "spec.selector", sel);
    }
}

/// A pod spec: container names present and unique, ports in range.
pub(crate) fn pod(r: &mut Report<'_>, path: &str, s: &PodSpec) {
    if s.containers.is_empty() {
        r.error(
            format!("{path}.containers"),
            "a pod needs at least one container",
        );
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, c) in s.containers.iter().enumerate() {
        let cp = format!("{path}.containers[{i}]");
        if c.name.is_empty() {
            r.error(format!("{cp}.name"), "container name cannot be empty");
        } else if names.contains(&c.name.as_str()) {
            r.error(
                format!("{cp}.name"),
                format!("duplicate container name {:?}", c.name),
            );
        }
        names.push(&c.name);
        for (j, port) in c.ports.iter().enumerate() {
            r.check(
                format!("{cp}.ports[{j}].containerPort"),
                validate_port(port.container_port.into()),
            );
        }
    }
}

/// A Deployment: the selector must select the template's labels.
pub(crate) fn deployment(r: &mut Report<'_>, s: &DeploymentSpec) {
    if let Some(replicas) = s.replicas
        && replicas < 0
    {
        r.error("spec.replicas", "replicas cannot be negative");
    }
    let template = &s.template.metadata.labels;
    for (k, v) in &s.selector.match_labels {
        if template.get(k) != Some(v) {
            r.error(
                crate::yaml::join_key("spec.selector.matchLabels", k),
                format!(
                    "selector `{k}={v}` does not match the template labels \
                     (spec.template.metadata.labels)"
                ),
            );
        }
    }
    if s.selector.match_labels.is_empty() && s.selector.match_expressions.is_none() {
        r.error("spec.selector", "a Deployment needs a selector");
    }
    labels(r, "spec.template.metadata.labels", template);
    pod(r, "spec.template.spec", &s.template.spec);
}

/// A Job: its pod template as a Deployment's, and a warning that skiff only analyzes it.
pub(crate) fn job(r: &mut Report<'_>, path: &str, s: &crate::kube::JobSpec) {
    labels(
        r,
        &format!("{path}.template.metadata.labels"),
        &s.template.metadata.labels,
    );
    pod(r, &format!("{path}.template.spec"), &s.template.spec);
    if path == "spec" {
        r.warn(
            "spec",
            "Job: parsed, not run: skiff runs no Jobs; `skiff analyze` checks what a sidecar does to them",
        );
    }
}

/// A CronJob: its Job template, and a warning that skiff only analyzes it.
pub(crate) fn cron_job(r: &mut Report<'_>, s: &crate::kube::CronJobSpec) {
    if s.schedule.trim().is_empty() {
        r.error("spec.schedule", "a CronJob needs a schedule");
    }
    job(r, "spec.jobTemplate.spec", &s.job_template.spec);
    r.warn(
        "spec",
        "CronJob: parsed, not run: skiff runs no CronJobs; `skiff analyze` checks what a sidecar does to their Jobs",
    );
}
