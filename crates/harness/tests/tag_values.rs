//! Telemetry `tagOverrides` whose values are CEL expressions read from each request
//! (`request.host`, a request header, `string(response.code)`), through real proxies:
//! the series both reporters make carry the evaluated values, and a value that cannot
//! be found (an absent header, the filter state a Wasm plugin would set) is `unknown`.

#[path = "shared/mesh.rs"]
mod common;
#[path = "shared/samples.rs"]
mod samples;

use common::{BACKEND_URL, MESH};
use samples::{find, parse};
use skiff_harness::Mesh;

const TAGS: &str = "\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: cel-tags
  namespace: prod
spec:
  metrics:
  - overrides:
    - match:
        metric: REQUEST_COUNT
        mode: CLIENT_AND_SERVER
      tagOverrides:
        request_host:
          value: request.host
        tenant:
          operation: UPSERT
          value: \"request.headers['x-tenant']\"
        code_text:
          value: string(response.code)
        operation:
          value: add
        destination_service_name:
          value: request.method
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserted_tags_carry_each_requests_values_on_both_reporters() -> anyhow::Result<()> {
    let mesh = Mesh::start(&[("mesh.yaml", MESH), ("tags.yaml", TAGS)]).await?;
    for tenant in ["a", "a", "b"] {
        let r = mesh
            .get_via_with("frontend.prod", BACKEND_URL, &[("x-tenant", tenant)])
            .await?;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = mesh.get_via("frontend.prod", BACKEND_URL).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    for w in ["frontend.prod", "backend.prod"] {
        for _ in 0..100 {
            if mesh.logs(w).len() >= 4 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    for (proxy, reporter) in [("frontend.prod", "source"), ("backend.prod", "destination")] {
        let samples = parse(&mesh.proxy(proxy).proxy().prometheus_text());
        for (tenant, count) in [("a", 2.0), ("b", 1.0), ("unknown", 1.0)] {
            let found = find(
                &samples,
                "istio_requests_total",
                &[
                    ("reporter", reporter),
                    ("tenant", tenant),
                    ("request_host", "backend.prod.svc.cluster.local"),
                    ("code_text", "200"),
                    // The filter state `wasm.add`, which no Wasm plugin sets here.
                    ("operation", "unknown"),
                    // A standard label, given another value.
                    ("destination_service_name", "GET"),
                    ("destination_service", "backend.prod.svc.cluster.local"),
                ],
            );
            assert_eq!(found.len(), 1, "{proxy} tenant {tenant}: {samples:#?}");
            assert_eq!(found[0].value, count, "{proxy} tenant {tenant}");
            assert_eq!(found[0].labels.len(), 29, "{:?}", found[0].labels);
        }
        // The other metrics keep Istio's labels.
        let durations = find(
            &samples,
            "istio_request_duration_milliseconds_count",
            &[
                ("reporter", reporter),
                ("destination_service_name", "backend"),
            ],
        );
        assert_eq!(durations.len(), 1, "{proxy}: {samples:#?}");
        assert!(!durations[0].labels.contains_key("tenant"));
        assert_eq!(durations[0].value, 4.0);
    }
    Ok(())
}
