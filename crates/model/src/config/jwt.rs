//! RequestAuthentication compiled for one workload: the JWT issuers it accepts.
//!
//! As Istio's `pilot/pkg/security/authn/policy_applier.go` does, the rules of every
//! RequestAuthentication that applies are put in one list sorted by issuer. The proxy's
//! job: a request without a token passes (AuthorizationPolicy decides about it); a
//! request with a token that no rule verifies is refused with 401.

use serde::{Deserialize, Serialize};

/// Istio's JWKS fetch timeout when `timeout` is not set.
pub const DEFAULT_JWKS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One accepted issuer (`jwtRules[]` of a RequestAuthentication).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtRule {
    /// `namespace/name` of the RequestAuthentication it comes from.
    pub policy: String,
    /// The `iss` a token must carry.
    pub issuer: String,
    /// Accepted `aud` values; empty: the audience is not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// The issuer's public keys inline, as a JWKS JSON document (`jwks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Where to fetch the keys (`jwksUri`) when `jwks` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Headers that carry the token, tried in order; the prefix is cut off first.
    /// Istio's default (no `fromHeaders`, `fromParams` nor `fromCookies`):
    /// `Authorization` with prefix `Bearer `.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_headers: Vec<JwtHeader>,
    /// Query parameters that carry the token; default (as above) `access_token`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_params: Vec<String>,
    /// Cookies that carry the token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_cookies: Vec<String>,
    /// Keep the token in the request sent upstream (`forwardOriginalToken`); by
    /// default it is removed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_original_token: bool,
    /// Copy claims of a verified token to request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// Header to put the verified payload in, base64url-encoded JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_payload_to_header: Option<String>,
    /// Timeout for fetching `jwksUri` (`timeout`; Istio's default 5 s), in ms.
    #[serde(default = "default_timeout", with = "super::duration")]
    pub timeout: std::time::Duration,
    /// Claims whose string value is a space-separated list, matched per element:
    /// always `permission` and `scope`, plus `spaceDelimitedClaims`; sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub space_delimited_claims: Vec<String>,
}

fn default_timeout() -> std::time::Duration {
    DEFAULT_JWKS_TIMEOUT
}

/// A header that carries a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtHeader {
    /// Header name, as written (compared ignoring case).
    pub name: String,
    /// Text before the token, cut off (`Bearer `); empty: the whole value is the token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

/// Copy one claim of a verified token to a request header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimToHeader {
    /// The header to set.
    pub header: String,
    /// The claim to copy (string, number or boolean claims).
    pub claim: String,
}
