//! PeerAuthentication, RequestAuthentication and AuthorizationPolicy rules.

use crate::security::{
    AuthorizationAction, AuthorizationPolicy, JwtRule, Operation, PeerAuthentication,
    RequestAuthentication, Source,
};
use crate::types::{PolicyTargetReference, WorkloadSelector};
use crate::validate::Report;
use crate::validate::common::{
    validate_duration, validate_header_name, validate_ip_subnet, workload_selector,
};

pub(super) fn peer_authentication(r: &mut Report<'_>, pa: &PeerAuthentication) {
    let empty_selector = pa
        .selector
        .as_ref()
        .is_none_or(|s| s.match_labels.is_empty());
    if empty_selector && !pa.port_level_mtls.is_empty() {
        r.error_at_key(
            "spec.portLevelMtls",
            "mesh/namespace peer authentication cannot have port level mTLS: portLevelMtls needs a selector with matchLabels",
        );
    }
    for port in pa.port_level_mtls.keys() {
        if *port == 0 || *port > 65535 {
            r.error_at_key(
                format!("spec.portLevelMtls.{port}"),
                format!("port {port} must be in range 1..65535"),
            );
        }
    }
    if let Some(sel) = &pa.selector {
        workload_selector(r, "spec.selector", sel);
    }
}

/// Only one of `selector`, `targetRef` and `targetRefs` may be set.
pub(super) fn one_selector_type(
    r: &mut Report<'_>,
    selector: Option<&WorkloadSelector>,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
) {
    let set = usize::from(selector.is_some())
        + usize::from(target_ref.is_some())
        + usize::from(!target_refs.is_empty());
    if set > 1 {
        r.error(
            "spec",
            "only one of targetRefs or workloadSelector can be set",
        );
    }
    if let Some(sel) = selector {
        workload_selector(r, "spec.selector", sel);
    }
}

pub(super) fn target_ref(r: &mut Report<'_>, path: &str, t: &PolicyTargetReference) {
    if t.name.is_empty() {
        r.error(format!("{path}.name"), "targetRef name must be set");
    }
    if t.namespace.as_deref().is_some_and(|n| !n.is_empty()) {
        r.error(
            format!("{path}.namespace"),
            "targetRef namespace must not be set; cross namespace referencing is not supported",
        );
    }
    let group = t.group.as_deref().unwrap_or("");
    let allowed = matches!(
        (group, t.kind.as_str()),
        ("" | "core", "Service")
            | ("networking.istio.io", "ServiceEntry")
            | ("gateway.networking.k8s.io", "Gateway")
    );
    if !allowed {
        r.error(
            path,
            format!("targetRef must be to a core Service, a networking.istio.io ServiceEntry or a gateway.networking.k8s.io Gateway, but was {group}/{}", t.kind),
        );
    }
}

pub(super) fn request_authentication(r: &mut Report<'_>, ra: &RequestAuthentication) {
    one_selector_type(
        r,
        ra.selector.as_ref(),
        ra.target_ref.as_ref(),
        &ra.target_refs,
    );
    if let Some(t) = &ra.target_ref {
        target_ref(r, "spec.targetRef", t);
    }
    for (i, t) in ra.target_refs.iter().enumerate() {
        target_ref(r, &format!("spec.targetRefs[{i}]"), t);
    }
    for (i, rule) in ra.jwt_rules.iter().enumerate() {
        jwt_rule(r, &format!("spec.jwtRules[{i}]"), rule);
    }
}

fn jwt_rule(r: &mut Report<'_>, path: &str, j: &JwtRule) {
    if j.issuer.as_deref().unwrap_or("").is_empty() {
        r.error(
            path,
            "missing `issuer`: a JWT rule must name the issuer of the tokens it accepts",
        );
    }
    for (i, a) in j.audiences.iter().enumerate() {
        if a.is_empty() {
            r.error(
                format!("{path}.audiences[{i}]"),
                "audience must be non-empty string",
            );
        }
    }
    if j.jwks_uri.is_some() && j.jwks.is_some() {
        r.error(path, "set only one of jwksUri and jwks");
    }
    if let Some(uri) = &j.jwks_uri
        && let Err(e) = jwks_uri(uri)
    {
        r.error(format!("{path}.jwksUri"), e);
    }
    if let Some(jwks) = &j.jwks {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(jwks);
        match parsed {
            Ok(v) if v.get("keys").is_some_and(serde_json::Value::is_array) => {}
            Ok(_) => r.error(
                format!("{path}.jwks"),
                "jwks parse error: expected a JSON Web Key Set, an object with a \"keys\" list",
            ),
            Err(e) => r.error(format!("{path}.jwks"), format!("jwks parse error: {e}")),
        }
    }
    for (i, h) in j.from_headers.iter().enumerate() {
        if h.name.is_empty() {
            r.error(
                format!("{path}.fromHeaders[{i}].name"),
                "location header name must be non-empty string",
            );
        }
    }
    for (i, p) in j.from_params.iter().enumerate() {
        if p.is_empty() {
            r.error(
                format!("{path}.fromParams[{i}]"),
                "location query must be non-empty string",
            );
        }
    }
    for (i, c) in j.from_cookies.iter().enumerate() {
        if c.is_empty() {
            r.error(
                format!("{path}.fromCookies[{i}]"),
                "cookie name must be non-empty string",
            );
        }
    }
    for (i, c) in j.output_claim_to_headers.iter().enumerate() {
        let p = format!("{path}.outputClaimToHeaders[{i}]");
        if c.claim.is_empty() || c.header.is_empty() {
            r.error(
                p,
                "outputClaimToHeaders header and claim value must be non-empty string",
            );
            continue;
        }
        r.check(format!("{p}.header"), validate_header_name(&c.header));
    }
    if let Some(t) = &j.timeout {
        r.check(format!("{path}.timeout"), validate_duration(t));
    }
}

fn jwks_uri(uri: &str) -> Result<(), String> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or_else(|| format!("jwksUri {uri:?} must be an http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("jwksUri {uri:?} has no host"));
    }
    Ok(())
}

pub(super) fn authorization_policy(r: &mut Report<'_>, ap: &AuthorizationPolicy) {
    one_selector_type(
        r,
        ap.selector.as_ref(),
        ap.target_ref.as_ref(),
        &ap.target_refs,
    );
    if let Some(t) = &ap.target_ref {
        target_ref(r, "spec.targetRef", t);
    }
    for (i, t) in ap.target_refs.iter().enumerate() {
        target_ref(r, &format!("spec.targetRefs[{i}]"), t);
    }
    let action = ap.action.unwrap_or(AuthorizationAction::Allow);
    if action == AuthorizationAction::Custom {
        if ap.rules.is_empty() {
            r.error("spec", "CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request");
        } else if ap
            .provider
            .as_ref()
            .and_then(|p| p.name.as_deref())
            .unwrap_or("")
            .is_empty()
        {
            r.error(
                "spec.provider",
                "CUSTOM action needs `provider.name`: the extension provider that decides",
            );
        }
        for (i, rule) in ap.rules.iter().enumerate() {
            for (j, from) in rule.from.iter().enumerate() {
                let Some(src) = &from.source else { continue };
                let sp = format!("spec.rules[{i}].from[{j}].source");
                for (field, set) in [
                    ("namespaces", !src.namespaces.is_empty()),
                    ("notNamespaces", !src.not_namespaces.is_empty()),
                    ("principals", !src.principals.is_empty()),
                    ("notPrincipals", !src.not_principals.is_empty()),
                    ("requestPrincipals", !src.request_principals.is_empty()),
                    (
                        "notRequestPrincipals",
                        !src.not_request_principals.is_empty(),
                    ),
                ] {
                    if set {
                        r.error_at_key(
                            format!("{sp}.{field}"),
                            format!("{field} is currently not supported with CUSTOM action"),
                        );
                    }
                }
            }
            for (j, when) in rule.when.iter().enumerate() {
                let k = &when.key;
                if k == "source.namespace"
                    || k == "source.principal"
                    || k.starts_with("request.auth.")
                {
                    r.error(
                        format!("spec.rules[{i}].when[{j}].key"),
                        format!("{k} is currently not supported with CUSTOM action"),
                    );
                }
            }
        }
    }
    if ap.provider.is_some() && action != AuthorizationAction::Custom {
        r.error_at_key(
            "spec.provider",
            format!(
                "`provider` must not be set with non CUSTOM action, found {}",
                crate::validate::common::istio_name(&action)
            ),
        );
    }
    if action == AuthorizationAction::Deny && ap.rules.is_empty() {
        r.error("spec", "DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request");
    }
    for (i, rule) in ap.rules.iter().enumerate() {
        let rp = format!("spec.rules[{i}]");
        let (mut tcp_from, mut tcp_to) = (false, false);
        for (j, from) in rule.from.iter().enumerate() {
            let fp = format!("{rp}.from[{j}]");
            match &from.source {
                None => r.error(fp, "`from.source` must not be nil"),
                Some(src) => {
                    tcp_from |= source(r, &format!("{fp}.source"), src);
                }
            }
        }
        for (j, to) in rule.to.iter().enumerate() {
            let tp = format!("{rp}.to[{j}]");
            match &to.operation {
                None => r.error(tp, "`to.operation` must not be nil"),
                Some(op) => {
                    tcp_to |= operation(r, &format!("{tp}.operation"), op);
                }
            }
        }
        for (j, c) in rule.when.iter().enumerate() {
            let cp = format!("{rp}.when[{j}]");
            if c.key.is_empty() {
                r.error(format!("{cp}.key"), "`key` must not be empty");
                continue;
            }
            if c.values.is_empty() && c.not_values.is_empty() {
                r.error(
                    cp.clone(),
                    format!(
                        "at least one of `values` or `notValues` must be set for key {}",
                        c.key
                    ),
                );
                continue;
            }
            for (field, values) in [("values", &c.values), ("notValues", &c.not_values)] {
                if !values.is_empty()
                    && let Err(e) = attribute(&c.key, values)
                {
                    r.error(
                        format!("{cp}.{field}"),
                        format!("invalid `{field}` for `key` {}: {e}", c.key),
                    );
                }
            }
            if let Err(e) = attribute_key(&c.key) {
                r.error(format!("{cp}.key"), e);
            }
        }
        let from_exists = rule.from.iter().any(|f| f.source.is_some());
        let to_exists = rule.to.iter().any(|t| t.operation.is_some());
        if action == AuthorizationAction::Deny
            && ((from_exists && !to_exists && !tcp_from) || (to_exists && !tcp_to))
        {
            r.warn(rp, "this DENY rule uses only HTTP attributes, so it denies all traffic to TCP ports in its scope; name the port explicitly");
        }
    }
}

/// Checks a source; returns whether it uses attributes that also work for TCP.
fn source(r: &mut Report<'_>, path: &str, s: &Source) -> bool {
    let lists: [(&str, &Vec<String>); 12] = [
        ("principals", &s.principals),
        ("notPrincipals", &s.not_principals),
        ("requestPrincipals", &s.request_principals),
        ("notRequestPrincipals", &s.not_request_principals),
        ("namespaces", &s.namespaces),
        ("notNamespaces", &s.not_namespaces),
        ("ipBlocks", &s.ip_blocks),
        ("notIpBlocks", &s.not_ip_blocks),
        ("remoteIpBlocks", &s.remote_ip_blocks),
        ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
        ("serviceAccounts", &s.service_accounts),
        ("notServiceAccounts", &s.not_service_accounts),
    ];
    if lists.iter().all(|(_, l)| l.is_empty()) {
        r.error(path, "`from.source` must not be empty");
    }
    for (field, list) in lists {
        for (i, v) in list.iter().enumerate() {
            let p = format!("{path}.{field}[{i}]");
            if v.is_empty() {
                r.error(p, format!("empty value not allowed, found in {field}"));
                continue;
            }
            if field.ends_with("pBlocks") || field.ends_with("IpBlocks") {
                r.check(p, validate_ip_subnet(v));
            } else if field.ends_with("rincipals") {
                if v.starts_with("spiffe://") {
                    r.warn(p.clone(), format!("principal {v:?} never matches: principals are written without `spiffe://`, as <trust domain>/ns/<namespace>/sa/<service account>"));
                }
                wildcard_position(r, &p, v);
            } else if field.ends_with("erviceAccounts") && v.split('/').count() != 2 {
                r.error(
                    p,
                    format!("service account {v:?} must be written as <namespace>/<name>"),
                );
            } else if field.ends_with("amespaces") {
                wildcard_position(r, &p, v);
            }
        }
    }
    [
        &s.principals,
        &s.not_principals,
        &s.namespaces,
        &s.not_namespaces,
        &s.ip_blocks,
        &s.not_ip_blocks,
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
        &s.service_accounts,
        &s.not_service_accounts,
    ]
    .iter()
    .any(|l| !l.is_empty())
}

fn wildcard_position(r: &mut Report<'_>, path: &str, v: &str) {
    let inner = v.trim_start_matches('*').trim_end_matches('*');
    if inner.contains('*') || v == "**" {
        r.warn(path, format!("{v:?}: only a leading or trailing `*` is a wildcard; a `*` elsewhere is matched literally"));
    }
}

/// Checks an operation; returns whether it names ports (which work for TCP).
fn operation(r: &mut Report<'_>, path: &str, o: &Operation) -> bool {
    let lists: [(&str, &Vec<String>); 8] = [
        ("hosts", &o.hosts),
        ("notHosts", &o.not_hosts),
        ("ports", &o.ports),
        ("notPorts", &o.not_ports),
        ("methods", &o.methods),
        ("notMethods", &o.not_methods),
        ("paths", &o.paths),
        ("notPaths", &o.not_paths),
    ];
    if lists.iter().all(|(_, l)| l.is_empty()) {
        r.error(path, "`to.operation` must not be empty");
    }
    for (field, list) in lists {
        for (i, v) in list.iter().enumerate() {
            let p = format!("{path}.{field}[{i}]");
            if v.is_empty() {
                r.error(p, format!("empty value not allowed, found in {field}"));
            } else if field.ends_with("orts") {
                if !v.parse::<u32>().is_ok_and(|n| n <= 65535) {
                    r.error(
                        p,
                        format!("invalid port {v:?}: expected a number from 0 to 65535"),
                    );
                }
            } else if field.ends_with("aths")
                && let Err(e) = path_template(v)
            {
                r.error(p, e);
            }
        }
    }
    !o.ports.is_empty() || !o.not_ports.is_empty()
}

/// Paths with `{*}` / `{**}` templates: each operator a whole segment, `{**}` last.
fn path_template(p: &str) -> Result<(), String> {
    if !p.contains('{') && !p.contains('}') {
        return Ok(());
    }
    let segments: Vec<&str> = p.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        if !(seg.contains('{') || seg.contains('}')) {
            continue;
        }
        match *seg {
            "{*}" => {}
            "{**}" if i == segments.len() - 1 => {}
            "{**}" => {
                return Err(format!(
                    "invalid path template {p:?}: {{**}} must be the last segment"
                ));
            }
            _ => {
                return Err(format!(
                    "invalid path template {p:?}: {{*}} and {{**}} must each be a whole path segment"
                ));
            }
        }
    }
    Ok(())
}

const ATTRIBUTES: &[&str] = &[
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "source.serviceAccount",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "destination.ip",
    "destination.port",
    "connection.sni",
];

fn attribute_key(key: &str) -> Result<(), String> {
    for prefix in [
        "request.headers",
        "request.auth.claims",
        "experimental.envoy.filters.",
    ] {
        if let Some(rest) = key.strip_prefix(prefix) {
            if prefix.ends_with('.') {
                return Ok(());
            }
            return if rest.starts_with('[') && rest.ends_with(']') && rest.len() > 2 {
                Ok(())
            } else {
                Err(format!("invalid key {key:?}: expected {prefix}[<name>]"))
            };
        }
    }
    if ATTRIBUTES.contains(&key) {
        Ok(())
    } else {
        Err(format!(
            "unknown attribute {key:?}: expected request.headers[<name>], request.auth.claims[<name>] or one of {}",
            ATTRIBUTES.join(", ")
        ))
    }
}

fn attribute(key: &str, values: &[String]) -> Result<(), String> {
    if values.iter().any(String::is_empty) {
        return Err("empty value not allowed".to_owned());
    }
    match key {
        "source.ip" | "remote.ip" | "destination.ip" => {
            values.iter().try_for_each(|v| validate_ip_subnet(v))
        }
        "destination.port" => values.iter().try_for_each(|v| {
            if v.parse::<u32>().is_ok_and(|n| n <= 65535) {
                Ok(())
            } else {
                Err(format!("invalid port {v:?}"))
            }
        }),
        _ => Ok(()),
    }
}
