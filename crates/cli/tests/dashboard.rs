//! `skiff up examples/canary --dashboard` with traffic flowing through the gateway,
//! looked at in a real browser: headless Chromium (Debian's `chromium`) driven by
//! Playwright's `playwright-core` (`tests/browser`, `npm ci` there) loads the page; the
//! service graph must show the canary's nodes and an edge with traffic into each
//! service and workload, every hop locked (mutual TLS). A screenshot is saved under
//! the target directory (`dashboard.png`); docs/dashboard.png is one of them.
//!
//! A second test points `skiff dashboard --prometheus` at Debian's `prometheus`, which
//! finds the canary's proxies through the control plane's `/debug/prometheus_sd`.
//!
//! Without `node`, Chromium or `tests/browser/node_modules` (or `prometheus`), a test
//! passes with a note, except under CI (`CI` set), where it fails.

#[path = "support/mesh.rs"]
mod mesh;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mesh::{Mesh, client, get, get_path};
use serde_json::Value;

/// `node`, the browser and the test's npm packages, or `None` (outside CI) without them.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let node = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("node"))
            .find(|p| p.is_file())
    });
    let chromium =
        PathBuf::from(std::env::var_os("CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into()));
    let packages = dir.join("node_modules/playwright-core").is_dir();
    match (node, chromium.is_file(), packages) {
        (Some(node), true, true) => Some((node, dir)),
        (node, chromium_there, _) => {
            let missing = format!(
                "node: {}, chromium ({}): {}, tests/browser/node_modules: {}",
                node.is_some(),
                chromium.display(),
                chromium_there,
                packages
            );
            assert!(
                std::env::var_os("CI").is_none(),
                "the browser test needs node, chromium and `npm ci` in crates/cli/tests/browser ({missing}); .ci/run installs them"
            );
            eprintln!(
                "note: the dashboard's browser test is not run ({missing}): apt-get install chromium nodejs npm; npm ci in crates/cli/tests/browser"
            );
            None
        }
    }
}

const NET: u8 = 58;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_canary_graph_in_a_browser() {
    let Some((node, dir)) = tools() else {
        return;
    };
    let listen = format!("127.0.{NET}.1:20001");
    let mesh = Mesh::start_example(
        "canary",
        NET,
        &[],
        &["--dashboard", "--dashboard-listen", &listen],
    );
    assert!(
        mesh.log()
            .contains(&format!("dashboard      http://{listen}/")),
        "{}",
        mesh.log()
    );

    // Traffic through the gateway, about 20 requests a second, until the test ends;
    // some with `x-canary: true`, so v2 always has some.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, gateway) = (stop.clone(), mesh.gateway());
        tokio::spawn(async move {
            let client = client();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) && sent < 6000 {
                let canary: &[(&str, &str)] = if sent.is_multiple_of(4) {
                    &[("x-canary", "true")]
                } else {
                    &[]
                };
                let (status, body) = get(&client, gateway, canary).await.unwrap();
                assert_eq!(status, 200, "{body}");
                sent += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let addr = listen.parse().unwrap();
    mesh.wait_for("the dashboard", Duration::from_secs(20), || {
        std::thread::sleep(Duration::from_millis(100));
        std::net::TcpStream::connect(addr).is_ok()
    });
    // The API beside the page: every proxy synced and scraped; findings are analyze's.
    let (status, body) = get_path(addr, "/api/proxies").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let proxies: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        proxies["proxies"].as_array().unwrap().len(),
        4,
        "{proxies:#}"
    );
    let (status, body) = get_path(addr, "/api/findings").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let findings: Value = serde_json::from_str(&body).unwrap();
    assert!(findings["analyze"].is_array(), "{findings:#}");
    assert_eq!(findings["ok"], true, "{findings:#}");

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let nodes = [
        "istio-ingressgateway.istio-system",
        "frontend.prod.svc.cluster.local",
        "frontend.prod",
        "backend.prod.svc.cluster.local",
        "backend-v1.prod",
        "backend-v2.prod",
    ];
    let run = tokio::process::Command::new(node)
        .arg(dir.join("dashboard.mjs"))
        .arg(format!("http://{listen}/"))
        .arg(&shot)
        .args(nodes)
        .arg("--")
        .args(&nodes[1..])
        .current_dir(&dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the browser test took more than 90 s")
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser test failed: {}\n{stdout}\nskiff up printed:\n{}",
        String::from_utf8_lossy(&out.stderr),
        mesh.log()
    );
    let state: Value = serde_json::from_str(stdout.trim()).unwrap();
    let label = |id: &Value| {
        state["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == *id)
            .map(|n| n["label"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let edges: Vec<(String, String, f64, bool)> = state["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                label(&e["source"]),
                label(&e["target"]),
                e["rps"].as_f64().unwrap(),
                e["secure"].as_bool().unwrap(),
            )
        })
        .collect();
    for (from, to) in [
        (nodes[0], nodes[1]),
        (nodes[1], nodes[2]),
        (nodes[2], nodes[3]),
        (nodes[3], nodes[4]),
        (nodes[3], nodes[5]),
    ] {
        let edge = edges
            .iter()
            .find(|(a, b, ..)| a == from && b == to)
            .unwrap_or_else(|| panic!("no edge {from} -> {to} in the page's graph: {edges:?}"));
        assert!(edge.2 > 0.0, "{from} -> {to} has no traffic: {edges:?}");
        assert!(edge.3, "{from} -> {to} is not mutual TLS: {edges:?}");
    }
    assert!(
        state["locks"].as_u64().unwrap() >= 5,
        "a lock on every edge: {state:#}"
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
    eprintln!("screenshot: {}", shot.display());
}

/// `prometheus` on `PATH`, or `None` (outside CI) without it.
fn prometheus() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus is not installed (.ci/run installs Debian's `prometheus`)"
        );
        eprintln!("note: prometheus is not installed (apt-get install prometheus); not run");
    }
    found
}

/// Kills the Prometheus it holds when dropped.
struct Running(tokio::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// With `--prometheus`, the dashboard asks a real Prometheus (which finds the proxies
/// through the control plane's `/debug/prometheus_sd`) instead of scraping: the same
/// graph, every edge with traffic and mutual TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_reads_the_graph_from_prometheus() {
    let Some(prometheus) = prometheus() else {
        return;
    };
    let net = 60;
    let mesh = Mesh::start(net);
    let dir = tempfile::tempdir().unwrap();
    let prom = format!("127.0.{net}.1:19090");
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n- job_name: skiff\n  http_sd_configs:\n  - url: http://{}/debug/prometheus_sd\n    refresh_interval: 1s\n",
            mesh.control_debug()
        ),
    )
    .unwrap();
    let _prometheus = Running(
        tokio::process::Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap(),
    );
    let listen = format!("127.0.{net}.1:20001");
    let dashboard = tokio::process::Command::new(mesh::skiff())
        .args([
            "dashboard",
            "--no-browser",
            "--listen",
            &listen,
            "--control",
        ])
        .arg(mesh.control_debug().to_string())
        .arg("--prometheus")
        .arg(format!("http://{prom}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let _dashboard = Running(dashboard);

    let (client, gateway) = (client(), mesh.gateway());
    let addr = listen.parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let wanted = [
        (
            "istio-ingressgateway.istio-system",
            "frontend.prod.svc.cluster.local",
        ),
        ("frontend.prod.svc.cluster.local", "frontend.prod"),
        ("frontend.prod", "backend.prod.svc.cluster.local"),
        ("backend.prod.svc.cluster.local", "backend-v1.prod"),
    ];
    let mut last = String::new();
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dashboard's graph from Prometheus never held {wanted:?}; last: {last}"
        );
        for _ in 0..10 {
            let (status, body) = get(&client, gateway, &[]).await.unwrap();
            assert_eq!(status, 200, "{body}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok((200, body)) = get_path(addr, "/api/graph?window=60").await else {
            continue;
        };
        let graph: Value = serde_json::from_str(&body).unwrap();
        let label = |id: &Value| {
            graph["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["id"] == *id)
                .and_then(|n| n["label"].as_str())
                .unwrap_or("")
                .to_owned()
        };
        let edges: Vec<(String, String, f64, Option<f64>)> = graph["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    label(&e["source"]),
                    label(&e["target"]),
                    e["rps"].as_f64().unwrap_or(0.0),
                    e["mtls_share"].as_f64(),
                )
            })
            .collect();
        let holds = wanted.iter().all(|(from, to)| {
            edges
                .iter()
                .any(|(a, b, rps, mtls)| a == from && b == to && *rps > 0.0 && *mtls == Some(1.0))
        });
        if holds {
            break;
        }
        last = format!("{edges:?}");
    }
    let (status, body) = get_path(addr, "/api/services").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let services: Value = serde_json::from_str(&body).unwrap();
    let frontend = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "frontend.prod.svc.cluster.local")
        .unwrap_or_else(|| panic!("{services:#}"))
        .clone();
    assert!(
        frontend["last_minute"]["requests"].as_u64().unwrap() > 0,
        "{frontend:#}"
    );
}
