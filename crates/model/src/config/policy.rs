//! The security policies that apply to one workload, as the model computes them.
//!
//! They are computed with Istio's precedence rules, so that the proxy (which enforces
//! them), `describe` and `analyze` share one answer to "which policy applies here?".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Policies that select this workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Policies {
    /// Effective peer authentication (mutual TLS) for the workload's inbound traffic.
    pub mtls: MtlsPolicy,
    /// AuthorizationPolicies that apply, as `namespace/name`, sorted: policies of the
    /// root namespace (mesh-wide or selecting this workload) and of the workload's
    /// namespace (namespace-wide or selecting it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization: Vec<String>,
    /// RequestAuthentications that apply, as `namespace/name`, sorted (same scoping).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_authentication: Vec<String>,
    /// The AuthorizationPolicies of `authorization`, compiled, in Istio's order: those
    /// of the root namespace, then those of the workload's namespace, each by creation
    /// time (then name). Which action is evaluated first is the proxy's job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_policies: Vec<super::AuthzPolicy>,
    /// The `jwtRules` of every RequestAuthentication in `request_authentication`, in
    /// one list sorted by issuer (then policy order), defaults filled in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt_rules: Vec<super::JwtRule>,
}

/// The mutual TLS mode in force for inbound traffic, overall and per workload port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MtlsPolicy {
    /// Mode for every port without its own.
    pub mode: MtlsMode,
    /// Per workload (target) port overrides, from `portLevelMtls` of a policy that
    /// selects this workload.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<u16, MtlsMode>,
    /// The PeerAuthentications that decided, strongest first (`namespace/name`); empty
    /// when Istio's default (PERMISSIVE) applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
}

/// PeerAuthentication mode, after inheritance (never UNSET).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Accept both mutual TLS and plain text (Istio's default).
    #[default]
    Permissive,
    /// Mutual TLS only.
    Strict,
    /// Plain text only.
    Disable,
}
