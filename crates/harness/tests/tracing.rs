//! Distributed tracing through real proxies: gateway → frontend → backend, each hop's
//! spans exported over OTLP/gRPC to a collector of the test (a tonic server built from
//! the OpenTelemetry protos), named by the mesh config's `extensionProviders` and
//! switched on mesh-wide by a Telemetry in the root namespace.
//!
//! The frontend's app calls the backend (`/call/…`), copying the trace headers as
//! Istio asks apps to; each app tells which trace headers reached it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use skiff_harness::otlp::{Collector, Got};
use skiff_harness::{Mesh, MeshOptions, Reply};

const GATEWAY: &str = "istio-ingressgateway.istio-system";
const URL: &str = "http://shop.example/call/backend.prod.svc.cluster.local/items";

const MESH: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: prod
---
apiVersion: v1
kind: Service
metadata:
  name: backend
  namespace: prod
spec:
  selector:
    app: backend
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: backend
  namespace: prod
spec:
  address: {{ip.backend}}
  serviceAccount: backend
  labels:
    app: backend
---
apiVersion: v1
kind: Service
metadata:
  name: frontend
  namespace: prod
spec:
  selector:
    app: frontend
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: frontend
  namespace: prod
spec:
  address: {{ip.frontend}}
  serviceAccount: frontend
  labels:
    app: frontend
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: istio-ingressgateway
  namespace: istio-system
spec:
  address: {{ip.gateway}}
  serviceAccount: istio-ingressgateway-service-account
  labels:
    istio: ingressgateway
    app: istio-ingressgateway
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: shop
  namespace: prod
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - \"*\"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: frontend
  namespace: prod
spec:
  hosts:
  - \"*\"
  gateways:
  - shop
  http:
  - route:
    - destination:
        host: frontend.prod.svc.cluster.local
        port:
          number: 80
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: mesh-default
  namespace: istio-system
spec:
  tracing:
  - providers:
    - name: otel
    randomSamplingPercentage: 100
    customTags:
      team:
        literal:
          value: shop
      user:
        header:
          name: end-user
          defaultValue: nobody
";

fn mesh_config(port: u16) -> String {
    format!(
        "extensionProviders:\n- name: otel\n  opentelemetry:\n    service: 127.0.0.1\n    port: {port}\n"
    )
}

async fn start() -> Result<(Mesh, Collector)> {
    let (collector, port) = Collector::start().await?;
    let mesh = Mesh::start_with(
        &[("mesh.yaml", MESH)],
        MeshOptions {
            mesh_config: Some(mesh_config(port)),
            ..MeshOptions::default()
        },
    )
    .await?;
    Ok((mesh, collector))
}

async fn get(mesh: &Mesh, headers: &[(&str, &str)]) -> Result<Reply> {
    let reply = mesh.get_gateway(GATEWAY, 80, URL, headers).await?;
    anyhow::ensure!(reply.status == 200, "{reply:?}");
    anyhow::ensure!(reply.body == "backend.prod", "{reply:?}");
    Ok(reply)
}

/// The four spans of one request, by hop.
struct Hops {
    gateway: Got,
    frontend_server: Got,
    frontend_client: Got,
    backend_server: Got,
}

fn hops(spans: Vec<Got>) -> Result<Hops> {
    anyhow::ensure!(spans.len() == 4, "one span per proxy and side: {spans:#?}");
    let mut by: BTreeMap<(String, i32), Got> = BTreeMap::new();
    for s in spans {
        by.insert((s.service.clone(), s.span.kind), s);
    }
    let mut take = |service: &str, kind: SpanKind| {
        by.remove(&(service.to_owned(), kind as i32))
            .with_context(|| format!("no {kind:?} span of {service}"))
    };
    Ok(Hops {
        gateway: take("istio-ingressgateway.istio-system", SpanKind::Client)?,
        frontend_server: take("frontend.prod", SpanKind::Server)?,
        frontend_client: take("frontend.prod", SpanKind::Client)?,
        backend_server: take("backend.prod", SpanKind::Server)?,
    })
}

/// The span of the trace's first hop (`traceparent` of the apps' own header), read from
/// what an app saw.
fn w3c_ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_per_request_with_a_span_per_hop_and_w3c_to_the_apps() -> Result<()> {
    let (mesh, collector) = start().await?;

    // A caller that decided not to sample: nothing is reported, the context passes on.
    let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    let reply = get(&mesh, &[("traceparent", unsampled)]).await?;
    assert_eq!(reply.header("x-seen-traceparent"), unsampled);
    assert_eq!(reply.header("x-next-seen-traceparent"), unsampled);

    let mut traces = Vec::new();
    for _ in 0..3 {
        let reply = get(&mesh, &[]).await?;
        // The frontend's app sees its sidecar's server span as the parent; the backend's
        // its own sidecar's, in the same trace.
        let (trace, frontend_parent) = w3c_ids(reply.header("x-seen-traceparent"));
        let (next_trace, backend_parent) = w3c_ids(reply.header("x-next-seen-traceparent"));
        assert_eq!(trace, next_trace, "{reply:?}");
        assert!(reply.header("x-seen-traceparent").ends_with("-01"));
        assert_eq!(reply.header("x-seen-x-b3-traceid"), "", "W3C in, W3C out");
        traces.push((trace, frontend_parent, backend_parent));
    }
    let ids: std::collections::BTreeSet<_> = traces.iter().map(|t| &t.0).collect();
    assert_eq!(ids.len(), 3, "a new trace per request: {traces:?}");

    for (trace, frontend_parent, backend_parent) in &traces {
        let h = hops(collector.trace(trace, 4).await?)?;
        // The parent links: gateway (root) → frontend inbound → frontend outbound →
        // backend inbound.
        assert_eq!(h.gateway.parent(), "", "the gateway's span is the root");
        assert_eq!(h.frontend_server.parent(), h.gateway.id());
        assert_eq!(h.frontend_client.parent(), h.frontend_server.id());
        assert_eq!(h.backend_server.parent(), h.frontend_client.id());
        assert_eq!(&h.frontend_server.id(), frontend_parent);
        assert_eq!(&h.backend_server.id(), backend_parent);

        // Istio's tags.
        for g in [
            &h.gateway,
            &h.frontend_server,
            &h.frontend_client,
            &h.backend_server,
        ] {
            assert_eq!(g.tag("component").as_deref(), Some("proxy"), "{g:#?}");
            assert_eq!(g.tag("http.method").as_deref(), Some("GET"));
            assert_eq!(g.tag("http.status_code").as_deref(), Some("200"));
            assert_eq!(g.tag("response_flags").as_deref(), Some("-"));
            assert_eq!(g.tag("istio.mesh_id").as_deref(), Some("cluster.local"));
            assert!(g.tag("guid:x-request-id").is_some_and(|id| id.len() == 36));
            assert!(g.span.end_time_unix_nano >= g.span.start_time_unix_nano);
            // The Telemetry's custom tags: a literal, and a header absent here.
            assert_eq!(g.tag("team").as_deref(), Some("shop"));
            assert_eq!(g.tag("user").as_deref(), Some("nobody"));
        }
        assert_eq!(
            h.frontend_client.tag("istio.canonical_service").as_deref(),
            Some("frontend")
        );
        assert_eq!(
            h.frontend_client.tag("istio.namespace").as_deref(),
            Some("prod")
        );
        assert_eq!(
            h.frontend_client.tag("node_id").as_deref(),
            Some("frontend.prod")
        );
        assert_eq!(
            h.frontend_client.tag("upstream_cluster").as_deref(),
            Some("outbound|80||backend.prod.svc.cluster.local")
        );
        assert_eq!(
            h.frontend_client.tag("http.url").as_deref(),
            Some("http://backend.prod.svc.cluster.local/items")
        );
        assert_eq!(
            h.frontend_client.span.name,
            "backend.prod.svc.cluster.local:80/*"
        );
        assert_eq!(
            h.backend_server.span.name,
            "backend.prod.svc.cluster.local:80/*"
        );
        assert_eq!(h.gateway.span.name, "frontend.prod.svc.cluster.local:80/*");
        // One request id along the whole path.
        assert_eq!(
            h.gateway.tag("guid:x-request-id"),
            h.backend_server.tag("guid:x-request-id")
        );
    }

    // A last request: once its spans are in, every exporter has sent what came before
    // it (each sends in order). Nothing of the unsampled trace, nothing more per trace.
    let marker = w3c_ids(get(&mesh, &[]).await?.header("x-seen-traceparent")).0;
    collector.trace(&marker, 4).await?;
    let all = collector.spans();
    assert!(
        all.iter()
            .all(|g| g.trace() != "0af7651916cd43dd8448eb211c80319c"),
        "an unsampled request is not reported"
    );
    assert_eq!(all.len(), 16, "four spans per sampled request: {all:#?}");

    // The proxy counts what it exported (a server and a client span per request).
    let frontend = mesh.proxy("frontend.prod").proxy();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = frontend.prometheus_text();
        if text.contains("skiff_tracing_spans_exported_total 8") {
            assert!(
                text.contains("skiff_tracing_spans_dropped_total 0"),
                "{text}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b3_in_gives_b3_out_in_the_callers_trace() -> Result<()> {
    let (mesh, collector) = start().await?;
    let trace = "463ac35c9f6413ad48485a3953bb6124";
    let caller = "a2fb4a1d1a96d312";
    let reply = get(
        &mesh,
        &[
            ("x-b3-traceid", trace),
            ("x-b3-spanid", caller),
            ("x-b3-sampled", "1"),
            ("end-user", "jason"),
        ],
    )
    .await?;
    assert_eq!(reply.header("x-seen-x-b3-traceid"), trace);
    assert_eq!(reply.header("x-next-seen-x-b3-traceid"), trace);
    assert_eq!(reply.header("x-seen-x-b3-sampled"), "1");
    assert_eq!(reply.header("x-seen-traceparent"), "", "B3 in, B3 out");
    assert_eq!(reply.header("x-next-seen-traceparent"), "");

    let h = hops(collector.trace(trace, 4).await?)?;
    assert_eq!(
        h.gateway.parent(),
        caller,
        "the caller's span is the parent"
    );
    assert_eq!(h.gateway.tag("user").as_deref(), Some("jason"));
    assert_eq!(h.frontend_server.parent(), h.gateway.id());
    assert_eq!(h.frontend_client.parent(), h.frontend_server.id());
    assert_eq!(h.backend_server.parent(), h.frontend_client.id());
    assert_eq!(reply.header("x-seen-x-b3-spanid"), h.frontend_server.id());
    assert_eq!(
        reply.header("x-seen-x-b3-parentspanid"),
        h.gateway.id(),
        "the app's parent is the span before its sidecar's"
    );
    assert_eq!(
        reply.header("x-next-seen-x-b3-spanid"),
        h.backend_server.id()
    );
    Ok(())
}
