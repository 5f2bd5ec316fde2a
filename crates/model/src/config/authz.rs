//! AuthorizationPolicies compiled for one workload: what the proxy's authorization
//! stage checks every request (or connection) against.
//!
//! Evaluation, as Istio's RBAC filters do it (the proxy's job): CUSTOM is refused at
//! load time, so first DENY (a request that matches any DENY policy is denied), then
//! ALLOW (when any ALLOW policy applies, a request must match one of them), AUDIT only
//! marks matching requests. Dry-run policies are evaluated and logged, never enforced.
//! On TCP (non-HTTP) ports, a rule that needs HTTP attributes (methods, paths, hosts,
//! request principals, headers, claims) never matches for ALLOW, and for DENY and
//! AUDIT that attribute is dropped from the rule, as Istio's builder does.

use serde::{Deserialize, Serialize};

/// One AuthorizationPolicy that applies to this workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthzPolicy {
    /// `namespace/name` of the policy.
    pub name: String,
    /// What a match does (`action`, default ALLOW).
    pub action: AuthzAction,
    /// `istio.io/dry-run: "true"`: evaluate and log, never enforce.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The rules; the policy matches a request when any rule does. Empty (`spec: {}`
    /// or no `rules`): the policy matches nothing, so an ALLOW policy without rules
    /// denies every request it applies to.
    #[serde(default)]
    pub rules: Vec<AuthzRule>,
}

/// `action` of an AuthorizationPolicy (CUSTOM never reaches a proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthzAction {
    /// Allow matching requests; with any ALLOW policy, the others are denied.
    Allow,
    /// Deny matching requests (before ALLOW is looked at).
    Deny,
    /// Mark matching requests for audit logging; does not change the decision.
    Audit,
}

/// One rule: it matches when `from`, `to` and `when` all do. An empty rule (`{}`)
/// matches every request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuthzRule {
    /// Sources; any one must match. Empty: any source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<AuthzSource>,
    /// Operations; any one must match. Empty: any operation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<AuthzOperation>,
    /// Conditions; all must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<AuthzCondition>,
}

/// Who sent the request. Every field set must match (AND); a field matches when its
/// value matches any entry (OR) and, for `not*`, none. Values with a leading or trailing
/// `*` are suffix / prefix matches, `*` alone matches any present value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuthzSource {
    /// Peer identities from mutual TLS, compared with the peer certificate's SPIFFE URI
    /// without `spiffe://` (`cluster.local/ns/prod/sa/frontend`). Expanded with the trust
    /// domain aliases, as Istio does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// Negated `principals`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    /// JWT identities `<iss>/<sub>`, compared with the verified token's claims (the last
    /// `/` splits issuer and subject; `*` as in Istio's request principal matcher).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    /// Negated `requestPrincipals`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
    /// Namespaces of the peer identity: the `ns` part of its SPIFFE URI (mutual TLS
    /// only; a `*` stands for any characters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Negated `namespaces`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    /// Service accounts of the peer identity, always `<namespace>/<name>` (a bare name
    /// in the policy means one of the policy's namespace); matched exactly against the
    /// `ns` and `sa` parts of the peer's SPIFFE URI, any trust domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    /// Negated `serviceAccounts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<String>,
    /// Trust domains of the peer identity (`*` any; one `*` in a name stands for
    /// characters other than `/`). Expanded with the trust domain aliases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_domains: Vec<String>,
    /// Negated `trustDomains`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_trust_domains: Vec<String>,
    /// Addresses or CIDRs of the peer (the connection's source address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    /// Negated `ipBlocks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
    /// Addresses or CIDRs of the original client (X-Forwarded-For or PROXY protocol).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<String>,
    /// Negated `remoteIpBlocks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<String>,
}

/// What the request does. Fields AND, values OR, as in [`AuthzSource`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuthzOperation {
    /// Authority (Host) values, lower-cased; compared ignoring ASCII case, with `*`
    /// prefix / suffix wildcards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Negated `hosts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    /// Destination ports (the workload port the connection came to).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// Negated `ports`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<u16>,
    /// Methods, compared exactly (`GET`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Negated `methods`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    /// Paths (without the query): exact, `*` prefix / suffix wildcards, or templates
    /// with whole segments `{*}` (one segment) and a last `{**}` (any rest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Negated `paths`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

/// A `when` condition: the attribute named by `key` must match one of `values` (when
/// given) and none of `notValues`. Keys are checked at load time against Istio's list
/// (`request.headers[<name>]`, `source.ip`, `remote.ip`, `source.namespace`,
/// `source.principal`, `source.serviceAccount`, `source.trustDomain`,
/// `request.auth.principal`, `request.auth.audiences`, `request.auth.presenter`,
/// `request.auth.claims[<a>][<b>]…`, `destination.ip`, `destination.port`,
/// `connection.sni`, `experimental.envoy.filters.<filter>[<field>]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthzCondition {
    /// The attribute, as written.
    pub key: String,
    /// Accepted values (normalised as the matching [`AuthzSource`] field is: service
    /// accounts as `<namespace>/<name>`, principals and trust domains with aliases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Refused values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}
