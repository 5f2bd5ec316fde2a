//! `skiff stat` and `skiff top` on `skiff up examples/canary`: a known number of
//! requests goes through the gateway while they measure (200s, 502s from a fault the
//! frontend's backend call meets, 403s from the zero-trust policy), and their JSON
//! gives exactly those counts, success rates and mTLS shares.

#[path = "support/mesh.rs"]
mod mesh;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mesh::{Mesh, client, skiff};
use serde_json::Value;

/// The backend's VirtualService with a fault first: requests of user `tester` (the
/// frontend passes `end-user` on) are aborted with 503 by the frontend's sidecar.
const FAULTY_VS: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: backend
  namespace: prod
spec:
  hosts:
  - backend
  http:
  - name: fault-for-tester
    match:
    - headers:
        end-user:
          exact: tester
    fault:
      abort:
        percentage:
          value: 100
        httpStatus: 503
    route:
    - destination:
        host: backend
        subset: v1
  - name: split
    route:
    - destination:
        host: backend
        subset: v1
      weight: 90
    - destination:
        host: backend
        subset: v2
      weight: 10
";

/// Starts `skiff ARGS`, returns once it said on stderr that its first scrape is done.
fn start_measuring(args: &[&str]) -> Child {
    let mut child = Command::new(skiff())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).unwrap();
        said.push_str(&line);
        assert!(n > 0, "skiff {args:?} ended before measuring: {said}");
        if line.contains("skiff stat: scraped") || line.contains("skiff top: scraped") {
            break;
        }
    }
    // Keep draining stderr so the child never blocks on it.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    child
}

fn finish(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

async fn send(method: http::Method, headers: &[(&str, &str)], mesh: &Mesh) -> u16 {
    let client = client();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{}/", mesh.gateway()));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = client
        .request(request.body(http_body_util::Empty::new()).unwrap())
        .await
        .unwrap();
    response.status().as_u16()
}

fn row<'v>(rows: &'v Value, name: &str) -> &'v Value {
    rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name} in {rows:#}"))
}

/// Requests, successes and the rate that is their count over the window.
fn counts(r: &Value, window: f64) -> (u64, u64) {
    let requests = r["requests"].as_u64().unwrap();
    let rps = r["rps"].as_f64().unwrap();
    assert!(
        (rps * window - requests as f64).abs() < 1e-6,
        "{rps} rps over {window} s is not {requests} requests: {r:#}"
    );
    (requests, r["successes"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_and_top_count_the_requests_sent() {
    let mesh = Mesh::start(57);
    std::fs::write(
        mesh.dir.path().join("40-backend-virtualservice.yaml"),
        FAULTY_VS,
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while send(http::Method::GET, &[("end-user", "tester")], &mesh).await != 502 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fault never applied; skiff up printed:\n{}",
            mesh.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let control = mesh.control_debug().to_string();
    let stat = |kind: &'static str| {
        let control = control.clone();
        std::thread::spawn(move || {
            start_measuring(&[
                "stat",
                kind,
                "-n",
                "prod",
                "--window",
                "8s",
                "-o",
                "json",
                "--control",
                &control,
            ])
        })
    };
    let (workloads, services) = (stat("workloads"), stat("services"));
    let top = start_measuring(&[
        "top",
        "--interval",
        "5s",
        "--window",
        "1m",
        "--iterations",
        "2",
        "-o",
        "json",
        "--control",
        &control,
    ]);
    let (workloads, services) = (workloads.join().unwrap(), services.join().unwrap());

    for _ in 0..12 {
        assert_eq!(send(http::Method::GET, &[], &mesh).await, 200);
    }
    for _ in 0..3 {
        assert_eq!(
            send(http::Method::GET, &[("end-user", "tester")], &mesh).await,
            502
        );
    }
    for _ in 0..2 {
        assert_eq!(send(http::Method::POST, &[], &mesh).await, 403);
    }

    let workloads: Value = serde_json::from_str(&finish(workloads)).unwrap();
    let window = workloads["window_seconds"].as_f64().unwrap();
    assert!(window >= 8.0, "{workloads:#}");
    // The frontend's proxy counted every request: 12 + 2 not 5xx, 3 × 502.
    let frontend = row(&workloads, "frontend");
    assert_eq!(counts(frontend, window), (17, 14), "{frontend:#}");
    assert_eq!(frontend["success_rate"].as_f64(), Some(14.0 / 17.0));
    assert_eq!(frontend["mtls_share"].as_f64(), Some(1.0));
    assert_eq!(frontend["meshed"], "1/1");
    assert!(
        frontend["p99_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{frontend:#}"
    );
    // The backends answered the 12 that were not aborted, split between v1 and v2.
    let (v1, v2) = (row(&workloads, "backend-v1"), row(&workloads, "backend-v2"));
    let (n1, ok1) = counts(v1, window);
    let (n2, ok2) = counts(v2, window);
    assert_eq!((n1 + n2, ok1 + ok2), (12, 12), "{workloads:#}");
    assert!(
        workloads["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["namespace"] == "prod"),
        "{workloads:#}"
    );

    let services: Value = serde_json::from_str(&finish(services)).unwrap();
    let window = services["window_seconds"].as_f64().unwrap();
    let frontend = row(&services, "frontend.prod.svc.cluster.local");
    assert_eq!(counts(frontend, window), (17, 14), "{frontend:#}");
    // The backend's service: 12 answered, and the 3 the fault aborted before any
    // backend saw them (counted by the caller's proxy only).
    let backend = row(&services, "backend.prod.svc.cluster.local");
    assert_eq!(counts(backend, window), (15, 12), "{backend:#}");
    assert_eq!(backend["success_rate"].as_f64(), Some(12.0 / 15.0));
    assert_eq!(backend["mtls_share"].as_f64(), Some(1.0));

    // `top`'s last refresh covers its whole minute: the same counts per edge.
    let top = finish(top);
    let last: Value = serde_json::from_str(top.lines().last().unwrap()).unwrap();
    let edge = |from: &str, to: &str| {
        last["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["source"] == from && e["destination"] == to)
            .unwrap_or_else(|| panic!("no edge {from} -> {to} in {last:#}"))
            .clone()
    };
    let gw = edge(
        "istio-ingressgateway.istio-system",
        "frontend.prod.svc.cluster.local",
    );
    assert_eq!(
        (gw["requests"].as_u64(), gw["successes"].as_u64()),
        (Some(17), Some(14)),
        "{gw:#}"
    );
    let to_backend = edge("frontend.prod", "backend.prod.svc.cluster.local");
    assert_eq!(
        (
            to_backend["requests"].as_u64(),
            to_backend["successes"].as_u64()
        ),
        (Some(15), Some(12)),
        "{to_backend:#}"
    );
    assert_eq!(last["edges"][0]["requests"], 17, "busiest first: {last:#}");
}
