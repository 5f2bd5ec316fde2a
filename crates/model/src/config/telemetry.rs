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
    /// Tracing: `None` when no Telemetry configures it and the mesh config names no
    /// default tracing provider (then the proxy makes no spans and leaves trace
    /// headers alone).
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

/// Tracing settings of one side, merged from the Telemetry resources and resolved
/// against the mesh config (its `extensionProviders` and `defaultConfig.tracing`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TracingConfig {
    /// The provider (the first named, else the mesh config's
    /// `defaultProviders.tracing`), if any; without one tracing is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Where spans go: the OTLP/gRPC collector (`host:port`) of the provider's
    /// `opentelemetry` entry in the mesh config's `extensionProviders`. `None`: the
    /// provider is not an OpenTelemetry one the mesh config defines, and no span is
    /// made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<String>,
    /// No spans are reported (`disableSpanReporting`); trace context is still
    /// forwarded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Share of requests sampled, 0 to 100 (`None`: the mesh config's
    /// `defaultConfig.tracing.sampling`, else Istio's 1%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_sampling_percentage: Option<f64>,
    /// Custom tags, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_tags: Vec<SpanTag>,
    /// Sampling follows the request id (Istio's default: true): every proxy a request
    /// passes draws the same decision from its `x-request-id`.
    pub use_request_id_for_trace_sampling: bool,
    /// Istio's standard span tags (default: true).
    pub enable_istio_tags: bool,
}

impl TracingConfig {
    /// The share of requests sampled, in hundredths of a percent (0 to 10 000).
    pub fn sampling_per_10000(&self) -> u32 {
        let p = self
            .random_sampling_percentage
            .unwrap_or(DEFAULT_SAMPLING_PERCENTAGE);
        (p.clamp(0.0, 100.0) * 100.0).round() as u32
    }
}

/// Istio's default `randomSamplingPercentage` (MeshConfig
/// `defaultConfig.tracing.sampling`).
pub const DEFAULT_SAMPLING_PERCENTAGE: f64 = 1.0;

/// One custom span tag (Telemetry `tracing.customTags`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpanTag {
    /// The tag's name.
    pub name: String,
    /// Where its value comes from.
    pub value: SpanTagValue,
}

/// Where a custom span tag's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SpanTagValue {
    /// A fixed value.
    Literal(String),
    /// An environment variable of the proxy, or `default` when unset.
    Environment {
        /// The variable.
        name: String,
        /// The value when it is unset (no tag when `None`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default: Option<String>,
    },
    /// A request header, or `default` when absent.
    Header {
        /// The header (lower case).
        name: String,
        /// The value when it is absent (no tag when `None`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default: Option<String>,
    },
}

/// The mesh config's tracing settings: its OpenTelemetry providers, the default
/// tracing providers and the default sampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MeshTracing {
    /// `extensionProviders[].opentelemetry`: collector (`service:port`) by provider name.
    #[serde(default)]
    pub collectors: std::collections::BTreeMap<String, String>,
    /// `defaultProviders.tracing`: the providers of workloads no Telemetry names one for.
    #[serde(default)]
    pub default_providers: Vec<String>,
    /// `defaultConfig.tracing.sampling`.
    #[serde(default)]
    pub sampling: Option<f64>,
}

// Validated to lie in [0, 100] where read: never NaN.
impl Eq for MeshTracing {}

impl MeshTracing {
    /// The tracing part of a mesh config.
    pub fn of(mesh: &skiff_api::mesh_config::MeshConfig) -> MeshTracing {
        MeshTracing {
            collectors: mesh
                .extension_providers
                .iter()
                .filter_map(|p| {
                    let o = p.opentelemetry.as_ref()?;
                    Some((p.name.clone(), format!("{}:{}", o.service, o.port)))
                })
                .collect(),
            default_providers: mesh.default_tracing_providers.clone(),
            sampling: mesh.default_tracing_sampling,
        }
    }
}

impl TelemetryConfig {
    /// Resolves each side's tracing against the mesh config: the default provider
    /// where no Telemetry names one, the provider's collector, the default sampling.
    pub fn resolve_tracing(&mut self, mesh: &MeshTracing) {
        for side in [&mut self.client, &mut self.server] {
            if side.tracing.is_none() && !mesh.default_providers.is_empty() {
                side.tracing = Some(TracingConfig {
                    use_request_id_for_trace_sampling: true,
                    enable_istio_tags: true,
                    ..TracingConfig::default()
                });
            }
            let Some(t) = &mut side.tracing else { continue };
            if t.provider.is_none() {
                t.provider = mesh.default_providers.first().cloned();
            }
            t.collector = t
                .provider
                .as_ref()
                .and_then(|p| mesh.collectors.get(p))
                .cloned();
            if t.random_sampling_percentage.is_none() {
                t.random_sampling_percentage = mesh.sampling;
            }
        }
    }
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
