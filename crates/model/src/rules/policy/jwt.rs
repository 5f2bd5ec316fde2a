//! RequestAuthentication → [`JwtRule`]s, with the defaults Istio (and Envoy's JWT
//! filter under it) applies: `pilot/pkg/security/authn/policy_applier.go`.

use skiff_api::Entry;
use skiff_api::security as api;

use crate::config::{ClaimToHeader, DEFAULT_JWKS_TIMEOUT, JwtHeader, JwtRule};

/// Claims Istio always treats as space-delimited.
const SPACE_DELIMITED: [&str; 2] = ["permission", "scope"];

/// The rules of one RequestAuthentication, in the order written.
pub(super) fn compile(ra: &Entry<'_, api::RequestAuthentication>) -> Vec<JwtRule> {
    let policy = format!("{}/{}", ra.namespace(), ra.name());
    ra.jwt_rules
        .iter()
        .map(|j| {
            let mut rule = JwtRule {
                policy: policy.clone(),
                issuer: j.issuer.clone().unwrap_or_default(),
                audiences: j.audiences.clone(),
                jwks: j.jwks.clone(),
                jwks_uri: j.jwks_uri.clone(),
                from_headers: j
                    .from_headers
                    .iter()
                    .map(|h| JwtHeader {
                        name: h.name.clone(),
                        prefix: h.prefix.clone().unwrap_or_default(),
                    })
                    .collect(),
                from_params: j.from_params.clone(),
                from_cookies: j.from_cookies.clone(),
                forward_original_token: j.forward_original_token,
                output_claim_to_headers: j
                    .output_claim_to_headers
                    .iter()
                    .map(|c| ClaimToHeader {
                        header: c.header.clone(),
                        claim: c.claim.clone(),
                    })
                    .collect(),
                output_payload_to_header: j.output_payload_to_header.clone(),
                timeout: j
                    .timeout
                    .as_ref()
                    .map_or(DEFAULT_JWKS_TIMEOUT, |t| t.value()),
                space_delimited_claims: space_delimited(&j.space_delimited_claims),
            };
            // Envoy reads the default places only when no place at all is named.
            if rule.from_headers.is_empty()
                && rule.from_params.is_empty()
                && rule.from_cookies.is_empty()
            {
                rule.from_headers.push(JwtHeader {
                    name: "Authorization".to_string(),
                    prefix: "Bearer ".to_string(),
                });
                rule.from_params.push("access_token".to_string());
            }
            rule
        })
        .collect()
}

/// `permission` and `scope`, plus the rule's own, sorted and without repeats.
fn space_delimited(extra: &[String]) -> Vec<String> {
    let mut claims: Vec<String> = SPACE_DELIMITED.iter().map(|c| c.to_string()).collect();
    claims.extend(extra.iter().cloned());
    claims.sort();
    claims.dedup();
    claims
}
