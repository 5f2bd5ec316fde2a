//! The Telemetry API through real proxies: a metrics override that disables
//! `REQUEST_COUNT` for one workload, a tag REMOVE, and an access-log filter expression.

#[path = "shared/mesh.rs"]
mod common;
#[path = "shared/observed.rs"]
mod observed;

use common::{BACKEND_URL, MESH};
use observed::RULES;
use skiff_harness::{Mesh, MeshOptions};

/// The backend counts no requests; everywhere in `prod`, `istio_requests_total` has no
/// `request_protocol` label (the namespace's Telemetry), while the other metrics keep it.
const METRICS: &str = "\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: backend-no-count
  namespace: prod
spec:
  selector:
    matchLabels:
      app: backend
  metrics:
  - providers:
    - name: prometheus
    overrides:
    - match:
        metric: REQUEST_COUNT
      disabled: true
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: namespace-tags
  namespace: prod
spec:
  metrics:
  - overrides:
    - match:
        metric: REQUEST_COUNT
        mode: CLIENT_AND_SERVER
      tagOverrides:
        request_protocol:
          operation: REMOVE
";

/// The frontend logs only what ended in a 5xx.
const LOGS: &str = "\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: frontend-errors
  namespace: prod
spec:
  selector:
    matchLabels:
      app: frontend
  accessLogging:
  - providers:
    - name: envoy
    filter:
      expression: response.code >= 500
";

/// The sample lines of `name` in a Prometheus text exposition.
fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_metric_is_absent_and_a_removed_tag_is_gone() -> anyhow::Result<()> {
    let mesh = Mesh::start(&[("mesh.yaml", MESH), ("telemetry.yaml", METRICS)]).await?;
    for _ in 0..4 {
        let r = mesh.get_via("frontend.prod", BACKEND_URL).await?;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    mesh.log_line("backend.prod", "\"GET / ").await?;
    let backend = mesh.proxy("backend.prod").proxy().prometheus_text();
    let frontend = mesh.proxy("frontend.prod").proxy().prometheus_text();

    // The backend: no request count, but its durations are still there.
    assert!(
        samples(&backend, "istio_requests_total").is_empty(),
        "{backend}"
    );
    let durations = samples(&backend, "istio_request_duration_milliseconds_count");
    assert_eq!(durations.len(), 1, "{backend}");
    assert!(durations[0].ends_with(" 4"), "{}", durations[0]);
    assert!(durations[0].contains("request_protocol=\"http\""));

    // The frontend still counts, without the removed label.
    let counted = samples(&frontend, "istio_requests_total");
    assert_eq!(counted.len(), 1, "{frontend}");
    assert!(counted[0].ends_with(" 4"), "{}", counted[0]);
    assert!(counted[0].contains("reporter=\"source\""));
    assert!(counted[0].contains("response_code=\"200\""));
    assert!(!counted[0].contains("request_protocol="), "{}", counted[0]);
    let sizes = samples(&frontend, "istio_response_bytes_count");
    assert!(sizes[0].contains("request_protocol=\"http\""), "{sizes:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_log_filter_keeps_only_5xx() -> anyhow::Result<()> {
    let mesh = Mesh::start(&[
        ("mesh.yaml", MESH),
        ("rules.yaml", RULES),
        ("telemetry.yaml", LOGS),
    ])
    .await?;
    for _ in 0..3 {
        let r = mesh.get_via("frontend.prod", BACKEND_URL).await?;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    for _ in 0..2 {
        let r = mesh
            .get_via("frontend.prod", &format!("{BACKEND_URL}fault"))
            .await?;
        assert_eq!(r.status, 503, "{}", r.body);
    }
    // The backend has no filter: it logs its three requests.
    wait_lines(&mesh, "backend.prod", 3).await;
    wait_lines(&mesh, "frontend.prod", 2).await;
    let frontend = mesh.logs("frontend.prod");
    assert_eq!(frontend.len(), 2, "{frontend:#?}");
    assert!(
        frontend
            .iter()
            .all(|l| l.contains("\"GET /fault") && l.contains(" 503 ")),
        "{frontend:#?}"
    );
    let backend = mesh.logs("backend.prod");
    assert_eq!(
        backend.iter().filter(|l| l.contains(" 200 ")).count(),
        3,
        "{backend:#?}"
    );
    Ok(())
}

/// Waits (at most 10 s) until `workload` has logged `n` lines.
async fn wait_lines(mesh: &Mesh, workload: &str, n: usize) {
    for _ in 0..500 {
        if mesh.logs(workload).len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_config_access_log_and_a_telemetry_provider() -> anyhow::Result<()> {
    // No accessLogFile: no access log where no Telemetry asks for one (Istio's default);
    // the frontend's Telemetry names the `envoy` provider; the encoding is JSON.
    const ON_FOR_FRONTEND: &str = "\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: frontend-logs
  namespace: prod
spec:
  selector:
    matchLabels:
      app: frontend
  accessLogging:
  - providers:
    - name: envoy
";
    let options = MeshOptions {
        mesh_config: Some("accessLogEncoding: JSON\n".to_owned()),
        ..MeshOptions::default()
    };
    let mesh = Mesh::start_with(
        &[("mesh.yaml", MESH), ("telemetry.yaml", ON_FOR_FRONTEND)],
        options,
    )
    .await?;
    for _ in 0..2 {
        let r = mesh.get_via("frontend.prod", BACKEND_URL).await?;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    wait_lines(&mesh, "frontend.prod", 2).await;
    let frontend = mesh.logs("frontend.prod");
    assert_eq!(frontend.len(), 2, "{frontend:#?}");
    for line in &frontend {
        let v: serde_json::Value = serde_json::from_str(line)?;
        assert_eq!(v["response_code"], 200, "{line}");
    }
    assert!(
        mesh.logs("backend.prod").is_empty(),
        "{:#?}",
        mesh.logs("backend.prod")
    );
    Ok(())
}
