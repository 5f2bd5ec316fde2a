//! The Telemetry API (telemetry.istio.io) as it applies to one proxy: the merged
//! metrics, access-log and tracing settings of its client side (outbound and gateway
//! traffic) and its server side (inbound traffic).

use serde::{Deserialize, Serialize};

/// The metrics Telemetry `metrics[].overrides[].match.metric` names, in Istio's names
/// (`ALL_METRICS` is spread over these).
pub const ISTIO_METRICS: [&str; 10] = [
    "GRPC_REQUEST_MESSAGES",
    "GRPC_RESPONSE_MESSAGES",
    "REQUEST_COUNT",
    "REQUEST_DURATION",
    "REQUEST_SIZE",
    "RESPONSE_SIZE",
    "TCP_CLOSED_CONNECTIONS",
    "TCP_OPENED_CONNECTIONS",
    "TCP_RECEIVED_BYTES",
    "TCP_SENT_BYTES",
];

/// The Telemetry settings of one proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryConfig {
    /// The Telemetry resources that apply (`namespace/name`), in the order they were
    /// merged: the root namespace's, the workload namespace's, then those that select
    /// the workload (oldest first). Later ones win.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<String>,
    /// Outbound and gateway traffic (`mode: CLIENT`).
    #[serde(default, skip_serializing_if = "SideTelemetry::is_default")]
    pub client: SideTelemetry,
    /// Inbound traffic (`mode: SERVER`).
    #[serde(default, skip_serializing_if = "SideTelemetry::is_default")]
    pub server: SideTelemetry,
}

impl TelemetryConfig {
    /// True when no Telemetry changes anything (what the proxy does without one).
    pub fn is_default(&self) -> bool {
        *self == TelemetryConfig::default()
    }
}

/// The settings of one side (client or server) of a proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SideTelemetry {
    /// Istio's standard metrics.
    #[serde(default, skip_serializing_if = "MetricsConfig::is_default")]
    pub metrics: MetricsConfig,
    /// Access logs: `None` when no Telemetry configures them (the proxy's own setting,
    /// from the mesh config or its flags, holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLogConfig>,
    /// Tracing: `None` when no Telemetry configures it. Resolved, not acted on yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingConfig>,
}

impl SideTelemetry {
    /// True when nothing differs from a proxy without Telemetry.
    pub fn is_default(&self) -> bool {
        *self == SideTelemetry::default()
    }
}

/// The Prometheus metrics of one side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricsConfig {
    /// No standard metric is recorded: the `prometheus` provider is not in scope, or an
    /// override disabled `ALL_METRICS`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Changes to single metrics, sorted by metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<MetricOverride>,
}

impl MetricsConfig {
    /// True when every metric is recorded with Istio's labels.
    pub fn is_default(&self) -> bool {
        *self == MetricsConfig::default()
    }

    /// The override of `metric` (an [`ISTIO_METRICS`] name), if any.
    pub fn for_metric(&self, metric: &str) -> Option<&MetricOverride> {
        self.overrides.iter().find(|o| o.metric == metric)
    }
}

/// The merged overrides of one metric.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricOverride {
    /// The metric, in Istio's name (`REQUEST_COUNT`, …).
    pub metric: String,
    /// The metric is not recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Tag changes, sorted by tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<TagChange>,
}

/// One tag change of a metric.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagChange {
    /// The label.
    pub name: String,
    /// `None`: the label is removed; else its value (a CEL expression, as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// The access logs of one side, as Telemetry `accessLogging` merged says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AccessLogConfig {
    /// The providers in scope, sorted by name. None at all: no access log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<AccessLogProvider>,
}

impl AccessLogConfig {
    /// The built-in file provider (`envoy`, Envoy's file access log to standard
    /// output), when it is in scope.
    pub fn file(&self) -> Option<&AccessLogProvider> {
        self.providers
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(ENVOY_PROVIDER))
    }
}

/// The name of the mesh config's built-in file access-log provider.
pub const ENVOY_PROVIDER: &str = "envoy";

/// The name of the mesh config's built-in metrics provider.
pub const PROMETHEUS_PROVIDER: &str = "prometheus";

/// One access-log provider of one side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessLogProvider {
    /// Provider name (`envoy`, …).
    pub name: String,
    /// Switched off by a more specific Telemetry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Only requests for which this CEL expression holds are logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// Tracing settings of one side (merged; no proxy acts on them yet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TracingConfig {
    /// The provider (the first named), if any; without one tracing is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// No spans are reported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Share of requests sampled, 0 to 100 (`None`: the provider's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_sampling_percentage: Option<f64>,
    /// Custom tag names (their definitions stay in the Telemetry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_tags: Vec<String>,
    /// Sampling follows the request id (Istio's default: true).
    pub use_request_id_for_trace_sampling: bool,
    /// Istio's standard span tags (default: true).
    pub enable_istio_tags: bool,
}

// Sampling percentages are validated to lie in [0, 100]: never NaN.
impl Eq for TracingConfig {}

/// The mesh config's access log (`accessLogFile`, `accessLogEncoding`): what a proxy
/// writes where no Telemetry `accessLogging` applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MeshAccessLog {
    /// `accessLogFile`; empty: no access log.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    /// `accessLogEncoding: JSON`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json: bool,
}

impl MeshAccessLog {
    /// The access-log part of a mesh config.
    pub fn of(mesh: &skiff_api::mesh_config::MeshConfig) -> MeshAccessLog {
        MeshAccessLog {
            file: mesh.access_log_file.clone(),
            json: mesh.access_log_encoding == skiff_api::mesh_config::AccessLogEncoding::Json,
        }
    }
}
