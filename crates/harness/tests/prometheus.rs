//! A real Prometheus (Debian's `prometheus` package) scrapes the proxies of a running
//! mesh: PromQL returns the requests sent, a p99 comes out of the duration histogram,
//! and `promtool check metrics` finds nothing wrong with any endpoint.
//!
//! Without `prometheus` and `promtool` on `PATH` the test passes with a note, except
//! under CI (`CI` set), where it fails.

#[path = "shared/mesh.rs"]
mod common;
#[path = "shared/observed.rs"]
mod observed;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use common::{BACKEND_URL, MESH};
use observed::RULES;
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
        body = &rest[n..].trim_start_matches("\r\n");
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
    let mesh = Mesh::start(&[("mesh.yaml", MESH), ("rules.yaml", RULES)]).await?;
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

    // Every endpoint passes promtool's checks (format and Prometheus' naming rules).
    for t in &targets {
        let text = get(*t, "/stats/prometheus").await?;
        ensure!(text.contains("istio_requests_total{"), "{text}");
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
    for _ in 0..5 {
        let r = mesh.get_via("frontend.prod", BACKEND_URL).await?;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let p99 = "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket[1m])) by (le))";
    let r = until_query(prom, p99, |r| r.len() == 1 && value(&r[0]).is_finite()).await?;
    let ms = value(&r[0]);
    assert!(
        ms > 0.0 && ms <= 3_600_000.0,
        "p99 {ms} ms within Istio's buckets"
    );
    Ok(())
}
