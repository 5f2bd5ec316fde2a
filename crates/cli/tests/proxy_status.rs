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
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["proxy-status", "--control", debug])
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
        ["NAME", "NAMESPACE", "SENT", "ACKED", "STATUS", "AGE"]
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
