//! A real Prometheus (Debian's `prometheus` package) scrapes the proxies of a running
//! mesh: PromQL returns the requests sent, a p99 comes out of the duration histogram,
//! and `promtool check metrics` finds nothing wrong with any endpoint.
//!
//! Then Istio's own Grafana dashboards (mesh, service and workload, from
//! `../shared/corpus/istio/dashboards` or `$SKIFF_CORPUS`) are asked, expression by
//! expression, with their template variables filled as a user viewing the backend
//! would; the number that return data must not drop below [`DASHBOARD_FLOOR`].
//! docs/observability.md says why each of the others returns nothing.
//!
//! Without `prometheus` and `promtool` on `PATH`, or without the corpus, the test (or
//! its dashboard part) passes with a note, except under CI (`CI` set), where it fails.

#[path = "shared/mesh.rs"]
mod common;
#[path = "shared/observed.rs"]
mod observed;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use common::{BACKEND_URL, MESH};
use observed::{RULES, tcp_exchange};
use serde_json::Value;
use skiff_harness::Mesh;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `prometheus` and `promtool`, or `None` (outside CI) when they are not installed.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    };
    match (find("prometheus"), find("promtool")) {
        (Some(p), Some(t)) => Some((p, t)),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "prometheus and promtool are not installed (.ci/run installs Debian's `prometheus`)"
            );
            eprintln!("note: prometheus is not installed (apt-get install prometheus); not run");
            None
        }
    }
}

/// `other` calls the backend in plain text (the backend's port is PERMISSIVE), so the
/// dashboards' panels for traffic without mutual TLS have some.
const PLAINTEXT_FROM_OTHER: &str = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: backend-plaintext-from-other
  namespace: prod
spec:
  host: backend.prod.svc.cluster.local
  workloadSelector:
    matchLabels:
      app: other
  trafficPolicy:
    tls:
      mode: DISABLE
";

/// The backend's TCP port, through its Service.
const TCP_TARGET: &str = "backend.prod.svc.cluster.local:9000";

/// Expressions of Istio's three dashboards that return data for the test mesh (of 159);
/// the count may grow, never drop.
const DASHBOARD_FLOOR: usize = 143;

/// `$SKIFF_CORPUS`, else the first `shared/corpus` next to an ancestor of this crate.
fn dashboards() -> Option<PathBuf> {
    let corpus = std::env::var_os("SKIFF_CORPUS")
        .map(PathBuf::from)
        .or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared/corpus"))
                .find(|c| c.join("istio").is_dir())
        });
    match corpus.map(|c| c.join("istio/dashboards")) {
        Some(d) if d.is_dir() => Some(d),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "Istio's dashboards (shared/corpus/istio/dashboards) are missing; set SKIFF_CORPUS"
            );
            eprintln!(
                "note: no shared/corpus/istio/dashboards (set SKIFF_CORPUS); dashboards not asked"
            );
            None
        }
    }
}

/// Every panel's `(title, expr)` of a dashboard, rows' panels included.
fn expressions(v: &Value, out: &mut Vec<(String, String)>) {
    for panel in v["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or("").to_owned();
        for t in panel["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push((title.clone(), e.to_owned()));
            }
        }
        expressions(panel, out);
    }
}

/// The template variables as a user sets them: the backend's service, `workload` (the
/// backend, or the frontend that calls it), each "All" as a regex that matches every
/// value.
fn fill(expr: &str, workload: &str) -> String {
    let vars = [
        ("__rate_interval", "1m"),
        ("service", "backend.prod.svc.cluster.local"),
        ("namespace", "prod"),
        ("workload", workload),
        ("qrep", "destination"),
        ("srccluster", ".*"),
        ("srcns", ".*"),
        ("srcwl", ".*"),
        ("dstcluster", ".*"),
        ("dstns", ".*"),
        ("dstwl", ".*"),
        ("dstsvc", ".*"),
    ];
    let mut e = expr.to_owned();
    for (name, value) in vars {
        e = e
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    e
}

/// Asks Prometheus every expression of Istio's dashboards; returns how many returned
/// data, and the others with their panel.
async fn ask_dashboards(prom: SocketAddr, dir: &Path) -> anyhow::Result<(usize, Vec<String>)> {
    let mut all = Vec::new();
    for name in [
        "istio-mesh-dashboard.gen.json",
        "istio-service-dashboard.json",
        "istio-workload-dashboard.json",
    ] {
        let text = std::fs::read_to_string(dir.join(name)).with_context(|| name.to_owned())?;
        let v: Value = serde_json::from_str(&text).with_context(|| name.to_owned())?;
        let mut exprs = Vec::new();
        expressions(&v, &mut exprs);
        all.extend(exprs.into_iter().map(|(t, e)| (name, t, e)));
    }
    ensure!(
        all.len() == 159,
        "Istio's dashboards hold 159 expressions, found {}",
        all.len()
    );
    let mut with_data = 0;
    let mut empty = Vec::new();
    for (dashboard, title, expr) in &all {
        // The workload dashboard is looked at for both workloads: the backend's shows
        // what comes in, the frontend's what goes out.
        let mut has_data = false;
        for workload in ["backend", "frontend"] {
            let q = fill(expr, workload);
            let r = query(prom, &q)
                .await
                .with_context(|| format!("{dashboard} {title:?}: {q}"))?;
            has_data |= r.iter().any(|s| value(s).is_finite());
            if has_data || !expr.contains("$workload") {
                break;
            }
        }
        if has_data {
            with_data += 1;
        } else {
            empty.push(format!(
                "{dashboard} / {title}: {}",
                expr.replace('\n', " ")
            ));
        }
    }
    Ok((with_data, empty))
}

/// Requests of every kind (200, fault 503, policy 403) and a TCP connection, over and
/// over for at most a minute; returns only on an error.
async fn load(mesh: &Mesh) -> anyhow::Result<()> {
    for _ in 0..600 {
        for path in ["", "", "fault", "denied"] {
            mesh.get_via("frontend.prod", &format!("{BACKEND_URL}{path}"))
                .await?;
        }
        tcp_exchange(mesh, "frontend.prod", TCP_TARGET).await?;
        let r = mesh.get_via("other.prod", BACKEND_URL).await?;
        ensure!(r.status == 200, "other to backend: {} {}", r.status, r.body);
        tcp_exchange(mesh, "other.prod", TCP_TARGET).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the dashboards took more than a minute")
}

/// A plain HTTP/1.1 GET; the body of a 200.
async fn get(addr: SocketAddr, path_and_query: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP head")?;
    ensure!(
        head.starts_with("HTTP/1.1 200"),
        "GET {path_and_query}: {head}"
    );
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok(if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn percent_encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs an instant query; the `result` array.
async fn query(prom: SocketAddr, q: &str) -> anyhow::Result<Vec<Value>> {
    let body = get(prom, &format!("/api/v1/query?query={}", percent_encode(q))).await?;
    let v: Value = serde_json::from_str(&body).with_context(|| body.clone())?;
    ensure!(v["status"] == "success", "{q}: {body}");
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Polls `check` on `q` until it holds (Prometheus scrapes every second), at most 30 s.
async fn until_query(
    prom: SocketAddr,
    q: &str,
    mut check: impl FnMut(&[Value]) -> bool,
) -> anyhow::Result<Vec<Value>> {
    let mut last = Vec::new();
    for _ in 0..300 {
        if let Ok(r) = query(prom, q).await {
            if check(&r) {
                return Ok(r);
            }
            last = r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{q}: never as expected; last {last:#?}")
}

fn value(v: &Value) -> f64 {
    v["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Kills the Prometheus it holds when dropped.
struct Running(tokio::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_mesh_and_promql_counts_the_requests() -> anyhow::Result<()> {
    let Some((prometheus, promtool)) = tools() else {
        return Ok(());
    };
    // The backend's Service with a TCP port beside its HTTP one, so the service
    // dashboard's TCP panels have the backend's traffic.
    let http_port = "  - name: http\n    port: 80\n    targetPort: 8080\n";
    assert!(MESH.contains(http_port));
    let mesh_yaml = MESH.replace(
        http_port,
        &format!("{http_port}  - name: tcp\n    port: 9000\n    targetPort: 9090\n"),
    );
    let mesh = Mesh::start(&[
        ("mesh.yaml", &mesh_yaml),
        ("rules.yaml", RULES),
        ("plaintext.yaml", PLAINTEXT_FROM_OTHER),
    ])
    .await?;
    for (path, n, status) in [("", 5, 200), ("fault", 3, 503), ("denied", 2, 403)] {
        for _ in 0..n {
            let r = mesh
                .get_via("frontend.prod", &format!("{BACKEND_URL}{path}"))
                .await?;
            assert_eq!(r.status, status, "{}", r.body);
        }
    }
    mesh.log_line("backend.prod", "\"GET /denied").await?;
    let targets: Vec<SocketAddr> = ["frontend.prod", "backend.prod"]
        .iter()
        .map(|w| mesh.proxy(w).proxy().admin_addr())
        .collect();

    // Every endpoint passes promtool's checks (format and Prometheus' naming rules),
    // the control plane's too.
    let control = mesh.control().debug_addr;
    let endpoints = targets
        .iter()
        .map(|t| (*t, "/stats/prometheus", "istio_requests_total{"))
        .chain([(control, "/metrics", "pilot_proxy_convergence_time_bucket{")]);
    for (t, path, expected) in endpoints {
        let text = get(t, path).await?;
        ensure!(text.contains(expected), "{text}");
        let mut check = tokio::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        check
            .stdin
            .take()
            .context("stdin")?
            .write_all(text.as_bytes())
            .await?;
        let out = check.wait_with_output().await?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // One lint is Istio's own choice of name, which dashboards depend on: a duration
        // in milliseconds. Every other problem (format or naming) fails.
        let problems: Vec<&str> = said
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| {
                *l != "istio_request_duration_milliseconds use base unit \"seconds\" instead of \"milliseconds\""
            })
            .collect();
        ensure!(problems.is_empty(), "promtool on {t}: {said}");
        ensure!(
            out.status.success() || (out.status.code() == Some(3) && !said.is_empty()),
            "promtool on {t} failed: {said}"
        );
    }

    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let prom: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n- job_name: skiff\n  metrics_path: /stats/prometheus\n  static_configs:\n  - targets: [{}]\n",
        list.join(", ")
    );
    std::fs::write(dir.path().join("prometheus.yml"), config)?;
    let child = tokio::process::Command::new(&prometheus)
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={prom}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting prometheus")?;
    let _running = Running(child);

    until_query(prom, "up", |r| {
        r.len() == 2 && r.iter().all(|s| value(s) == 1.0)
    })
    .await?;
    let q = "sum(istio_requests_total{reporter=\"destination\"}) by (source_workload, destination_service, response_code)";
    let r = until_query(prom, q, |r| r.len() == 2).await?;
    let mut got: Vec<(String, String, String, f64)> = r
        .iter()
        .map(|s| {
            let m = &s["metric"];
            let l = |k: &str| m[k].as_str().unwrap_or("").to_owned();
            (
                l("source_workload"),
                l("destination_service"),
                l("response_code"),
                value(s),
            )
        })
        .collect();
    got.sort_by(|a, b| a.2.cmp(&b.2));
    let backend = "backend.prod.svc.cluster.local".to_owned();
    assert_eq!(
        got,
        [
            (
                "frontend".to_owned(),
                backend.clone(),
                "200".to_owned(),
                5.0
            ),
            ("frontend".to_owned(), backend, "403".to_owned(), 2.0),
        ]
    );
    let source = "sum(istio_requests_total{reporter=\"source\",response_flags=\"FI\"})";
    let r = until_query(prom, source, |r| r.len() == 1).await?;
    assert_eq!(value(&r[0]), 3.0, "the fault's 503s, on the caller only");

    // A p99 from the rate of the buckets: requests while Prometheus watches (those
    // above were all sent before its first scrape, so their rate is 0).
    for path in ["", "", "", "fault", "denied"] {
        mesh.get_via("frontend.prod", &format!("{BACKEND_URL}{path}"))
            .await?;
    }
    // Two TCP connections, a scrape apart, so their counters have a rate.
    tcp_exchange(&mesh, "frontend.prod", TCP_TARGET).await?;
    let closed = "istio_tcp_connections_closed_total{reporter=\"destination\"}";
    until_query(prom, closed, |r| r.len() == 1).await?;
    tcp_exchange(&mesh, "frontend.prod", TCP_TARGET).await?;
    let p99 = "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket[1m])) by (le))";
    let r = until_query(prom, p99, |r| r.len() == 1 && value(&r[0]).is_finite()).await?;
    let ms = value(&r[0]);
    assert!(
        ms > 0.0 && ms <= 3_600_000.0,
        "p99 {ms} ms within Istio's buckets"
    );

    // Istio's dashboards, once the TCP counters have moved too.
    let Some(dir) = dashboards() else {
        return Ok(());
    };
    let tcp = "sum(rate(istio_tcp_sent_bytes_total{reporter=\"destination\"}[1m]))";
    until_query(prom, tcp, |r| r.len() == 1 && value(&r[0]) > 0.0).await?;
    // Asked while traffic flows, as a dashboard is watched: most panels use `irate`,
    // the rate between the last two scrapes.
    let (with_data, empty) = tokio::select! {
        asked = async {
            // Once two scrapes have seen the traffic move.
            let moving = "sum(irate(istio_tcp_sent_bytes_total{reporter=\"destination\"}[1m])) > 0 and sum(irate(istio_requests_total{reporter=\"destination\"}[1m])) > 0 and sum(irate(istio_tcp_sent_bytes_total{connection_security_policy=\"none\"}[1m])) > 0 and sum(irate(istio_requests_total{connection_security_policy=\"none\"}[1m])) > 0";
            until_query(prom, moving, |r| r.len() == 1).await?;
            ask_dashboards(prom, &dir).await
        } => asked?,
        failed = load(&mesh) => return failed,
    };
    eprintln!(
        "Istio's dashboards: {with_data} of 159 expressions return data; without:\n{}",
        empty.join("\n")
    );
    assert!(
        with_data >= DASHBOARD_FLOOR,
        "{with_data} dashboard expressions return data, fewer than the floor of {DASHBOARD_FLOOR}; without data:\n{}",
        empty.join("\n")
    );
    Ok(())
}
