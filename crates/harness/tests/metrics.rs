//! Istio's standard metrics through real proxies: a known number of requests (200s, 503s
//! from a fault, 403s from a policy) and the exact series both reporters show.

#[path = "shared/mesh.rs"]
mod common;
#[path = "shared/observed.rs"]
mod observed;
#[path = "shared/samples.rs"]
mod samples;

use common::{BACKEND_URL, MESH};
use observed::{RULES, TCP_SERVICE, tcp_exchange};
use samples::{find, parse};
use skiff_harness::Mesh;

const FRONTEND: &[(&str, &str)] = &[
    ("source_workload", "frontend"),
    ("source_workload_namespace", "prod"),
    ("source_app", "frontend"),
    ("source_version", "unknown"),
    ("source_canonical_service", "frontend"),
    ("source_canonical_revision", "latest"),
    ("source_cluster", "Kubernetes"),
    ("destination_service", "backend.prod.svc.cluster.local"),
    ("destination_service_name", "backend"),
    ("destination_service_namespace", "prod"),
    ("request_protocol", "http"),
    ("grpc_response_status", ""),
];

const BACKEND: &[(&str, &str)] = &[
    ("destination_workload", "backend"),
    ("destination_workload_namespace", "prod"),
    (
        "destination_principal",
        "spiffe://cluster.local/ns/prod/sa/backend",
    ),
    ("destination_app", "backend"),
    ("destination_version", "unknown"),
    ("destination_canonical_service", "backend"),
    ("destination_canonical_revision", "latest"),
    ("destination_cluster", "Kubernetes"),
];

fn with<'a>(a: &[(&'a str, &'a str)], b: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    a.iter().chain(b).copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_reporters_count_each_request_with_istio_labels() -> anyhow::Result<()> {
    let mesh = Mesh::start(&[("mesh.yaml", MESH), ("rules.yaml", RULES)]).await?;
    for _ in 0..5 {
        let r = mesh.get_via("frontend.prod", BACKEND_URL).await?;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    for _ in 0..3 {
        let r = mesh
            .get_via("frontend.prod", &format!("{BACKEND_URL}fault"))
            .await?;
        assert_eq!(r.status, 503, "{}", r.body);
    }
    for _ in 0..2 {
        let r = mesh
            .get_via("frontend.prod", &format!("{BACKEND_URL}denied"))
            .await?;
        assert_eq!(r.status, 403, "{}", r.body);
    }
    // The last access-log lines are written when the records finish: so are the metrics.
    mesh.log_line("backend.prod", "\"GET /denied").await?;

    let src = parse(&mesh.proxy("frontend.prod").proxy().prometheus_text());
    let dst = parse(&mesh.proxy("backend.prod").proxy().prometheus_text());
    let total = "istio_requests_total";

    // The caller's view: every request, whoever answered.
    let source_mtls = [
        ("reporter", "source"),
        (
            "source_principal",
            "spiffe://cluster.local/ns/prod/sa/frontend",
        ),
        ("connection_security_policy", "unknown"),
    ];
    let ok = find(
        &src,
        total,
        &[
            with(FRONTEND, &source_mtls),
            with(
                BACKEND,
                &[("response_code", "200"), ("response_flags", "-")],
            ),
        ]
        .concat(),
    );
    assert_eq!(ok.len(), 1, "{src:#?}");
    assert_eq!(ok[0].value, 5.0);
    assert_eq!(
        ok[0].labels.len(),
        25,
        "Istio's label set: {:?}",
        ok[0].labels
    );
    let denied = find(
        &src,
        total,
        &[
            with(FRONTEND, &source_mtls),
            with(
                BACKEND,
                &[("response_code", "403"), ("response_flags", "-")],
            ),
        ]
        .concat(),
    );
    assert_eq!(denied.len(), 1, "{src:#?}");
    assert_eq!(denied[0].value, 2.0);
    // The fault answers before any upstream is chosen: the destination is unknown.
    let fault = find(
        &src,
        total,
        &with(
            FRONTEND,
            &[
                ("reporter", "source"),
                ("response_code", "503"),
                ("response_flags", "FI"),
                ("destination_workload", "unknown"),
                ("destination_principal", "unknown"),
            ],
        ),
    );
    assert_eq!(fault.len(), 1, "{src:#?}");
    assert_eq!(fault[0].value, 3.0);
    let all: f64 = find(&src, total, &[]).iter().map(|s| s.value).sum();
    assert_eq!(all, 10.0, "the caller counts each request once");

    // The callee's view: what reached it, from whom the transport header named.
    let dest_view = [
        ("reporter", "destination"),
        (
            "source_principal",
            "spiffe://cluster.local/ns/prod/sa/frontend",
        ),
        ("connection_security_policy", "mutual_tls"),
    ];
    let ok = find(
        &dst,
        total,
        &[
            with(FRONTEND, &dest_view),
            with(
                BACKEND,
                &[("response_code", "200"), ("response_flags", "-")],
            ),
        ]
        .concat(),
    );
    assert_eq!(ok.len(), 1, "{dst:#?}");
    assert_eq!(ok[0].value, 5.0);
    let denied: Vec<_> = find(
        &dst,
        total,
        &[
            with(FRONTEND, &dest_view),
            with(BACKEND, &[("response_code", "403")]),
        ]
        .concat(),
    );
    assert_eq!(denied.len(), 1, "{dst:#?}");
    assert_eq!(denied[0].value, 2.0);
    let all: f64 = find(&dst, total, &[]).iter().map(|s| s.value).sum();
    assert_eq!(all, 7.0, "the fault's requests never reach the backend");

    // The histograms count the same requests, in Istio's buckets.
    let count = find(
        &dst,
        "istio_request_duration_milliseconds_count",
        &[("reporter", "destination"), ("response_code", "200")],
    );
    assert_eq!(count.len(), 1);
    assert_eq!(count[0].value, 5.0);
    let les: Vec<&str> = find(
        &dst,
        "istio_request_duration_milliseconds_bucket",
        &[("response_code", "200")],
    )
    .iter()
    .map(|s| s.labels["le"].as_str())
    .collect();
    assert_eq!(
        les,
        [
            "0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000",
            "10000", "30000", "60000", "300000", "600000", "1.8e+06", "3.6e+06", "+Inf"
        ]
    );
    let inf = find(
        &dst,
        "istio_request_duration_milliseconds_bucket",
        &[("response_code", "200"), ("le", "+Inf")],
    );
    assert_eq!(inf[0].value, 5.0);
    let resp_bytes = find(
        &src,
        "istio_response_bytes_count",
        &[("response_code", "200")],
    );
    assert_eq!(resp_bytes[0].value, 5.0);
    assert!(
        find(
            &src,
            "istio_response_bytes_sum",
            &[("response_code", "200")]
        )[0]
        .value
            > 0.0,
        "the 200s had bodies"
    );
    // The process metrics beside them.
    assert_eq!(find(&src, "process_cpu_seconds_total", &[]).len(), 1);
    assert!(find(&src, "process_resident_memory_bytes", &[])[0].value > 0.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_are_counted_on_both_reporters() -> anyhow::Result<()> {
    let mesh = Mesh::start(&[("mesh.yaml", MESH), ("tcp.yaml", TCP_SERVICE)]).await?;
    let target = "backend-tcp.prod.svc.cluster.local:9000";
    let mut sent = 0;
    let mut received = 0;
    for _ in 0..2 {
        let (s, r) = match tcp_exchange(&mesh, "frontend.prod", target).await {
            Ok(x) => x,
            Err(e) => anyhow::bail!(
                "{e}\nfrontend: {:#?}\nbackend: {:#?}",
                mesh.logs("frontend.prod"),
                mesh.logs("backend.prod")
            ),
        };
        sent += s;
        received += r;
    }
    // Both records are finished when both sides have closed: wait for the log lines.
    for w in ["frontend.prod", "backend.prod"] {
        for _ in 0..100 {
            if mesh
                .logs(w)
                .iter()
                .filter(|l| l.contains("\"- - -\""))
                .count()
                >= 2
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let tcp_service = [
        ("destination_service", "backend-tcp.prod.svc.cluster.local"),
        ("destination_service_name", "backend-tcp"),
        ("destination_service_namespace", "prod"),
        ("source_workload", "frontend"),
        ("destination_workload", "backend"),
        ("request_protocol", "tcp"),
        ("response_flags", "-"),
    ];
    for (proxy, reporter, security) in [
        ("frontend.prod", "source", "unknown"),
        ("backend.prod", "destination", "mutual_tls"),
    ] {
        let samples = parse(&mesh.proxy(proxy).proxy().prometheus_text());
        let want = with(
            &tcp_service,
            &[
                ("reporter", reporter),
                ("connection_security_policy", security),
            ],
        );
        let one = |name: &str| {
            let found = find(&samples, name, &want);
            assert_eq!(found.len(), 1, "{proxy} {name}: {samples:#?}");
            assert_eq!(found[0].labels.len(), 23, "{:?}", found[0].labels);
            found[0].value
        };
        assert_eq!(one("istio_tcp_connections_opened_total"), 2.0, "{proxy}");
        assert_eq!(one("istio_tcp_connections_closed_total"), 2.0, "{proxy}");
        assert_eq!(
            one("istio_tcp_received_bytes_total"),
            sent as f64,
            "{proxy}"
        );
        assert_eq!(
            one("istio_tcp_sent_bytes_total"),
            received as f64,
            "{proxy}"
        );
    }
    Ok(())
}

/// A plain HTTP/1.1 GET of `path` on `addr`; the whole answer.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).await?;
    anyhow::ensure!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    Ok(raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_lists_scrape_targets_and_counts_pushes() -> anyhow::Result<()> {
    let mesh = Mesh::start(&[("mesh.yaml", MESH)]).await?;
    let debug = mesh.control().debug_addr;

    let sd = http_get(debug, "/debug/prometheus_sd").await?;
    let body = sd.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    for w in ["backend.prod", "frontend.prod", "other.prod"] {
        let target = format!("{}:15020", mesh.ip(w.split('.').next().unwrap()));
        assert!(body.contains(&target), "{w} at {target}: {body}");
        assert!(
            body.contains(&format!("\"proxy\":\"{w}\""))
                || body.contains(&format!("\"proxy\": \"{w}\"")),
            "{body}"
        );
    }
    assert!(body.contains("/stats/prometheus"), "{body}");

    let metrics = http_get(debug, "/metrics").await?;
    let samples = parse(metrics.split_once("\r\n\r\n").map_or("", |(_, b)| b));
    let one = |name: &str| {
        let found = find(&samples, name, &[]);
        assert_eq!(found.len(), 1, "{name}: {samples:#?}");
        found[0].value
    };
    assert_eq!(one("pilot_xds"), 3.0, "three proxies connected");
    assert!(
        one("pilot_xds_pushes_total") >= 3.0,
        "each proxy got its config"
    );
    let rejects: f64 = find(&samples, "pilot_total_xds_rejects_total", &[])
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(rejects, 0.0, "no proxy rejected its config");

    // A change every proxy sees: once all three have ACKed it, the control plane has
    // its propagation time, and each proxy's row shows its own.
    let before = mesh.control().plane.snapshot().generation();
    mesh.write_config("external.yaml", EXTERNAL).await?;
    mesh.wait_synced().await?;
    let generation = mesh.control().plane.snapshot().generation();
    let rows = mesh
        .control()
        .plane
        .sync()
        .rows(&mesh.control().plane.snapshot());
    for row in &rows {
        let change = row.last_change.as_ref().expect("a last change");
        // The write's change (one write may be read in more than one reload: the
        // file's creation and its contents can be two events).
        assert!(
            change.generation > before && change.generation <= generation,
            "{before} {generation} {row:?}"
        );
        assert_eq!(change.state, skiff_xds::ChangeState::Applied, "{row:?}");
        assert!(change.propagation_ms.is_some(), "{row:?}");
    }
    let metrics = http_get(debug, "/metrics").await?;
    let samples = parse(metrics.split_once("\r\n\r\n").map_or("", |(_, b)| b));
    let one = |name: &str| {
        let found = find(&samples, name, &[]);
        assert_eq!(found.len(), 1, "{name}: {samples:#?}");
        found[0].value
    };
    // The file event and the harness's own reload load the same files: one of them
    // publishes the change, the other changes nothing.
    assert_eq!(one("skiff_config_propagation_seconds_count"), 1.0);
    assert!(one("pilot_proxy_convergence_time_count") >= 3.0);
    assert!(find(&samples, "skiff_config_propagation_incomplete_total", &[]).is_empty());
    Ok(())
}

/// A ServiceEntry every proxy gets a cluster for.
const EXTERNAL: &str = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: external
  namespace: prod
spec:
  hosts: [api.example.com]
  ports:
  - number: 8443
    name: tcp
    protocol: TCP
  resolution: STATIC
  endpoints:
  - address: 127.0.0.99
";
