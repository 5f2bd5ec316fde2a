//! Telemetry (telemetry.istio.io) resources, and Istio's rules for which of them apply
//! to a workload and how they merge (`pilot/pkg/model/telemetry.go`).
//!
//! Which apply, in merge order (later wins): the oldest Telemetry of the root namespace
//! without a selector or targetRef; the oldest of the workload's namespace without one
//! (when that is not the root namespace); then every Telemetry of the workload's
//! namespace whose selector matches the workload or whose targetRef(s) name its Gateway
//! API gateway, oldest first.
//!
//! How they merge, field by field:
//! - `metrics`: the providers are those of the last entry that names any (default:
//!   `prometheus`, as Istio's installation sets `defaultProviders.metrics`); an entry
//!   without providers applies to its parent's. Overrides are applied in order on top
//!   of each other, per metric and per mode: `disabled` is replaced when set, tags are
//!   replaced one by one. `ALL_METRICS` with `disabled: true` turns the side's metrics
//!   off until a later override of that mode turns some on.
//! - `accessLogging`: per mode; the providers are those named by the last level that
//!   names any for that mode; an entry without providers applies to its parent's; the
//!   filter of a provider is the one of the last entry that names it; `disabled`
//!   switches a provider off. When nothing remains, the proxy's own access-log setting
//!   holds, as Istio falls back to the mesh config's `accessLogFile`.
//! - `tracing`: per mode, each field replaced by the last entry that sets it; the
//!   provider is the first one named (else the mesh config's default, resolved with
//!   its collector at compile time, `TelemetryConfig::resolve_tracing`).

use std::collections::{BTreeMap, BTreeSet};

use skiff_api::telemetry::{
    AccessLogging, IstioMetric, Metrics, ProviderRef, TagOperation, Telemetry, Tracing,
    WorkloadMode,
};
use skiff_api::types::Timestamp;
use skiff_api::{Resource, ResourceSet};

use crate::config::{
    AccessLogConfig, AccessLogProvider, ENVOY_PROVIDER, ISTIO_METRICS, MetricOverride,
    MetricsConfig, PROMETHEUS_PROVIDER, SideTelemetry, SpanTag, SpanTagValue, TagChange,
    TelemetryConfig, TracingConfig,
};
use crate::diagnostic::{Code, Findings, Severity};
use crate::registry::{Labels, Registry, labels_match};
use crate::rules::policy::GATEWAY_NAME_LABEL;

/// The Telemetry resources of the mesh, in Istio's order (oldest first).
#[derive(Debug, Clone, Default)]
pub struct TelemetryIndex {
    entries: Vec<Entry>,
    root_namespace: String,
}

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    namespace: String,
    selector: Option<Labels>,
    /// With `targetRef(s)`: the Gateway API gateways named.
    gateways: Option<Vec<String>>,
    spec: Telemetry,
}

impl Entry {
    fn namespace_wide(&self) -> bool {
        self.selector.is_none() && self.gateways.is_none()
    }

    fn attaches(&self, labels: &Labels) -> bool {
        match (&self.gateways, labels.get(GATEWAY_NAME_LABEL)) {
            (None, _) => self
                .selector
                .as_ref()
                .is_some_and(|s| labels_match(s, labels)),
            (Some(_), None) => false,
            (Some(names), Some(gateway)) => names.contains(gateway),
        }
    }
}

/// The two sides of a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Client,
    Server,
}

fn modes(mode: Option<WorkloadMode>) -> &'static [Side] {
    match mode {
        Some(WorkloadMode::Client) => &[Side::Client],
        Some(WorkloadMode::Server) => &[Side::Server],
        _ => &[Side::Client, Side::Server],
    }
}

fn matches_mode(mode: Option<WorkloadMode>, side: Side) -> bool {
    modes(mode).contains(&side)
}

fn names(providers: &[ProviderRef]) -> Vec<String> {
    providers.iter().map(|p| p.name.clone()).collect()
}

fn has(names: &[String], wanted: &str) -> bool {
    names.iter().any(|n| n.eq_ignore_ascii_case(wanted))
}

impl TelemetryIndex {
    pub(super) fn build(
        resources: &ResourceSet,
        registry: &Registry,
        options: &crate::MeshOptions,
        findings: &mut Findings,
    ) -> TelemetryIndex {
        let root_namespace = options.root_namespace.as_str();
        let mut entries: Vec<(Option<Timestamp>, String, String, Entry)> = Vec::new();
        for t in resources.telemetries() {
            let gateways = super::policy::targets(
                t.target_ref.as_ref(),
                &t.target_refs,
                t.resource,
                registry,
                findings,
            );
            check_providers(t.spec, t.resource, &options.tracing, findings);
            let entry = Entry {
                key: format!("{}/{}", t.namespace(), t.name()),
                namespace: t.namespace().to_owned(),
                selector: t
                    .selector
                    .as_ref()
                    .map(|s| s.match_labels.clone())
                    .filter(|l| !l.is_empty()),
                gateways,
                spec: t.spec.clone(),
            };
            entries.push((
                t.metadata().creation_timestamp.clone(),
                t.name().to_owned(),
                t.namespace().to_owned(),
                entry,
            ));
        }
        entries.sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
        TelemetryIndex {
            entries: entries.into_iter().map(|e| e.3).collect(),
            root_namespace: root_namespace.to_owned(),
        }
    }

    /// The Telemetry resources that apply to a workload, in merge order.
    fn applicable(&self, namespace: &str, labels: &Labels) -> Vec<&Entry> {
        let wide = |ns: &str| {
            self.entries
                .iter()
                .find(|e| e.namespace == ns && e.namespace_wide())
        };
        let mut out = Vec::new();
        out.extend(wide(&self.root_namespace));
        if namespace != self.root_namespace {
            out.extend(wide(namespace));
        }
        out.extend(
            self.entries
                .iter()
                .filter(|e| e.namespace == namespace && !e.namespace_wide())
                .filter(|e| e.attaches(labels)),
        );
        out
    }

    /// The merged Telemetry settings of a workload of `namespace` with `labels`.
    pub fn for_workload(&self, namespace: &str, labels: &Labels) -> TelemetryConfig {
        let applied = self.applicable(namespace, labels);
        if applied.is_empty() {
            return TelemetryConfig::default();
        }
        let metrics: Vec<&Metrics> = applied.iter().flat_map(|e| &e.spec.metrics).collect();
        let logs: Vec<&[AccessLogging]> = applied
            .iter()
            .map(|e| &e.spec.access_logging[..])
            .filter(|l| !l.is_empty())
            .collect();
        let tracing: Vec<&Tracing> = applied.iter().flat_map(|e| &e.spec.tracing).collect();
        let mut merged = merge_metrics(&metrics);
        let side = |s: Side, metrics: MetricsConfig| SideTelemetry {
            metrics,
            access_log: merge_logs(&logs, s),
            tracing: merge_tracing(&tracing, s),
        };
        let server = merged.remove(&Side::Server).unwrap_or_default();
        let client = merged.remove(&Side::Client).unwrap_or_default();
        TelemetryConfig {
            applied: applied.iter().map(|e| e.key.clone()).collect(),
            client: side(Side::Client, client),
            server: side(Side::Server, server),
        }
    }
}

#[derive(Default)]
struct Override {
    disabled: Option<bool>,
    tags: BTreeMap<String, Option<String>>,
}

fn metric_names(m: Option<IstioMetric>) -> Vec<&'static str> {
    let one = match m {
        None | Some(IstioMetric::AllMetrics) => return ISTIO_METRICS.to_vec(),
        Some(IstioMetric::RequestCount) => "REQUEST_COUNT",
        Some(IstioMetric::RequestDuration) => "REQUEST_DURATION",
        Some(IstioMetric::RequestSize) => "REQUEST_SIZE",
        Some(IstioMetric::ResponseSize) => "RESPONSE_SIZE",
        Some(IstioMetric::TcpOpenedConnections) => "TCP_OPENED_CONNECTIONS",
        Some(IstioMetric::TcpClosedConnections) => "TCP_CLOSED_CONNECTIONS",
        Some(IstioMetric::TcpSentBytes) => "TCP_SENT_BYTES",
        Some(IstioMetric::TcpReceivedBytes) => "TCP_RECEIVED_BYTES",
        Some(IstioMetric::GrpcRequestMessages) => "GRPC_REQUEST_MESSAGES",
        Some(IstioMetric::GrpcResponseMessages) => "GRPC_RESPONSE_MESSAGES",
    };
    vec![one]
}

/// Istio's `mergeMetrics`, for the one metrics provider skiff has (`prometheus`).
fn merge_metrics(metrics: &[&Metrics]) -> BTreeMap<Side, MetricsConfig> {
    let defaults = vec![PROMETHEUS_PROVIDER.to_owned()];
    let in_scope = metrics
        .iter()
        .map(|m| names(&m.providers))
        .rfind(|n| !n.is_empty())
        .unwrap_or_else(|| defaults.clone());
    let mut out = BTreeMap::new();
    if !has(&in_scope, PROMETHEUS_PROVIDER) {
        for side in [Side::Client, Side::Server] {
            out.insert(
                side,
                MetricsConfig {
                    disabled: true,
                    overrides: Vec::new(),
                },
            );
        }
        return out;
    }
    let mut per_side: BTreeMap<Side, BTreeMap<&'static str, Override>> = BTreeMap::new();
    let mut all_disabled: BTreeSet<Side> = BTreeSet::new();
    let mut parent = defaults;
    for m in metrics {
        let mut providers = names(&m.providers);
        if providers.is_empty() {
            providers = parent.clone();
        }
        parent = providers.clone();
        if !has(&providers, PROMETHEUS_PROVIDER) {
            continue;
        }
        for o in &m.overrides {
            let sel = o.r#match.as_ref();
            if sel.is_some_and(|s| s.custom_metric.is_some()) {
                // Custom metrics are not implemented (a load warning says so).
                continue;
            }
            let metric = sel.and_then(|s| s.metric);
            let mode = sel.and_then(|s| s.mode);
            let all = matches!(metric, None | Some(IstioMetric::AllMetrics));
            if all && o.disabled == Some(true) {
                all_disabled.extend(modes(mode));
                continue;
            }
            for &side in modes(mode) {
                all_disabled.remove(&side);
                let map = per_side.entry(side).or_default();
                for name in metric_names(metric) {
                    let entry = map.entry(name).or_default();
                    if o.disabled.is_some() {
                        entry.disabled = o.disabled;
                    }
                    for (tag, to) in &o.tag_overrides {
                        let value = match to.operation.unwrap_or(TagOperation::Upsert) {
                            TagOperation::Remove => None,
                            TagOperation::Upsert => Some(to.value.clone().unwrap_or_default()),
                        };
                        entry.tags.insert(tag.clone(), value);
                    }
                }
            }
        }
    }
    for side in [Side::Client, Side::Server] {
        let disabled = all_disabled.contains(&side);
        let overrides = if disabled {
            Vec::new()
        } else {
            per_side
                .remove(&side)
                .unwrap_or_default()
                .into_iter()
                .map(|(metric, o)| MetricOverride {
                    metric: metric.to_owned(),
                    disabled: o.disabled.unwrap_or(false),
                    tags: o
                        .tags
                        .into_iter()
                        .map(|(name, value)| TagChange { name, value })
                        .collect(),
                })
                .filter(|o| o.disabled || !o.tags.is_empty())
                .collect()
        };
        out.insert(
            side,
            MetricsConfig {
                disabled,
                overrides,
            },
        );
    }
    out
}

/// Istio's `mergeLogs` for one side, keeping the providers skiff writes.
fn merge_logs(levels: &[&[AccessLogging]], side: Side) -> Option<AccessLogConfig> {
    if levels.is_empty() {
        return None;
    }
    let mode = |l: &AccessLogging| l.r#match.as_ref().and_then(|m| m.mode);
    let mut in_scope: Vec<String> = Vec::new();
    let mut filters: BTreeMap<String, Option<String>> = BTreeMap::new();
    for level in levels {
        let mut named: Vec<String> = Vec::new();
        for l in level.iter().filter(|l| matches_mode(mode(l), side)) {
            for p in names(&l.providers) {
                filters.insert(
                    p.clone(),
                    l.filter.as_ref().and_then(|f| f.expression.clone()),
                );
                if !named.contains(&p) {
                    named.push(p);
                }
            }
        }
        if !named.is_empty() {
            in_scope = named;
        }
    }
    let mut providers: BTreeMap<String, AccessLogProvider> = BTreeMap::new();
    let mut parent: Vec<String> = Vec::new();
    for level in levels {
        for l in level.iter() {
            let mut these = names(&l.providers);
            if these.is_empty() {
                these = parent.clone();
            }
            parent = these.clone();
            for p in these {
                if !in_scope.contains(&p) || !matches_mode(mode(l), side) {
                    continue;
                }
                let spec = if l.disabled == Some(true) {
                    AccessLogProvider {
                        name: p.clone(),
                        disabled: true,
                        filter: None,
                    }
                } else {
                    AccessLogProvider {
                        name: p.clone(),
                        disabled: false,
                        filter: filters.get(&p).cloned().flatten(),
                    }
                };
                providers.insert(p, spec);
            }
        }
    }
    // Only the providers the proxy writes (the others are reported at load), as Istio
    // keeps only providers its mesh config defines.
    let providers: Vec<AccessLogProvider> = providers
        .into_values()
        .filter(|p| p.name.eq_ignore_ascii_case(ENVOY_PROVIDER))
        .collect();
    (!providers.is_empty()).then_some(AccessLogConfig { providers })
}

/// Istio's tracing merge for one side.
fn merge_tracing(tracing: &[&Tracing], side: Side) -> Option<TracingConfig> {
    if tracing.is_empty() {
        return None;
    }
    let mut spec = TracingConfig {
        use_request_id_for_trace_sampling: true,
        enable_istio_tags: true,
        ..TracingConfig::default()
    };
    for t in tracing {
        if !matches_mode(t.r#match.as_ref().and_then(|m| m.mode), side) {
            continue;
        }
        if let Some(p) = t.providers.first() {
            spec.provider = Some(p.name.clone());
        }
        if let Some(d) = t.disable_span_reporting {
            spec.disabled = d;
        }
        if !t.custom_tags.is_empty() {
            spec.custom_tags = t.custom_tags.iter().filter_map(span_tag).collect();
        }
        if let Some(p) = t.random_sampling_percentage {
            spec.random_sampling_percentage = Some(p);
        }
        if let Some(v) = t.use_request_id_for_trace_sampling {
            spec.use_request_id_for_trace_sampling = v;
        }
        if let Some(v) = t.enable_istio_tags {
            spec.enable_istio_tags = v;
        }
    }
    Some(spec)
}

/// A custom tag as the proxy applies it (validation made sure exactly one kind is set).
fn span_tag((name, tag): (&String, &skiff_api::telemetry::CustomTag)) -> Option<SpanTag> {
    let value = if let Some(l) = &tag.literal {
        SpanTagValue::Literal(l.value.clone())
    } else if let Some(e) = &tag.environment {
        SpanTagValue::Environment {
            name: e.name.clone(),
            default: e.default_value.clone(),
        }
    } else {
        let h = tag.header.as_ref()?;
        SpanTagValue::Header {
            name: h.name.to_ascii_lowercase(),
            default: h.default_value.clone(),
        }
    };
    Some(SpanTag {
        name: name.clone(),
        value,
    })
}

/// Warns about providers skiff does not have: their settings change nothing.
fn check_providers(
    t: &Telemetry,
    r: &Resource,
    mesh: &crate::config::MeshTracing,
    findings: &mut Findings,
) {
    for (i, tr) in t.tracing.iter().enumerate() {
        // Istio uses the first provider only (several are refused at validation).
        if let Some(p) = tr.providers.first()
            && !mesh.collectors.contains_key(&p.name)
        {
            findings.report(
                Severity::Warning,
                Code::NotImplemented,
                r,
                Some(&format!("spec.tracing[{i}].providers[0]")),
                format!(
                    "tracing provider {:?} is not an `opentelemetry` entry of the mesh \
                     config's `extensionProviders` (skiff exports spans over OTLP/gRPC \
                     only): no spans are made for it",
                    p.name
                ),
            );
        }
    }
    for (i, m) in t.metrics.iter().enumerate() {
        for (j, p) in m.providers.iter().enumerate() {
            if !p.name.eq_ignore_ascii_case(PROMETHEUS_PROVIDER) {
                findings.report(
                    Severity::Warning,
                    Code::NotImplemented,
                    r,
                    Some(&format!("spec.metrics[{i}].providers[{j}]")),
                    format!(
                        "metrics provider {:?} is not implemented (skiff has `prometheus`); \
                         where it replaces prometheus, the standard metrics are off, as in Istio",
                        p.name
                    ),
                );
            }
        }
    }
    for (i, l) in t.access_logging.iter().enumerate() {
        for (j, p) in l.providers.iter().enumerate() {
            if !p.name.eq_ignore_ascii_case(ENVOY_PROVIDER) {
                findings.report(
                    Severity::Warning,
                    Code::NotImplemented,
                    r,
                    Some(&format!("spec.accessLogging[{i}].providers[{j}]")),
                    format!(
                        "access-log provider {:?} is not implemented: skiff writes the built-in \
                         `envoy` file provider only, so nothing is logged through this one",
                        p.name
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
