//! Per-route HTTP settings beyond matching and forwarding: header rules, mirrors and
//! CORS (VirtualService `headers`, `route[].headers`, `mirror`/`mirrors`, `corsPolicy`).
//!
//! They live in [`super::ProxyConfig::http_policies`], keyed by route name (as faults
//! are), so a route that has none carries nothing.

use serde::{Deserialize, Serialize};

use super::StringMatch;

/// What a VirtualService rule asks for besides its action, for one route name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoutePolicy {
    /// The rule's own `headers` (applied after a destination's, as Envoy does).
    #[serde(default, skip_serializing_if = "HeaderRules::is_empty")]
    pub headers: HeaderRules,
    /// `route[i].headers`, by destination index in the route's `Forward::destinations`
    /// (only destinations that have some).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_headers: Vec<DestinationHeaders>,
    /// Copies sent to other clusters (`mirror` with `mirrorPercentage`, and `mirrors`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<Mirror>,
    /// `corsPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsPolicy>,
}

impl HttpRoutePolicy {
    /// True when the policy asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
            && self.destination_headers.is_empty()
            && self.mirrors.is_empty()
            && self.cors.is_none()
    }
}

/// The header rules of one destination of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationHeaders {
    /// Index into the route's destinations.
    pub index: usize,
    /// Its rules.
    pub headers: HeaderRules,
}

/// Istio's `Headers`: changes to the request (before it goes upstream) and to the
/// response (before it goes back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRules {
    /// Request changes.
    #[serde(default, skip_serializing_if = "HeaderOps::is_empty")]
    pub request: HeaderOps,
    /// Response changes.
    #[serde(default, skip_serializing_if = "HeaderOps::is_empty")]
    pub response: HeaderOps,
}

impl HeaderRules {
    /// True when neither side changes anything.
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

/// `HeaderOperations`: removals first, then `set` (overwrite) and `add` (append), as
/// Envoy's header parser applies them. Names are lower case; lists are sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct HeaderOps {
    /// Headers to overwrite (or add when absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<(String, String)>,
    /// Headers to append a value to (or add when absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<(String, String)>,
    /// Headers to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl HeaderOps {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// One mirror: a copy of each chosen request goes to `cluster`, its response dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mirror {
    /// Name of a cluster in [`super::ProxyConfig::clusters`].
    pub cluster: String,
    /// Share of requests copied, in millionths (Istio's default: all of them).
    pub per_million: u32,
}

/// `corsPolicy`, as Envoy's CORS filter applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CorsPolicy {
    /// Origins allowed (`allowOrigins`, and the deprecated `allowOrigin` as exact
    /// matches). Empty: no origin is allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<StringMatch>,
    /// `Access-Control-Allow-Methods`, joined with `,`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<String>,
    /// `Access-Control-Allow-Headers`, joined with `,`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_headers: Option<String>,
    /// `Access-Control-Expose-Headers`, joined with `,`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<String>,
    /// `Access-Control-Max-Age`, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u64>,
    /// `Access-Control-Allow-Credentials: true`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_credentials: bool,
    /// A preflight from an origin that does not match is answered by the proxy without
    /// CORS headers (`unmatchedPreflights: IGNORE`) instead of being forwarded (the
    /// default, `FORWARD`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_unmatched_preflights: bool,
}

/// `rewrite.uriRegexRewrite`: RE2 pattern and substitution (`\1` refers to a group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegexRewrite {
    /// The pattern, matched anywhere in the path.
    pub pattern: String,
    /// What each match becomes.
    pub substitution: String,
}
