//! End to end: `skiff up examples/canary --mesh-config …` as real processes, with a
//! Telemetry that turns tracing on and an OTLP collector of the test. A request with a
//! sampled `traceparent` through the gateway, the frontend (`skiff sample-app`, which
//! passes the trace headers on) and a backend is one trace of four spans, each the
//! parent of the next.

#[path = "support/mesh.rs"]
mod mesh;

use mesh::{Mesh, client, get};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use skiff_harness::otlp::Collector;

const TELEMETRY: &str = "\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: mesh-default
  namespace: istio-system
spec:
  tracing:
  - providers:
    - name: otel
    randomSamplingPercentage: 0
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skiff_up_exports_one_trace_through_gateway_frontend_and_backend() {
    let (collector, port) = Collector::start().await.unwrap();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "extensionProviders:\n- name: otel\n  opentelemetry:\n    service: 127.0.0.1\n    port: {port}\n"
        ),
    )
    .unwrap();
    let path = config.path().to_string_lossy().into_owned();
    let mesh = Mesh::start_example(
        "canary",
        32,
        &[("70-tracing.yaml", TELEMETRY)],
        &["--mesh-config", &path],
    );

    // Sampling is 0%: only the caller's decision makes this request traced.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace}-{caller}-01");
    let (status, body) = get(&client(), mesh.gateway(), &[("traceparent", &traceparent)])
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}\n{}", mesh.log());

    let spans = collector.trace(trace, 4).await.unwrap();
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let kind = |k: SpanKind| spans.iter().filter(move |g| g.span.kind == k as i32);
    let gateway = kind(SpanKind::Client)
        .find(|g| g.parent() == caller)
        .expect("the gateway's span, child of the caller's");
    let frontend_in = kind(SpanKind::Server)
        .find(|g| g.parent() == gateway.id())
        .expect("the frontend's server span");
    assert_eq!(frontend_in.service, "frontend.prod");
    let frontend_out = kind(SpanKind::Client)
        .find(|g| g.parent() == frontend_in.id())
        .expect("the frontend's client span (the app passed the context on)");
    assert_eq!(frontend_out.service, "frontend.prod");
    assert_eq!(
        frontend_out.span.name,
        "backend.prod.svc.cluster.local:80/*"
    );
    let backend = kind(SpanKind::Server)
        .find(|g| g.parent() == frontend_out.id())
        .expect("the backend's server span");
    assert_eq!(backend.service, "backend.prod");
    assert_eq!(backend.tag("http.status_code").as_deref(), Some("200"));
    drop(mesh);
}
