//! `skiff proxy-status` as a process, against a real control plane on loopback.

use std::process::Command;
use std::time::Duration;

use skiff_control::{ControlOptions, MeshCompiler};
use skiff_xds::{ClientOptions, NodeInfo, SyncStatus};

const MESH: &str = "\
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
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: backend-v1
  namespace: prod
spec:
  address: 127.0.0.11
  labels:
    app: backend
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: frontend
  namespace: prod
spec:
  address: 127.0.0.12
  labels:
    app: frontend
";

fn proxy_status(debug: &str) -> std::process::Output {
    proxy_status_with(debug, &[])
}

fn proxy_status_with(debug: &str, more: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["proxy-status", "--control", debug])
        .args(more)
        .env_remove("SKIFF_CONTROL_DEBUG")
        .output()
        .expect("skiff runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_one_line_per_proxy_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), MESH).unwrap();
    let options = ControlOptions {
        xds_listen: "127.0.0.1:0".parse().unwrap(),
        debug_listen: "127.0.0.1:0".parse().unwrap(),
        ..ControlOptions::new(dir.path())
    };
    let running = skiff_control::start(options, MeshCompiler::default())
        .await
        .unwrap();
    let client = skiff_xds::connect(
        &running.xds_addr.to_string(),
        NodeInfo::new("frontend.prod"),
        ClientOptions::default(),
        |_| Ok(()),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let version = loop {
        let row = running
            .plane
            .sync()
            .row("frontend.prod", &running.plane.snapshot());
        if row.status == SyncStatus::Synced {
            break row.acked.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never synced: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    let debug = running.debug_addr.to_string();
    let out = tokio::task::spawn_blocking(move || proxy_status(&debug))
        .await
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let cells = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        cells(lines[0]),
        [
            "NAME",
            "NAMESPACE",
            "SENT",
            "ACKED",
            "STATUS",
            "AGE",
            "PROPAGATION"
        ]
    );
    assert_eq!(
        cells(lines[1])[..5],
        ["backend-v1", "prod", "-", "-", "NOT"]
    );
    let frontend = cells(lines[2]);
    assert_eq!(
        frontend[..5],
        ["frontend", "prod", &version, &version, "SYNCED"]
    );
    assert!(frontend[5].ends_with('s'), "an age: {stdout}");
    assert_eq!(frontend[6], "-", "no change since it connected: {stdout}");

    drop(client);
    running.shutdown().await.unwrap();
}

#[test]
fn an_unreachable_control_plane_is_an_error() {
    // Port 1 on loopback: nothing listens there.
    let out = proxy_status("127.0.0.1:1");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the control plane's debug endpoint at 127.0.0.1:1"),
        "{stderr}"
    );
}

async fn next(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<skiff_xds::ConfigUpdate>,
) -> skiff_xds::ConfigUpdate {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an update in time")
        .expect("the client runs")
}

/// A VirtualService with a misspelt field on line 13, column 7.
const BROKEN_ROUTE: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: backend
  namespace: prod
spec:
  hosts: [backend]
  http:
  - route:
    - destination:
        host: backend
        port: {number: 80}
      wieght: 100
";

/// A second backend, added to the mesh file by the tests that change it.
const BACKEND_V2: &str = "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: backend-v2\n  namespace: prod\nspec:\n  address: 127.0.0.13\n  labels:\n    app: backend\n";

/// A control plane on a directory holding [`MESH`], and a raw xDS client connected to
/// it as `frontend.prod`, with the updates it receives.
async fn control_with_frontend() -> (
    tempfile::TempDir,
    skiff_control::Running,
    skiff_xds::XdsClient,
    tokio::sync::mpsc::UnboundedReceiver<skiff_xds::ConfigUpdate>,
) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.yaml"), MESH).unwrap();
    let options = ControlOptions {
        xds_listen: "127.0.0.1:0".parse().unwrap(),
        debug_listen: "127.0.0.1:0".parse().unwrap(),
        debounce: skiff_control::watch::Debounce::after(Duration::from_millis(20)),
        ..ControlOptions::new(dir.path())
    };
    let running = skiff_control::start(options, MeshCompiler::default())
        .await
        .unwrap();
    let (tx, updates) = tokio::sync::mpsc::unbounded_channel();
    let client = skiff_xds::connect(
        &running.xds_addr.to_string(),
        NodeInfo::new("frontend.prod"),
        ClientOptions::default(),
        move |u| {
            let _ = tx.send(u);
            Ok(())
        },
    )
    .unwrap();
    (dir, running, client, updates)
}

/// The acceptance test of "config that keeps flowing": with one broken file in the
/// live directory, a change in another file still reaches the proxy, and
/// `skiff proxy-status` names the broken file's error with file:line and field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_does_not_stop_other_changes_and_its_error_is_shown() {
    let (dir, running, client, mut updates) = control_with_frontend().await;
    let first = next(&mut updates).await;
    let has_endpoint = |u: &skiff_xds::ConfigUpdate, ip: &str| {
        u.config()
            .clusters
            .iter()
            .any(|c| c.endpoints.iter().any(|e| e.address.ip().to_string() == ip))
    };
    assert!(has_endpoint(&first, "127.0.0.11"));

    std::fs::write(dir.path().join("route.yaml"), BROKEN_ROUTE).unwrap();
    let mut status = running.plane.subscribe_status();
    tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| !s.ok))
        .await
        .expect("the error is seen")
        .unwrap();
    // Another file changes: a second backend. It reaches the frontend's proxy.
    std::fs::write(dir.path().join("mesh.yaml"), MESH.to_owned() + BACKEND_V2).unwrap();
    let update = loop {
        let u = next(&mut updates).await;
        if has_endpoint(&u, "127.0.0.13") {
            break u;
        }
    };
    assert!(has_endpoint(&update, "127.0.0.11"));
    assert!(!running.plane.status().ok, "route.yaml is still broken");

    let debug = running.debug_addr.to_string();
    let out = tokio::task::spawn_blocking(move || proxy_status(&debug))
        .await
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    let table_end = stdout.find("\n\n").expect("a section under the table");
    assert!(stdout[..table_end].contains("backend-v2"), "{stdout}");
    let under: Vec<&str> = stdout[table_end..]
        .lines()
        .filter(|l| !l.is_empty())
        .collect();
    assert!(under[0].starts_with("configuration errors in "), "{stdout}");
    assert!(
        under.iter().any(|l| l.trim_start().starts_with(
            "error: route.yaml:13:7: VirtualService prod/backend: spec.http[0].route[0]"
        ) && l.contains("wieght")),
        "the error names file:line and field: {stdout}"
    );
    drop(client);
    running.shutdown().await.unwrap();
}

/// A file change reaches the connected proxy; `skiff proxy-status` shows how long it
/// took, in the table and as `lastChange.propagationMs` in `-o json`, and the control
/// plane's `/metrics` has the one sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shows_how_long_the_last_change_took_to_reach_each_proxy() {
    let (dir, running, client, mut updates) = control_with_frontend().await;
    next(&mut updates).await;
    let sync = running.plane.sync().clone();
    let synced = |sync: &skiff_xds::SyncTable| {
        sync.row("frontend.prod", &running.plane.snapshot()).status == SyncStatus::Synced
    };
    wait_until("synced", || synced(&sync)).await;

    std::fs::write(dir.path().join("mesh.yaml"), MESH.to_owned() + BACKEND_V2).unwrap();
    next(&mut updates).await;
    wait_until("the change applied", || {
        sync.row("frontend.prod", &running.plane.snapshot())
            .last_change
            .is_some_and(|c| c.state == skiff_xds::ChangeState::Applied)
    })
    .await;

    let debug = running.debug_addr.to_string();
    let (table, json) = tokio::task::spawn_blocking(move || {
        (
            proxy_status(&debug),
            proxy_status_with(&debug, &["-o", "json"]),
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8(table.stdout).unwrap();
    assert!(table.status.success(), "{stdout}");
    let frontend = stdout
        .lines()
        .find(|l| l.starts_with("frontend "))
        .expect("a frontend line");
    let last = frontend.split_whitespace().last().unwrap();
    assert!(
        last.ends_with("ms") || last.ends_with('s') && last.contains('.'),
        "a propagation time: {stdout}"
    );
    assert!(json.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["proxy"] == "frontend.prod")
        .expect("a frontend row");
    assert_eq!(row["lastChange"]["state"], "APPLIED", "{row}");
    assert_eq!(row["lastChange"]["generation"], 2, "{row}");
    assert!(row["lastChange"]["propagationMs"].is_u64(), "{row}");
    assert_eq!(row["status"], "SYNCED", "{row}");

    let metrics = skiff_cli_get(running.debug_addr, "/metrics").await;
    assert!(
        metrics.contains("\nskiff_config_propagation_seconds_count 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# HELP skiff_config_propagation_seconds Delay in seconds"),
        "{metrics}"
    );
    drop(client);
    running.shutdown().await.unwrap();
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The body of a GET over plain HTTP/1.0.
async fn skiff_cli_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}
