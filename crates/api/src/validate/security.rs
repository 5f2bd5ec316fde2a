//! PeerAuthentication, RequestAuthentication and AuthorizationPolicy rules.

mod authorization;

use crate::security::{JwtRule, PeerAuthentication, RequestAuthentication};
use crate::types::{PolicyTargetReference, WorkloadSelector};
use crate::validate::Report;
use crate::validate::common::{validate_duration, validate_header_name, workload_selector};

pub(super) use authorization::authorization_policy;

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
    if pa.port_level_mtls.is_empty() && r.written("spec.portLevelMtls") {
        r.error(
            "spec.portLevelMtls",
            "spec.portLevelMtls in body should have at least 1 properties",
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
    for (i, c) in j.space_delimited_claims.iter().enumerate() {
        if c.is_empty() {
            r.error(
                format!("{path}.spaceDelimitedClaims[{i}]"),
                "spaceDelimitedClaims[{i}] in body should be at least 1 chars long",
            );
        }
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
