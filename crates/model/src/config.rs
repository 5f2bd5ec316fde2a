//! The compiled, per-proxy configuration: what the control plane pushes and what a
//! proxy runs.
//!
//! These types are the contract between `skiff control` (which produces them with
//! [`crate::Mesh::compile`]) and `skiff proxy` (which turns them into listeners, route tables
//! and upstream pools). They are plain values: serializable (the wire carries them and
//! `/config_dump` shows them), comparable (an unchanged proxy gets no push), and
//! deterministic (the same input always gives byte-identical output).
//!
//! Naming follows Envoy where the idea is the same, so people who know Istio can read a
//! config dump: clusters are named `outbound|<port>|<subset>|<fqdn>`, routes hold
//! virtual hosts whose `domains` are the names an app may use for a service.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

mod authz;
mod duration;
mod duration_opt;
mod gateway_tls;
mod http_route;
mod jwt;
mod l4;
mod pieces;
mod policy;
mod security;
mod telemetry;
mod traffic_policy;

pub use authz::{AuthzAction, AuthzCondition, AuthzOperation, AuthzPolicy, AuthzRule, AuthzSource};
pub use gateway_tls::{ServerTls, ServerTlsMode};
pub use http_route::{
    CorsPolicy, DestinationHeaders, HeaderOps, HeaderRules, HttpRoutePolicy, Mirror, RegexRewrite,
};
pub use jwt::{ClaimToHeader, DEFAULT_JWKS_TIMEOUT, JwtHeader, JwtRule};
pub use l4::{L4Match, OutboundTrafficPolicy, sni_matches};
pub use pieces::{
    EndpointsPiece, MESH_PIECE, MeshPiece, PieceError, PortPiece, SharedPiece, VirtualHostPiece,
    is_endpoints_piece,
};
pub use policy::{MtlsMode, MtlsPolicy, Policies};
pub use security::{ClusterTls, IstioMutual, TlsOrigination};
pub use telemetry::{
    AccessLogConfig, AccessLogProvider, DEFAULT_SAMPLING_PERCENTAGE, ENVOY_PROVIDER, ISTIO_METRICS,
    MeshAccessLog, MeshTracing, MetricOverride, MetricsConfig, PROMETHEUS_PROVIDER, SideTelemetry,
    SpanTag, SpanTagValue, TagChange, TelemetryConfig, TracingConfig,
};
pub use traffic_policy::{
    ConnectionPool, ConsistentHash, DEFAULT_MAGLEV_TABLE_SIZE, DEFAULT_RING_SIZE, HashAlgorithm,
    HashCookie, HashKey, LocalityWeighted, OutlierDetection, TcpKeepalive, TrafficPolicy, Warmup,
};

/// Everything one proxy needs to serve traffic. One value per proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    /// Who this proxy is.
    pub node: Node,
    /// Outbound traffic: what the app beside this proxy may call, by destination port.
    /// Sorted by port.
    pub outbound: Vec<OutboundPort>,
    /// Inbound traffic: the ports of this workload that other proxies may reach.
    /// Sorted by port. Empty for gateways.
    pub inbound: Vec<InboundPort>,
    /// Gateway listeners (only for gateway proxies), from `Gateway` servers whose
    /// selector matches this proxy. Sorted by port.
    pub gateway: Vec<GatewayPort>,
    /// The upstream clusters the routes above refer to, sorted by name.
    pub clusters: Vec<Cluster>,
    /// Security policies that apply to this workload, compiled for the proxy to enforce.
    #[serde(default)]
    pub policies: Policies,
    /// Fault injection (VirtualService `fault`), by [`Route::name`]: a rule keeps its
    /// name in every virtual host it is compiled into, so one entry covers them all.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub faults: std::collections::BTreeMap<String, Fault>,
    /// Header rules, mirrors and CORS (VirtualService `headers`, `mirror(s)`,
    /// `corsPolicy`), by [`Route::name`] as `faults`; routes without any have no entry.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub http_policies: std::collections::BTreeMap<String, HttpRoutePolicy>,
    /// Clusters that routes name but that do not exist (an unknown host, or a subset
    /// no DestinationRule defines), with the reason in words. They are not in
    /// `clusters`; a request routed to one gets `503 NC` saying why, as Envoy answers
    /// for a cluster istiod did not generate.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub missing_clusters: std::collections::BTreeMap<String, String>,
    /// Traffic to destinations no service covers: passed through or refused.
    #[serde(
        default,
        skip_serializing_if = "OutboundTrafficPolicy::is_registry_only"
    )]
    pub outbound_traffic_policy: OutboundTrafficPolicy,
    /// The telemetry labels ([`TELEMETRY_LABELS`]) of every workload an endpoint of
    /// `clusters` belongs to, by [`Endpoint::workload`]: what the proxy reports as
    /// `destination_app`, `destination_version` and the canonical service and revision.
    /// Workloads without any such label have no entry.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub workload_labels:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// The Telemetry resources that apply to this workload, merged as Istio merges
    /// them: metrics, access logs and tracing of each side.
    #[serde(default, skip_serializing_if = "TelemetryConfig::is_default")]
    pub telemetry: TelemetryConfig,
    /// The mesh config's access log, when the control plane read a mesh config
    /// (`None`: the proxy's own flags decide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_access_log: Option<MeshAccessLog>,
}

/// The part of a [`ProxyConfig`] that depends only on what the proxy sees of the mesh:
/// outbound listeners, the clusters they name and what goes with their routes.
/// Proxies with the same view (sidecars of one namespace, replicas of one gateway)
/// have equal shared parts: the control plane keeps and encodes one copy for all of
/// them and sends it as its own resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SharedConfig {
    /// [`ProxyConfig::outbound`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<OutboundPort>,
    /// [`ProxyConfig::clusters`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<Cluster>,
    /// [`ProxyConfig::faults`].
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub faults: std::collections::BTreeMap<String, Fault>,
    /// [`ProxyConfig::http_policies`].
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub http_policies: std::collections::BTreeMap<String, HttpRoutePolicy>,
    /// [`ProxyConfig::missing_clusters`].
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub missing_clusters: std::collections::BTreeMap<String, String>,
    /// [`ProxyConfig::outbound_traffic_policy`].
    #[serde(
        default,
        skip_serializing_if = "OutboundTrafficPolicy::is_registry_only"
    )]
    pub outbound_traffic_policy: OutboundTrafficPolicy,
    /// [`ProxyConfig::workload_labels`].
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub workload_labels:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

/// A proxy's configuration as the control plane holds it: the proxy's own part (a
/// [`ProxyConfig`] whose shared fields are empty) and the shared part, which other
/// proxies may hold too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyParts {
    /// Node, inbound ports, gateway listeners, policies, telemetry.
    pub own: ProxyConfig,
    /// Everything [`SharedConfig`] holds.
    pub shared: std::sync::Arc<SharedConfig>,
}

impl ProxyParts {
    /// The whole configuration again. The shared part is moved when this was its
    /// last holder, else copied.
    pub fn join(self) -> ProxyConfig {
        let shared = std::sync::Arc::unwrap_or_clone(self.shared);
        ProxyConfig {
            outbound: shared.outbound,
            clusters: shared.clusters,
            faults: shared.faults,
            http_policies: shared.http_policies,
            missing_clusters: shared.missing_clusters,
            outbound_traffic_policy: shared.outbound_traffic_policy,
            workload_labels: shared.workload_labels,
            ..self.own
        }
    }
}

impl From<ProxyConfig> for ProxyParts {
    /// Splits a configuration into its own and shared parts.
    fn from(mut config: ProxyConfig) -> Self {
        let shared = SharedConfig {
            outbound: std::mem::take(&mut config.outbound),
            clusters: std::mem::take(&mut config.clusters),
            faults: std::mem::take(&mut config.faults),
            http_policies: std::mem::take(&mut config.http_policies),
            missing_clusters: std::mem::take(&mut config.missing_clusters),
            outbound_traffic_policy: std::mem::take(&mut config.outbound_traffic_policy),
            workload_labels: std::mem::take(&mut config.workload_labels),
        };
        ProxyParts {
            own: config,
            shared: std::sync::Arc::new(shared),
        }
    }
}

/// The workload labels Istio's standard metrics read: `app` and `version`, and the
/// canonical service and revision with their fallbacks.
pub const TELEMETRY_LABELS: [&str; 6] = [
    "app",
    "version",
    "service.istio.io/canonical-name",
    "service.istio.io/canonical-revision",
    "app.kubernetes.io/name",
    "app.kubernetes.io/version",
];

/// VirtualService `fault`: a delay and an abort, each applied to its own share of
/// requests (independently), before the request goes upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// Wait before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    /// Answer at once with an error status instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

/// `fault.delay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultDelay {
    /// How long (`fixedDelay`).
    #[serde(with = "duration")]
    pub fixed_delay: std::time::Duration,
    /// Share of requests delayed, in millionths (`percentage.value` × 10 000; Istio: an
    /// unset percentage delays no request).
    pub per_million: u32,
}

/// `fault.abort`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultAbort {
    /// The status answered (`httpStatus`; 200 for a `grpcStatus` abort, as Envoy
    /// answers those).
    pub http_status: u16,
    /// `grpcStatus`, as its numeric code: a gRPC request gets a trailers-only answer
    /// with this `grpc-status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u8>,
    /// Share of requests aborted, in millionths (as [`FaultDelay::per_million`]).
    pub per_million: u32,
}

/// The identity and placement of a proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Proxy id: `<workload name>.<namespace>`, e.g. `backend-v1.prod`.
    pub id: String,
    /// Workload name (WorkloadEntry or Pod name).
    pub name: String,
    /// Namespace of the workload.
    pub namespace: String,
    /// Sidecar or gateway.
    pub kind: ProxyKind,
    /// The workload's address (its own loopback address in local mode, the pod IP in a
    /// cluster). The proxy binds its listeners on it.
    pub address: Option<IpAddr>,
    /// Workload labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Kubernetes service account (defaults to `default`).
    pub service_account: String,
    /// SPIFFE id: `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
    pub spiffe_id: String,
    /// The workload's locality, `region/zone/subzone` (empty when unknown): the one its
    /// clusters' locality priorities and weights were computed from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub locality: String,
}

/// What kind of proxy a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum ProxyKind {
    /// Beside one workload; captures its outbound and inbound traffic.
    #[default]
    Sidecar,
    /// An ingress or egress gateway: serves `Gateway` servers.
    Gateway,
}

/// The application protocol of a port, from its name prefix or `appProtocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Protocol {
    /// HTTP/1.1 (and h2c when the client asks for it).
    Http,
    /// HTTP/2 (`http2` prefix): upstream connections use HTTP/2.
    Http2,
    /// gRPC: HTTP/2 upstream.
    Grpc,
    /// Opaque TCP: no L7 features.
    Tcp,
    /// TLS passed through (routed by SNI).
    Tls,
    /// HTTPS terminated at a gateway, or passed through by a sidecar.
    Https,
    /// No protocol declared: the proxy sniffs the first bytes (HTTP/1.x, h2 preface)
    /// and falls back to TCP.
    Unspecified,
}

impl Protocol {
    /// True for protocols the proxy routes at L7.
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Http2 | Protocol::Grpc)
    }
}

/// The outbound routes for one destination port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundPort {
    /// Destination (service) port, e.g. 80.
    pub port: u16,
    /// Protocol of this port. When services disagree on one port, HTTP wins if any
    /// declares it (as Istio does), and the disagreement is a diagnostic.
    pub protocol: Protocol,
    /// Virtual hosts, in order. A request's authority is matched against `domains`:
    /// exact names first, then the longest wildcard suffix, then `*`.
    pub virtual_hosts: Vec<VirtualHost>,
    /// For TCP ports: the route for opaque traffic to this port.
    pub tcp: Vec<TcpRoute>,
}

/// A set of names that share one route table, as in Envoy's RDS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualHost {
    /// Name for humans: the service FQDN and port, e.g. `backend.prod.svc.cluster.local:80`.
    pub name: String,
    /// Names that select this virtual host, lower-case, with and without the port:
    /// `backend`, `backend:80`, `backend.prod`, `backend.prod.svc`,
    /// `backend.prod.svc.cluster.local`, … (short names only from the same namespace,
    /// as Kubernetes DNS resolves them). `*.example.com` and `*` are wildcards.
    pub domains: Vec<String>,
    /// Routes in order: the first whose match holds wins.
    pub routes: Vec<Route>,
}

/// One HTTP route: from a VirtualService `http` rule, or the default route of a
/// service that no VirtualService covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// `<namespace>/<virtualservice>/<rule index or name>`, or `default` for the
    /// implicit route to the service itself.
    pub name: String,
    /// Alternatives: the route applies when any one of them holds. Empty means
    /// "matches every request".
    pub matches: Vec<RouteMatch>,
    /// What to do with a matching request.
    pub action: RouteAction,
    /// Whole-request timeout (VirtualService `timeout`). `None` means no timeout
    /// (Istio's default for HTTP routes).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_opt"
    )]
    pub timeout: Option<std::time::Duration>,
}

/// One alternative of a route's match: every condition must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    /// Match on the path (without the query string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    /// Match on the method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// Match on the scheme (`http`, `https`) of the request URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatch>,
    /// Match on the authority (Host header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatch>,
    /// Match on headers: lower-case name and condition. All must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
    /// Headers that must be absent or not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub without_headers: Vec<HeaderMatch>,
    /// Query parameters that must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<HeaderMatch>,
    /// Only requests to this destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Compare `uri` ignoring ASCII case (`ignoreUriCase`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_uri_case: bool,
}

/// A named header (or query parameter) condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderMatch {
    /// Header name in lower case (or the query parameter name).
    pub name: String,
    /// The condition on its value.
    pub value: StringMatch,
}

/// Istio's StringMatch. Regexes use RE2 syntax and must match the whole value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    /// The value equals this string.
    Exact(String),
    /// The value starts with this string.
    Prefix(String),
    /// The whole value matches this regular expression.
    Regex(String),
    /// Header present, any value (`{}` in a VirtualService header match).
    Present,
}

/// What a route does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RouteAction {
    /// Send to one of these destinations, chosen by weight.
    Forward(Forward),
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer directly with a status and body.
    DirectResponse {
        /// HTTP status.
        status: u16,
        /// Body, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
}

/// Weighted forwarding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Forward {
    /// Destinations with their weights. Weights are normalised so they sum to 100
    /// (a single destination gets 100).
    pub destinations: Vec<WeightedCluster>,
    /// Retry policy, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryPolicy>,
    /// Rewrite of the path prefix or authority before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
}

/// One weighted destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightedCluster {
    /// Name of a [`Cluster`] in [`ProxyConfig::clusters`].
    pub cluster: String,
    /// Relative weight, 0–100.
    pub weight: u32,
}

/// VirtualService `retries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Number of retries (not counting the first try).
    pub attempts: u32,
    /// Timeout per try, if set.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_opt"
    )]
    pub per_try_timeout: Option<std::time::Duration>,
    /// Conditions, as Istio spells them (`5xx`, `gateway-error`, `reset`,
    /// `connect-failure`, `retriable-4xx`, …, or status codes).
    pub retry_on: Vec<String>,
    /// Base interval of the jittered exponential back-off between tries (`backoff`);
    /// `None` is Envoy's default of 25 ms. The longest wait is ten times the base.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_opt"
    )]
    pub backoff: Option<std::time::Duration>,
}

/// VirtualService `rewrite`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Rewrite {
    /// Replace the matched path prefix with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Replace the authority with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// `uriRegexRewrite`: every match of the pattern in the path is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// VirtualService `redirect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Redirect {
    /// New path, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// New authority, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// New scheme, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// New port, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Status code (Istio's default is 301).
    pub status: u16,
}

/// Route for opaque TCP traffic on an outbound port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpRoute {
    /// Name for humans: the service FQDN and port, or the VirtualService rule.
    pub name: String,
    /// Names that select this route when the destination is known by name (a `CONNECT
    /// host:port` tunnel in explicit mode), in the same form as [`VirtualHost::domains`].
    /// Empty: the route takes any name (the first such route wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Where the bytes go, chosen by weight per connection.
    pub destinations: Vec<WeightedCluster>,
    /// Runtime conditions (VirtualService `tcp`/`tls` matches): the route applies when
    /// any one holds. Empty: always.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<L4Match>,
}

/// A port of this workload that other proxies reach through the inbound listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundPort {
    /// The port the app listens on (a Service's `targetPort`, or the service port when
    /// no target port is given).
    pub target_port: u16,
    /// Protocol, from the Service port.
    pub protocol: Protocol,
    /// The services (FQDN:port) that reach this workload port; for telemetry and
    /// `describe`.
    pub services: Vec<String>,
    /// Mutual TLS required of callers on this port: the workload's PeerAuthentication
    /// mode, or its `portLevelMtls` entry for this port. STRICT refuses plain text,
    /// DISABLE refuses mutual TLS, PERMISSIVE takes both.
    #[serde(default)]
    pub mtls: MtlsMode,
}

/// A gateway listener (from `Gateway.servers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayPort {
    /// The server's port number, as written in the Gateway.
    pub port: u16,
    /// Server protocol.
    pub protocol: Protocol,
    /// `<namespace>/<gateway name>` of the Gateways that open this port.
    pub gateways: Vec<String>,
    /// Virtual hosts from VirtualServices bound to those gateways, one per host name
    /// the servers allow.
    pub virtual_hosts: Vec<VirtualHost>,
    /// For TCP servers, the `tcp` routes of the VirtualServices bound to the gateways;
    /// for TLS `PASSTHROUGH` servers, their `tls` routes (by SNI). In order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpRoute>,
    /// TLS the port terminates (servers in `SIMPLE`, `MUTUAL` or `OPTIONAL_MUTUAL`
    /// mode), chosen by the ClientHello's server name. Empty: the port is plain (or
    /// passes TLS through).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<ServerTls>,
}

/// An upstream: a service port, optionally narrowed to a subset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// `outbound|<port>|<subset>|<fqdn>` (subset empty when none).
    pub name: String,
    /// Service FQDN.
    pub service: String,
    /// Service port.
    pub port: u16,
    /// Subset name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Protocol used to talk to the upstream.
    pub protocol: Protocol,
    /// Load-balancing policy.
    pub lb: LbPolicy,
    /// Endpoints, sorted by address. May be empty (then requests fail with 503 UH).
    pub endpoints: Vec<Endpoint>,
    /// TCP connect timeout (DestinationRule `connectionPool.tcp.connectTimeout`;
    /// Istio's default is 10s).
    #[serde(with = "duration")]
    pub connect_timeout: std::time::Duration,
    /// TLS towards the endpoints, from the DestinationRule's `tls` (subset port level,
    /// subset, rule port level, rule); [`ClusterTls::Auto`] (left out when serialized)
    /// when none is set.
    #[serde(default, skip_serializing_if = "ClusterTls::is_auto")]
    pub tls: ClusterTls,
    /// Connection-pool limits, outlier detection and consistent hashing from the
    /// DestinationRule (left out when serialized when none is set).
    #[serde(default, skip_serializing_if = "TrafficPolicy::is_empty")]
    pub traffic: TrafficPolicy,
}

impl Cluster {
    /// The name of the cluster for a service port and optional subset:
    /// `outbound|<port>|<subset>|<fqdn>`.
    pub fn name_for(port: u16, subset: Option<&str>, fqdn: &str) -> String {
        let subset = subset.unwrap_or("");
        let port = port.to_string();
        let mut name = String::with_capacity(12 + port.len() + subset.len() + fqdn.len());
        for part in ["outbound|", &port, "|", subset, "|", fqdn] {
            name.push_str(part);
        }
        name
    }
}

/// DestinationRule `loadBalancer.simple`, the subset skiff implements today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LbPolicy {
    /// Round robin (Istio's documented default behaviour for sidecars is
    /// LEAST_REQUEST; ROUND_ROBIN when asked).
    RoundRobin,
    /// Pick the less loaded of two random endpoints.
    #[default]
    LeastRequest,
    /// Uniformly random.
    Random,
    /// `PASSTHROUGH`: no balancing; each request goes to the destination the app
    /// addressed (Envoy's original-destination cluster).
    Passthrough,
}

/// One upstream endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The workload's address and target port: where the app listens.
    pub address: SocketAddr,
    /// When the workload has a sidecar: the port of its inbound listener on the same
    /// address. The calling proxy then connects there and names the target port in
    /// a transport header, instead of reaching the app directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_port: Option<u16>,
    /// `<name>.<namespace>` of the workload, for logs and `describe`.
    pub workload: String,
    /// Load-balancing weight (WorkloadEntry `weight`, default 1).
    pub weight: u32,
    /// The workload's identity, `spiffe://<trust domain>/ns/<namespace>/sa/<service
    /// account>`: what its certificate must carry when the client uses mutual TLS.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub spiffe_id: String,
    /// A sidecar that terminates mesh traffic runs beside the workload (then
    /// `proxy_port` is set).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sidecar: bool,
    /// The client uses Istio mutual TLS to this endpoint. Decided by the model for the
    /// cluster's [`Cluster::tls`]: always under `ISTIO_MUTUAL`, never under `DISABLE`,
    /// `SIMPLE` or `MUTUAL`; under auto mutual TLS when the endpoint has a sidecar and
    /// its PeerAuthentication mode for the endpoint port is not DISABLE (and the service
    /// is in the mesh and its namespace is not DISABLE).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mtls: bool,
    /// A ServiceEntry endpoint (or host) with `resolution: DNS` or `DNS_ROUND_ROBIN`:
    /// the proxy resolves this name and connects to what it finds (then `address`
    /// holds only the port, with the unspecified IP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsLookup>,
    /// The workload's locality, `region/zone/subzone` (empty when unknown).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub locality: String,
    /// Envoy's priority (locality failover, `failoverPriority`): requests go to
    /// priority 0 while it is healthy enough, the overflow to 1, and so on.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A name the proxy resolves to endpoints, as Envoy's DNS clusters do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsLookup {
    /// The host name.
    pub name: String,
    /// `resolution: DNS` (Envoy's `STRICT_DNS`): every address the name resolves to
    /// is an endpoint. `false` for `DNS_ROUND_ROBIN` (`LOGICAL_DNS`): only the first.
    pub all: bool,
}
