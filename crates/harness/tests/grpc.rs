//! gRPC through two real proxies: calls to an HTTP/2 app with known statuses (in the
//! trailers, and trailers-only in the headers) and known numbers of messages each way
//! (each message split over two data frames), and what both reporters make of them in
//! Istio's standard metrics: `grpc_response_status`, `istio_request_messages_total` and
//! `istio_response_messages_total`.

#[path = "shared/mesh.rs"]
mod common;
#[path = "shared/samples.rs"]
mod samples;

use common::MESH;
use samples::{find, parse};
use skiff_harness::{Mesh, grpc};

/// A gRPC port on the backend: the name makes it HTTP/2 end to end.
const ECHO: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: prod
spec:
  selector:
    app: backend
  ports:
  - name: grpc-echo
    port: 9090
    targetPort: 9091
";

const URL: &str = "http://echo.prod.svc.cluster.local:9090/skiff.test.Echo/";

/// One call: method, messages sent, metadata, the status it ends with.
type Call = (
    &'static str,
    usize,
    &'static [(&'static str, &'static str)],
    &'static str,
);

/// The three calls every test here makes.
const CALLS: &[Call] = &[
    ("Ok", 3, &[(grpc::REPLIES, "5")], "0"),
    (
        "Denied",
        4,
        &[(grpc::REPLIES, "1"), (grpc::STATUS, "7")],
        "7",
    ),
    (
        "Unavailable",
        1,
        &[(grpc::STATUS, "14"), (grpc::TRAILERS_ONLY, "1")],
        "14",
    ),
];

async fn calls(mesh: &Mesh) -> anyhow::Result<()> {
    for (method, n, metadata, status) in CALLS {
        let requests: Vec<Vec<u8>> = (0..*n).map(|i| format!("hello {i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = requests.iter().map(Vec::as_slice).collect();
        let r = mesh
            .grpc_via("frontend.prod", &format!("{URL}{method}"), &refs, metadata)
            .await?;
        assert_eq!(r.status, 200, "{method}: {r:?}");
        assert_eq!(r.grpc_status(), Some(*status), "{method}: {r:?}");
        if *method == "Unavailable" {
            assert!(r.trailers.is_none() && r.messages.is_empty(), "{r:?}");
        }
    }
    // The records are finished when the lines are written: so are the metrics.
    for w in ["frontend.prod", "backend.prod"] {
        mesh.log_line(w, "/skiff.test.Echo/Unavailable").await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_reporters_label_grpc_calls_with_their_status() -> anyhow::Result<()> {
    let mesh = Mesh::start(&[("mesh.yaml", MESH), ("echo.yaml", ECHO)]).await?;
    calls(&mesh).await?;
    for (proxy, reporter) in [("frontend.prod", "source"), ("backend.prod", "destination")] {
        let samples = parse(&mesh.proxy(proxy).proxy().prometheus_text());
        let edge = [
            ("reporter", reporter),
            ("source_workload", "frontend"),
            ("destination_workload", "backend"),
            ("destination_service", "echo.prod.svc.cluster.local"),
            ("request_protocol", "grpc"),
            ("response_code", "200"),
        ];
        for (_, _, _, status) in CALLS {
            let want: Vec<_> = edge
                .iter()
                .copied()
                .chain([("grpc_response_status", *status)])
                .collect();
            let found = find(&samples, "istio_requests_total", &want);
            assert_eq!(found.len(), 1, "{proxy} status {status}: {samples:#?}");
            assert_eq!(found[0].value, 1.0, "{proxy} status {status}");
            assert_eq!(found[0].labels.len(), 25, "{:?}", found[0].labels);
            let duration = find(&samples, "istio_request_duration_milliseconds_count", &want);
            assert_eq!(duration.len(), 1, "{proxy}: the histograms carry it too");
        }
        let all: f64 = find(
            &samples,
            "istio_requests_total",
            &[("request_protocol", "grpc")],
        )
        .iter()
        .map(|s| s.value)
        .sum();
        assert_eq!(all, 3.0, "{proxy}: each call once");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_reporters_count_the_messages_of_each_direction() -> anyhow::Result<()> {
    let mesh = Mesh::start(&[("mesh.yaml", MESH), ("echo.yaml", ECHO)]).await?;
    calls(&mesh).await?;
    let sent: usize = CALLS.iter().map(|(_, n, _, _)| n).sum();
    assert_eq!(sent, 8);
    for (proxy, reporter) in [("frontend.prod", "source"), ("backend.prod", "destination")] {
        let samples = parse(&mesh.proxy(proxy).proxy().prometheus_text());
        let edge = [
            ("reporter", reporter),
            ("source_workload", "frontend"),
            ("destination_workload", "backend"),
            ("destination_service", "echo.prod.svc.cluster.local"),
        ];
        for (name, want) in [
            ("istio_request_messages_total", 8.0),
            ("istio_response_messages_total", 6.0),
        ] {
            let found = find(&samples, name, &edge);
            assert_eq!(found.len(), 1, "{proxy} {name}: {samples:#?}");
            assert_eq!(found[0].value, want, "{proxy} {name}");
            // Istio's labels while a stream is open: no protocol, code, status, flags or
            // security policy.
            assert_eq!(found[0].labels.len(), 20, "{:?}", found[0].labels);
        }
    }
    // Plain HTTP requests count no messages.
    let r = mesh
        .get_via("frontend.prod", "http://backend.prod.svc.cluster.local/")
        .await?;
    assert_eq!(r.status, 200);
    mesh.log_line("frontend.prod", "\"GET / ").await?;
    let samples = parse(&mesh.proxy("frontend.prod").proxy().prometheus_text());
    assert_eq!(find(&samples, "istio_request_messages_total", &[]).len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_keeps_the_status_label_empty() -> anyhow::Result<()> {
    let mesh = Mesh::start(&[("mesh.yaml", MESH), ("echo.yaml", ECHO)]).await?;
    // A plain HTTP request to the same app keeps the label empty.
    let r = mesh
        .get_via("frontend.prod", "http://backend.prod.svc.cluster.local/")
        .await?;
    assert_eq!(r.status, 200);
    mesh.log_line("backend.prod", "\"GET / ").await?;
    let samples = parse(&mesh.proxy("backend.prod").proxy().prometheus_text());
    let http = find(
        &samples,
        "istio_requests_total",
        &[("request_protocol", "http"), ("grpc_response_status", "")],
    );
    assert_eq!(http.len(), 1, "{samples:#?}");
    Ok(())
}
