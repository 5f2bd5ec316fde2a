//! AuthorizationPolicy rules: scope, action, sources, operations and `when` conditions.

use crate::security::{AuthorizationAction, AuthorizationPolicy, Operation, Source};
use crate::validate::Report;
use crate::validate::common::validate_ip_subnet;

use super::{one_selector_type, target_ref};

/// The annotation that makes an AuthorizationPolicy dry-run.
const DRY_RUN: &str = "istio.io/dry-run";

/// What Go's `strconv.ParseBool` accepts (Istio reads the dry-run annotation with it).
const GO_BOOLS: &[&str] = &[
    "1", "t", "T", "true", "TRUE", "True", "0", "f", "F", "false", "FALSE", "False",
];

pub(in crate::validate) fn authorization_policy(r: &mut Report<'_>, ap: &AuthorizationPolicy) {
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
    if let Some(v) = r.annotation(DRY_RUN)
        && !GO_BOOLS.contains(&v)
    {
        let message = format!(
            "{DRY_RUN} must be true or false (Go's strconv.ParseBool spellings), found {v:?}; \
             Istio then enforces the policy"
        );
        r.warn(format!("metadata.annotations[{DRY_RUN:?}]"), message);
    }
    let action = ap.action.unwrap_or(AuthorizationAction::Allow);
    if action == AuthorizationAction::Custom {
        r.error(
            "spec.action",
            "CUSTOM authorization (ext_authz) is not supported yet",
        );
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
    let lists: [(&str, &Vec<String>); 14] = [
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
        ("trustDomains", &s.trust_domains),
        ("notTrustDomains", &s.not_trust_domains),
    ];
    if lists.iter().all(|(_, l)| l.is_empty()) {
        r.error(path, "`from.source` must not be empty");
    }
    let by_identity = [
        &s.principals,
        &s.not_principals,
        &s.namespaces,
        &s.not_namespaces,
    ];
    if by_identity.iter().any(|l| !l.is_empty())
        && !(s.service_accounts.is_empty() && s.not_service_accounts.is_empty())
    {
        r.error(
            path,
            "cannot set serviceAccounts with namespaces or principals",
        );
    }
    for (field, list) in [
        ("serviceAccounts", &s.service_accounts),
        ("notServiceAccounts", &s.not_service_accounts),
    ] {
        if list.len() > 16 {
            r.error(
                format!("{path}.{field}"),
                "may not have more than 16 values",
            );
        }
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
            } else if field.ends_with("erviceAccounts") {
                r.check(p, service_account(v));
            } else if field.ends_with("amespaces") {
                wildcard_position(r, &p, v);
            } else if field.ends_with("rustDomains") {
                r.check(p, trust_domain(v));
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
        &s.trust_domains,
        &s.not_trust_domains,
    ]
    .iter()
    .any(|l| !l.is_empty())
}

/// `sa` (of the policy's namespace) or `namespace/sa`, as Istio's `CheckServiceAccount`.
fn service_account(v: &str) -> Result<(), String> {
    let expected = "expected format 'serviceAccount' or 'namespace/serviceAccount'";
    if v.contains('*') {
        return Err(format!("wildcard not allowed in service account {v:?}"));
    }
    if v.len() > 320 {
        return Err(format!(
            "service account {v:?} is longer than 320 characters"
        ));
    }
    match v.split('/').collect::<Vec<_>>()[..] {
        [sa] if !sa.is_empty() => Ok(()),
        [ns, sa] if !ns.is_empty() && !sa.is_empty() => Ok(()),
        _ => Err(format!("{expected}, found {v:?}")),
    }
}

/// A trust domain: at most one `*`, at the start or end (or alone), and no `/`.
fn trust_domain(v: &str) -> Result<(), String> {
    let stars = v.matches('*').count();
    if stars > 1 {
        return Err(format!("at most one wildcard is allowed, found {v:?}"));
    }
    if stars == 1 && v != "*" && !v.starts_with('*') && !v.ends_with('*') {
        return Err(format!(
            "wildcard is only allowed at the start or end, found {v:?}"
        ));
    }
    if v.contains('/') {
        return Err(format!("trust domain must not contain '/', found {v:?}"));
    }
    Ok(())
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

/// Paths with `{*}` / `{**}` templates, as Istio's `CheckValidPathTemplate`: each
/// operator a whole segment, nothing of `{`/`}` elsewhere, no operator after a `{**}`,
/// and the literal segments of a template made of URL path characters.
fn path_template(p: &str) -> Result<(), String> {
    let template = p.contains("{*}") || p.contains("{**}");
    if !template && !p.contains('{') && !p.contains('}') {
        return Ok(());
    }
    let mut after_any = false;
    for seg in p.trim_matches('/').split('/') {
        match seg {
            "{*}" | "{**}" if after_any => {
                return Err(format!(
                    "invalid path template {p:?}: no {{*}} or {{**}} may follow {{**}}"
                ));
            }
            "{*}" => {}
            "{**}" => after_any = true,
            _ if seg.contains(['{', '}']) => {
                return Err(format!(
                    "invalid path template {p:?}: {{*}} and {{**}} must each be a whole path segment"
                ));
            }
            _ if template && !seg.bytes().all(literal_byte) => {
                return Err(format!(
                    "invalid path template {p:?}: segment {seg:?} holds characters a URL path cannot"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// RFC 3986 path characters (Istio's `validLiteral`).
fn literal_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b)
}

/// The `when` keys Istio supports besides the bracketed ones (`request.headers[…]`,
/// `request.auth.claims[…]`, `experimental.envoy.filters.*[…]`), from Istio's
/// `pkg/config/security` attribute list.
const ATTRIBUTES: &[&str] = &[
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "source.serviceAccount",
    "source.trustDomain",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "destination.ip",
    "destination.port",
    "connection.sni",
];

/// Checks a `when` key: one of [`ATTRIBUTES`], or a prefix with bracketed names.
pub(in crate::validate) fn attribute_key(key: &str) -> Result<(), String> {
    if let Some(rest) = key.strip_prefix("request.headers") {
        return bracketed(key, rest, false, "request.headers[<name>]");
    }
    if let Some(rest) = key.strip_prefix("request.auth.claims") {
        return bracketed(
            key,
            rest,
            true,
            "request.auth.claims[<name>] (nested: [<a>][<b>])",
        );
    }
    if let Some(rest) = key.strip_prefix("experimental.envoy.filters.") {
        let open = rest.find('[').unwrap_or(0);
        return bracketed(
            key,
            &rest[open..],
            false,
            "experimental.envoy.filters.<filter>[<field>]",
        )
        .and_then(|()| {
            if open == 0 {
                Err(format!(
                    "invalid key {key:?}: expected experimental.envoy.filters.<filter>[<field>]"
                ))
            } else {
                Ok(())
            }
        });
    }
    match key {
        k if ATTRIBUTES.contains(&k) => Ok(()),
        "destination.namespace" => Err(format!(
            "attribute {key} is replaced by the metadata.namespace of the policy"
        )),
        "destination.name" | "destination.user" => Err(format!(
            "deprecated attribute {key}: only supported in v1alpha1"
        )),
        k if k.starts_with("destination.labels") => Err(format!(
            "attribute {key} is replaced by the workload selector"
        )),
        _ => Err(format!(
            "unknown attribute {key:?}: expected request.headers[<name>], request.auth.claims[<name>], \
             experimental.envoy.filters.<filter>[<field>] or one of {}",
            ATTRIBUTES.join(", ")
        )),
    }
}

/// `[name]`, or with `nested` also `[a][b]…`: each name non-empty, without brackets.
fn bracketed(key: &str, rest: &str, nested: bool, expected: &str) -> Result<(), String> {
    let fail = || Err(format!("invalid key {key:?}: expected {expected}"));
    let mut rest = rest;
    let mut names = 0;
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(end) = inner.find(']') else {
            return fail();
        };
        let name = &inner[..end];
        if name.is_empty() || name.contains('[') {
            return fail();
        }
        names += 1;
        rest = &inner[end + 1..];
    }
    if names == 0 || !rest.is_empty() || (names > 1 && !nested) {
        return fail();
    }
    Ok(())
}

fn attribute(key: &str, values: &[String]) -> Result<(), String> {
    if values.iter().any(String::is_empty) {
        return Err("empty value not allowed".to_owned());
    }
    match key {
        "source.serviceAccount" => values.iter().try_for_each(|v| service_account(v)),
        "source.trustDomain" => values.iter().try_for_each(|v| trust_domain(v)),
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
