//! `skiff up` keeps the mesh in step with its directory and alive, as real processes:
//! a WorkloadEntry added while it runs gets its proxy and app, one removed has them
//! stopped; an app or proxy that dies is started again; the summary says "app running"
//! only once the app's port answers.

#[path = "support/mesh.rs"]
mod mesh;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use mesh::{Mesh, client, get};

/// A third backend version, added while the mesh runs (its address is moved to the
/// test's range by the harness).
fn backend_v3(net: u8) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: backend-v3
  namespace: prod
  annotations:
    skiff.dev/run: \"skiff sample-app --listen $SKIFF_ADDRESS:8080 --version 3.0.0 --name $SKIFF_WORKLOAD\"
spec:
  address: 127.0.{net}.13
  serviceAccount: backend
  labels:
    app: backend
    version: v3
"
    )
}

fn answers(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_added_while_running_starts_and_removed_stops() {
    let net = 28;
    let mesh = Mesh::start(net);
    let summary = mesh.log();
    for w in ["backend-v1.prod", "backend-v2.prod", "frontend.prod"] {
        assert!(
            summary
                .lines()
                .any(|l| l.contains(&format!("workload       {w}")) && l.ends_with("app running")),
            "{w} app running: {summary}"
        );
    }
    let v3_app = SocketAddr::new(mesh.workload(13), 8080);
    let v3_admin = SocketAddr::new(mesh.workload(13), 15000);
    assert!(!answers(v3_admin));

    std::fs::write(mesh.dir.path().join("15-backend-v3.yaml"), backend_v3(net)).unwrap();
    mesh.wait_for("backend-v3 to start", Duration::from_secs(30), || {
        mesh.log().contains("skiff up: started backend-v3.prod at")
    });
    let started = mesh.log();
    let line = started
        .lines()
        .find(|l| l.contains("skiff up: started backend-v3.prod"))
        .unwrap();
    assert!(line.ends_with("app running)"), "{line}");
    assert!(answers(v3_admin), "its proxy runs");
    assert!(answers(v3_app), "its app answers");
    let (status, body) = mesh::get_path(v3_admin, "/ready").await.unwrap();
    assert_eq!(status, 200, "its proxy has its config: {body}");

    // Its app's command changes: both are started again.
    std::fs::write(
        mesh.dir.path().join("15-backend-v3.yaml"),
        backend_v3(net).replace("3.0.0", "3.0.1"),
    )
    .unwrap();
    mesh.wait_for("backend-v3 to restart", Duration::from_secs(30), || {
        let log = mesh.log();
        log.contains("skiff up: stopped backend-v3.prod (its workload changed)")
            && log.matches("skiff up: started backend-v3.prod at").count() == 2
    });
    let body = mesh::get_path(v3_app, "/").await.unwrap().1;
    assert!(
        body.contains("Version: 3.0.1"),
        "the new command runs: {body}"
    );

    std::fs::remove_file(mesh.dir.path().join("15-backend-v3.yaml")).unwrap();
    mesh.wait_for("backend-v3 to stop", Duration::from_secs(30), || {
        mesh.log()
            .contains("skiff up: stopped backend-v3.prod (its workload is gone)")
    });
    assert!(!answers(v3_app), "its app is stopped");
    assert!(!answers(v3_admin), "its proxy is stopped");
    let marker = format!("127.0.{net}.13");
    assert!(
        mesh.processes()
            .iter()
            .all(|(_, cmd)| !cmd.contains(&marker)),
        "nothing of backend-v3 is left: {:?}",
        mesh.processes()
    );
    // The rest of the mesh was not touched.
    let (status, body) = get(&client(), mesh.gateway(), &[]).await.unwrap();
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_app_and_a_dead_proxy_are_restarted_with_backoff() {
    let net = 29;
    let mesh = Mesh::start_example("canary", net, &[], &["--restart-backoff-ms", "200"]);
    let app = SocketAddr::new(mesh.workload(11), 8080);
    // The process itself, not the keeper (`skiff up-app -- …`) or `sh -c` around it.
    let find = |start: &str| {
        mesh.processes()
            .into_iter()
            .find(|(_, cmd)| {
                let mut words = cmd.split_whitespace();
                let program = words.next().and_then(|w| w.rsplit('/').next());
                let rest: Vec<&str> = words.collect();
                program == Some("skiff")
                    && format!("skiff {}", rest.join(" ")).starts_with(start)
                    && cmd.contains(&format!("127.0.{net}.11"))
            })
            .map(|(pid, _)| pid)
    };

    // The app dies: started again after the backoff, and answers.
    let pid = find("skiff sample-app").expect("the app of backend-v1");
    mesh::signal(pid, "KILL");
    mesh.wait_for("the app to be restarted", Duration::from_secs(20), || {
        mesh.log()
            .contains("skiff up: backend-v1.prod/app restarted")
    });
    let log = mesh.log();
    let exit = log
        .lines()
        .find(|l| l.contains("skiff up: backend-v1.prod/app exited"))
        .unwrap_or_else(|| panic!("the exit is reported: {log}"));
    assert!(exit.contains("restarting in 0.2s"), "{exit}");
    mesh.wait_for("the new app to answer", Duration::from_secs(20), || {
        answers(app)
    });
    assert_ne!(find("skiff sample-app"), Some(pid), "a new process");

    // Again at once: the second wait is twice the first.
    let pid = find("skiff sample-app").expect("the restarted app");
    mesh::signal(pid, "KILL");
    mesh.wait_for("the second restart", Duration::from_secs(20), || {
        mesh.log()
            .matches("skiff up: backend-v1.prod/app restarted")
            .count()
            == 2
    });
    let log = mesh.log();
    let exits: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("skiff up: backend-v1.prod/app exited"))
        .collect();
    assert!(exits[1].contains("restarting in 0.4s"), "{exits:?}");

    // The proxy dies: started again, ready, and serving.
    let pid = find("skiff proxy --id").expect("the proxy of backend-v1");
    mesh::signal(pid, "KILL");
    mesh.wait_for("the proxy to be restarted", Duration::from_secs(20), || {
        mesh.log().contains("skiff up: backend-v1.prod restarted")
    });
    let admin = SocketAddr::new(mesh.workload(11), 15000);
    mesh.wait_for("the new proxy to be ready", Duration::from_secs(20), || {
        answers(admin)
    });
    let client = client();
    let mut ok = 0;
    for _ in 0..100 {
        let (status, _) = get(&client, mesh.gateway(), &[]).await.unwrap();
        ok += usize::from(status == 200);
        if ok >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok >= 20, "the mesh serves again: {}", mesh.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_says_app_running_only_when_its_port_answers() {
    let net = 30;
    // An app that never listens on the port its Service sends traffic to.
    let idle = format!(
        "apiVersion: v1
kind: Service
metadata:
  name: idle
  namespace: prod
spec:
  selector:
    app: idle
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: idle
  namespace: prod
  annotations:
    skiff.dev/run: \"sleep 600\"
spec:
  address: 127.0.{net}.40
  labels:
    app: idle
"
    );
    let mesh = Mesh::start_example(
        "canary",
        net,
        &[("70-idle.yaml", &idle)],
        &["--ready-timeout", "2"],
    );
    let summary = mesh.log();
    let line = summary
        .lines()
        .find(|l| l.contains("workload       idle.prod"))
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(
        line.ends_with("app started, port 8080 not answering yet"),
        "{line}"
    );
    let frontend = summary
        .lines()
        .find(|l| l.contains("workload       frontend.prod"))
        .unwrap();
    assert!(frontend.ends_with("app running"), "{frontend}");
}
