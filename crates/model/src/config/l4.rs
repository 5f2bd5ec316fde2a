//! Conditions of TCP and TLS routes that the proxy checks per connection.
//!
//! A VirtualService `tcp` or `tls` match has static parts (`port`, `sourceLabels`,
//! `sourceNamespace`, `gateways`), which the compiler settles per proxy, and runtime
//! parts, which stay in the config: the destination address (`destinationSubnets`) and,
//! for TLS, the server name of the ClientHello (`sniHosts`).

use serde::{Deserialize, Serialize};

/// One alternative of a TCP or TLS route's match: every condition set must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct L4Match {
    /// The destination address must be in one of these blocks (`10.1.0.0/16`, or an
    /// address alone). Empty: any destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<String>,
    /// The ClientHello's server name must be one of these, lower-case: an exact name,
    /// `*.example.com` (any name ending in `.example.com`), or `*`. Empty: any (and no
    /// TLS is required).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sni_hosts: Vec<String>,
}

impl L4Match {
    /// True when the alternative has no runtime condition.
    pub fn is_empty(&self) -> bool {
        self.destination_subnets.is_empty() && self.sni_hosts.is_empty()
    }
}

/// Whether a server name matches an `sniHosts` entry the way Envoy's filter chain
/// `server_names` do: exactly, or `*.suffix` for any name ending in `.suffix`, or `*`.
pub fn sni_matches(pattern: &str, name: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => {
            let name = name.as_bytes();
            suffix.starts_with('.')
                && name.len() > suffix.len()
                && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
        }
        None => pattern.eq_ignore_ascii_case(name),
    }
}

/// What a sidecar does with traffic to a destination no service of its registry covers
/// (MeshConfig / Sidecar `outboundTrafficPolicy.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundTrafficPolicy {
    /// Refuse it, as Istio's `block_all` route and `BlackHoleCluster` do: HTTP gets
    /// `502`, a tunnel is refused. The zero value of a hand-written config; the model
    /// sets Istio's default, [`OutboundTrafficPolicy::AllowAny`], unless told otherwise.
    #[default]
    RegistryOnly,
    /// Pass it through to the destination it was sent to (`PassthroughCluster`): the
    /// request's authority, or the tunnel's `host:port`, resolved by DNS at the proxy.
    AllowAny,
}

impl OutboundTrafficPolicy {
    /// True for [`OutboundTrafficPolicy::RegistryOnly`].
    pub fn is_registry_only(&self) -> bool {
        *self == OutboundTrafficPolicy::RegistryOnly
    }
}
