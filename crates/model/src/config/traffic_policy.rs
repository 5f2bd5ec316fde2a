//! The resilience half of a DestinationRule's traffic policy, as one cluster runs it:
//! connection-pool limits (Envoy's circuit breakers), outlier detection and consistent
//! hashing. Each part is `None` when the rule does not set it, so a cluster without
//! them carries (and costs) nothing.
//!
//! Values are Istio's, already defaulted where Istio defaults them (see each field); a
//! limit Istio leaves at Envoy's "unlimited" (2³²−1) is `None`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;
use super::duration_opt;

/// `trafficPolicy.connectionPool`, `outlierDetection` and `loadBalancer.consistentHash`
/// of the DestinationRule that applies to a cluster, merged as Istio merges them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// Connection and request limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPool>,
    /// Ejection of failing endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// Session affinity: when set, the cluster balances by this hash instead of
    /// [`super::Cluster::lb`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHash>,
    /// `loadBalancer.warmup` / `warmupDurationSecs`: slow start of new endpoints
    /// (round robin and least request only, as in Envoy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<Warmup>,
    /// Envoy's locality-weighted balancing (`localityLbSetting` with `distribute`, or
    /// with explicit failover settings under outlier detection): within a priority,
    /// the proxy picks a locality by weight first, then an endpoint in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality_weighted: Option<LocalityWeighted>,
}

/// Locality weights of a cluster, by [`super::Endpoint::locality`]. A locality not
/// listed weighs the sum of its endpoints' weights. Within a priority, a locality's
/// weight is scaled by its health as Envoy does: by `min(1, 1.4 × healthy / total)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LocalityWeighted {
    /// The weights `distribute` gives.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub weights: std::collections::BTreeMap<String, u32>,
}

/// Envoy's slow start: an endpoint younger than `window` has its weight scaled by
/// `max(minimum_percent, (age / window)^(1 / aggression))`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Warmup {
    /// The slow-start window.
    #[serde(with = "duration")]
    pub window: Duration,
    /// `minimumPercent` (10): the least share of its weight a new endpoint gets.
    pub minimum_percent: u32,
    /// `aggression` (1.0), in thousandths: above 1 ramps up faster at first.
    pub aggression_milli: u32,
}

impl TrafficPolicy {
    /// True when nothing is set (the serialized cluster leaves it out).
    pub fn is_empty(&self) -> bool {
        *self == TrafficPolicy::default()
    }
}

/// `connectionPool`: limits per cluster and per proxy. A request over a limit is
/// answered `503` with flag `UO` at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionPool {
    /// `tcp.maxConnections`: upstream connections open at once, over all endpoints.
    /// A request that needs a new connection beyond it waits as pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// `http.http1MaxPendingRequests`: requests waiting for a connection at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    /// `http.http2MaxRequests`: requests in flight at once (HTTP/1.1 and HTTP/2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    /// `http.maxRetries`: retries in flight at once; a retry beyond it is not made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// `http.maxRequestsPerConnection`: a connection is closed after this many requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u32>,
    /// `http.idleTimeout` (else `tcp.idleTimeout`, as Istio falls back to it for HTTP
    /// clusters): an upstream connection without a request in flight this long is
    /// closed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_opt"
    )]
    pub idle_timeout: Option<Duration>,
    /// `tcp.idleTimeout`: an opaque TCP connection with no byte either way for this long
    /// is closed; `None` when not set (Envoy's TCP proxy default, 1 hour, applies),
    /// zero when set to `0s` (no idle timeout).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_opt"
    )]
    pub tcp_idle_timeout: Option<Duration>,
    /// `tcp.maxConnectionDuration`: a connection older than this takes no new request.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_opt"
    )]
    pub max_connection_duration: Option<Duration>,
    /// `tcp.tcpKeepalive`: keepalive probes on upstream sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// `http.h2UpgradePolicy: UPGRADE`: an HTTP/1.1 port is spoken to in HTTP/2.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub h2_upgrade: bool,
    /// `http.useClientProtocol`: the upstream is spoken to in the protocol the
    /// downstream used (HTTP/1.1 stays HTTP/1.1, HTTP/2 stays HTTP/2).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_client_protocol: bool,
    /// `http.maxConcurrentStreams`: streams at once on one upstream HTTP/2 connection;
    /// beyond it another connection is opened (within `maxConnections`). Only on
    /// clusters of an `http2`/`grpc` port without `useClientProtocol`, as Istio sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<u32>,
}

/// `tcp.tcpKeepalive`. Unset values keep the operating system's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TcpKeepalive {
    /// Probes without answer before the connection is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<u32>,
    /// Idle time before the first probe.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_opt"
    )]
    pub time: Option<Duration>,
    /// Time between probes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_opt"
    )]
    pub interval: Option<Duration>,
}

/// `outlierDetection`, with Istio's and Envoy's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// `consecutive5xxErrors` (Envoy's default 5 when unset; `0` disables it).
    pub consecutive_5xx: u32,
    /// `consecutiveGatewayErrors` (502, 503, 504); `0` (the default) disables it.
    pub consecutive_gateway: u32,
    /// `consecutiveLocalOriginFailures`, counted only with
    /// [`Self::split_local_origin`]; `0` disables it (Istio's reading of unset).
    pub consecutive_local_origin: u32,
    /// `splitExternalLocalOriginErrors`: connect failures, resets and timeouts count
    /// apart from the upstream's 5xx responses. Without it they count as a 503 (504 for
    /// a timeout).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub split_local_origin: bool,
    /// `interval`: how often ejected endpoints are checked for return (10s).
    #[serde(with = "duration")]
    pub interval: Duration,
    /// `baseEjectionTime` (30s): an endpoint is ejected for this times the number of
    /// its recent ejections, at most [`Self::max_ejection_time`].
    #[serde(with = "duration")]
    pub base_ejection_time: Duration,
    /// Envoy's `max_ejection_time` (300s, or the base time when larger); Istio does
    /// not expose it.
    #[serde(with = "duration")]
    pub max_ejection_time: Duration,
    /// `maxEjectionPercent` (Envoy's 10 when unset): no ejection once this share of the
    /// endpoints is ejected.
    pub max_ejection_percent: u32,
    /// `minHealthPercent` (0): below this share of healthy endpoints the proxy balances
    /// over all of them, ejected or not (Envoy's panic mode); 0 never panics.
    pub min_health_percent: u32,
}

/// `loadBalancer.consistentHash`: what is hashed, and how the hash picks an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHash {
    /// The request attribute hashed.
    pub key: HashKey,
    /// The table the hash is looked up in.
    pub algorithm: HashAlgorithm,
}

/// The request attribute a consistent hash reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HashKey {
    /// `httpHeaderName` (lower case).
    Header(String),
    /// `httpCookie`: the cookie's value; when absent and a `ttl` is given, the proxy
    /// makes one up and sets it on the response.
    Cookie(HashCookie),
    /// `useSourceIp`: the downstream's address.
    SourceIp,
    /// `httpQueryParameterName`.
    QueryParameter(String),
}

/// `consistentHash.httpCookie`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HashCookie {
    /// Cookie name.
    pub name: String,
    /// Path of a generated cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Lifetime of a generated cookie; `None`: no cookie is generated (as Envoy);
    /// zero: a session cookie.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_opt"
    )]
    pub ttl: Option<Duration>,
}

/// How a hash is mapped to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HashAlgorithm {
    /// `ringHash` with its `minimumRingSize` (Envoy's default 1024).
    RingHash {
        /// Entries on the ring, at least.
        minimum_ring_size: u64,
    },
    /// `maglev` with its `tableSize` (65537; a prime).
    Maglev {
        /// Entries in the lookup table.
        table_size: u64,
    },
}

/// Envoy's default minimum ring size.
pub const DEFAULT_RING_SIZE: u64 = 1024;
/// Envoy's default Maglev table size.
pub const DEFAULT_MAGLEV_TABLE_SIZE: u64 = 65537;
