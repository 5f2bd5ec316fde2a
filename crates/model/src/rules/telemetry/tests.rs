//! Istio's Telemetry precedence and merge, case by case (the cases of
//! `pilot/pkg/model/telemetry_test.go` that skiff implements).

use crate::config::{AccessLogProvider, MetricOverride, TagChange, TelemetryConfig};
use crate::registry::Labels;
use crate::testing;

fn telemetry(ns: &str, name: &str, created: &str, selector: Option<&str>, body: &str) -> String {
    let sel = selector
        .map(|s| format!("  selector:\n    matchLabels: {{{s}}}\n"))
        .unwrap_or_default();
    format!(
        "---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata:\n  name: {name}\n  namespace: {ns}\n  creationTimestamp: \"{created}\"\nspec:\n{sel}{body}"
    )
}

fn resolve(docs: &[String], ns: &str, app: &str) -> TelemetryConfig {
    let mesh = testing::mesh(&docs.concat());
    let labels = Labels::from([("app".to_owned(), app.to_owned())]);
    mesh.rules().telemetry().for_workload(ns, &labels)
}

const T0: &str = "2024-01-01T00:00:00Z";
const T1: &str = "2024-01-02T00:00:00Z";

#[test]
fn no_telemetry_is_the_default() {
    let c = resolve(&[], "prod", "backend");
    assert!(c.is_default());
    assert!(!c.client.metrics.disabled);
}

#[test]
fn workload_beats_namespace_beats_root_field_by_field() {
    let docs = [
        telemetry(
            "istio-system",
            "mesh-default",
            T0,
            None,
            "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT}\n      tagOverrides:\n        request_protocol: {operation: REMOVE}\n  accessLogging:\n  - providers: [{name: envoy}]\n",
        ),
        telemetry(
            "prod",
            "ns",
            T0,
            None,
            "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT, mode: SERVER}\n      disabled: true\n",
        ),
        telemetry(
            "prod",
            "backend",
            T1,
            Some("app: backend"),
            "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT, mode: SERVER}\n      disabled: false\n  accessLogging:\n  - filter: {expression: 'response.code >= 500'}\n    providers: [{name: envoy}]\n",
        ),
        // A Telemetry with a selector in the root namespace applies to no workload of
        // another namespace (Istio reads selectors of the workload's namespace only).
        telemetry(
            "istio-system",
            "root-selector",
            T1,
            Some("app: backend"),
            "  accessLogging:\n  - disabled: true\n",
        ),
    ];
    let frontend = resolve(&docs, "prod", "frontend");
    assert_eq!(frontend.applied, ["istio-system/mesh-default", "prod/ns"]);
    let removed = MetricOverride {
        metric: "REQUEST_COUNT".into(),
        disabled: false,
        tags: vec![TagChange {
            name: "request_protocol".into(),
            value: None,
        }],
    };
    assert_eq!(
        frontend.client.metrics.overrides,
        std::slice::from_ref(&removed)
    );
    assert_eq!(
        frontend.server.metrics.overrides,
        [MetricOverride {
            disabled: true,
            ..removed.clone()
        }]
    );
    let envoy = AccessLogProvider {
        name: "envoy".into(),
        disabled: false,
        filter: None,
    };
    assert_eq!(
        frontend.server.access_log.as_ref().unwrap().providers,
        [envoy]
    );

    let backend = resolve(&docs, "prod", "backend");
    assert_eq!(
        backend.applied,
        ["istio-system/mesh-default", "prod/ns", "prod/backend"]
    );
    // The workload's `disabled: false` replaces the namespace's; the root's tag stays.
    assert_eq!(backend.server.metrics.overrides, [removed]);
    let filtered = backend.client.access_log.unwrap().providers;
    assert_eq!(filtered[0].filter.as_deref(), Some("response.code >= 500"));
}

#[test]
fn disabling_all_metrics_and_turning_one_mode_back_on() {
    let docs = [
        telemetry(
            "istio-system",
            "off",
            T0,
            None,
            "  metrics:\n  - overrides:\n    - match: {metric: ALL_METRICS}\n      disabled: true\n",
        ),
        telemetry(
            "prod",
            "on",
            T0,
            Some("app: backend"),
            "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT, mode: CLIENT}\n      disabled: false\n",
        ),
    ];
    let frontend = resolve(&docs, "prod", "frontend");
    assert!(frontend.client.metrics.disabled && frontend.server.metrics.disabled);
    let backend = resolve(&docs, "prod", "backend");
    assert!(!backend.client.metrics.disabled);
    assert!(backend.server.metrics.disabled);
}

#[test]
fn another_metrics_provider_in_place_of_prometheus_turns_metrics_off() {
    let docs = [telemetry(
        "prod",
        "sd",
        T0,
        None,
        "  metrics:\n  - providers: [{name: stackdriver}]\n",
    )];
    let c = resolve(&docs, "prod", "backend");
    assert!(c.client.metrics.disabled && c.server.metrics.disabled);
    let mesh = testing::mesh(&docs.concat());
    assert_eq!(
        testing::messages(&mesh, crate::diagnostic::Code::NotImplemented).len(),
        1
    );
}

#[test]
fn access_logs_by_mode_disabled_and_the_fallback() {
    let docs = [
        telemetry(
            "istio-system",
            "logs",
            T0,
            None,
            "  accessLogging:\n  - providers: [{name: envoy}]\n",
        ),
        telemetry(
            "prod",
            "quiet-server",
            T0,
            Some("app: backend"),
            "  accessLogging:\n  - match: {mode: SERVER}\n    disabled: true\n",
        ),
    ];
    let backend = resolve(&docs, "prod", "backend");
    assert!(!backend.client.access_log.unwrap().providers[0].disabled);
    assert!(backend.server.access_log.unwrap().providers[0].disabled);

    // Disabling with no provider in scope leaves the proxy's own setting, as Istio falls
    // back to the mesh config's accessLogFile.
    let lone = [telemetry(
        "prod",
        "quiet",
        T0,
        None,
        "  accessLogging:\n  - disabled: true\n",
    )];
    assert_eq!(resolve(&lone, "prod", "backend").server.access_log, None);
}

#[test]
fn the_oldest_namespace_wide_telemetry_wins_and_tracing_merges_per_mode() {
    let docs = [
        telemetry(
            "prod",
            "newer",
            T1,
            None,
            "  tracing:\n  - randomSamplingPercentage: 50\n",
        ),
        telemetry(
            "prod",
            "older",
            T0,
            None,
            "  tracing:\n  - providers: [{name: zipkin}]\n    randomSamplingPercentage: 10\n  - match: {mode: SERVER}\n    disableSpanReporting: true\n",
        ),
    ];
    let c = resolve(&docs, "prod", "backend");
    assert_eq!(c.applied, ["prod/older"]);
    let client = c.client.tracing.unwrap();
    assert_eq!(client.provider.as_deref(), Some("zipkin"));
    assert_eq!(client.random_sampling_percentage, Some(10.0));
    assert!(!client.disabled);
    assert!(c.server.tracing.unwrap().disabled);
}

#[test]
fn tracing_resolves_against_the_mesh_config() {
    let mesh = crate::config::MeshTracing {
        collectors: [("otel".to_owned(), "collector.obs:4317".to_owned())].into(),
        default_providers: vec!["otel".to_owned()],
        sampling: Some(25.0),
    };
    // No Telemetry: the default provider traces, with the mesh's sampling.
    let mut c = resolve(&[], "prod", "backend");
    c.resolve_tracing(&mesh);
    let t = c.client.tracing.clone().unwrap();
    assert_eq!(t.collector.as_deref(), Some("collector.obs:4317"));
    assert_eq!(t.sampling_per_10000(), 2500);
    assert!(t.use_request_id_for_trace_sampling && t.enable_istio_tags);
    assert_eq!(c.server.tracing, c.client.tracing);
    // Without default providers nothing traces.
    let mut c = resolve(&[], "prod", "backend");
    c.resolve_tracing(&crate::config::MeshTracing::default());
    assert_eq!(c.client.tracing, None);

    // A Telemetry's own percentage wins; a provider the mesh config does not define as
    // OpenTelemetry has no collector, so no spans.
    let docs = [telemetry(
        "prod",
        "t",
        T0,
        None,
        "  tracing:\n  - providers: [{name: zipkin}]\n    randomSamplingPercentage: 100\n  - match: {mode: SERVER}\n    providers: [{name: otel}]\n",
    )];
    let mut c = resolve(&docs, "prod", "backend");
    c.resolve_tracing(&mesh);
    let client = c.client.tracing.unwrap();
    assert_eq!(client.collector, None);
    assert_eq!(client.sampling_per_10000(), 10_000);
    let server = c.server.tracing.unwrap();
    assert_eq!(server.collector.as_deref(), Some("collector.obs:4317"));
    // No percentage at all: Istio's 1%.
    assert_eq!(
        crate::config::TracingConfig::default().sampling_per_10000(),
        100
    );
}
