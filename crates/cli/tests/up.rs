//! End to end: `skiff up examples/canary` as real processes on loopback, driven from
//! outside like a user would (curl-like requests to the gateway, `skiff proxy-status`,
//! editing files in the config directory, killing the control plane).

#[path = "support/mesh.rs"]
mod mesh;

use std::time::Duration;

use mesh::{Load, Mesh, backend_version, client, get, get_path, h2_client, skiff};

const VS_FILE: &str = "40-backend-virtualservice.yaml";

/// Every proxy of the example, as `skiff proxy-status` names them.
const PROXIES: [&str; 4] = [
    "backend-v1",
    "backend-v2",
    "frontend",
    "istio-ingressgateway",
];

fn proxy_status(mesh: &Mesh) -> String {
    let out = std::process::Command::new(skiff())
        .arg("proxy-status")
        .arg("--control")
        .arg(mesh.control_debug().to_string())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn all_synced(status: &str) -> bool {
    PROXIES.iter().all(|p| {
        status
            .lines()
            .any(|l| l.starts_with(p) && l.contains("SYNCED"))
    })
}

/// Sets the weights of the backend split (v1, v2).
fn set_split(mesh: &Mesh, v1: u32, v2: u32) {
    let path = mesh.dir.path().join(VS_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let (head, _) = text.split_once("  - name: split").unwrap();
    let split = format!(
        "  - name: split\n    route:\n    - destination:\n        host: backend\n        subset: v1\n      weight: {v1}\n    - destination:\n        host: backend\n        subset: v2\n      weight: {v2}\n"
    );
    std::fs::write(&path, format!("{head}{split}")).unwrap();
}

/// Waits until `n` consecutive answers through the gateway all come from v2.
async fn wait_all_v2(mesh: &Mesh, n: usize) {
    let client = client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut run = 0;
    while run < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "traffic never moved to v2; skiff up printed:\n{}",
            mesh.log()
        );
        let (status, body) = get(&client, mesh.gateway(), &[]).await.unwrap();
        assert_eq!(status, 200, "{body}");
        if backend_version(&body) == Some("2.0.0") {
            run += 1;
        } else {
            run = 0;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_through_the_gateway_then_clean_stop() {
    let mut mesh = Mesh::start(21);

    // Every proxy got the certificate of its workload's identity, from the CA that
    // `skiff up` started, with the bootstrap secret only the owner can read.
    let log = mesh.log();
    for (proxy, id) in [
        (
            "backend-v1.prod",
            "spiffe://cluster.local/ns/prod/sa/backend",
        ),
        (
            "backend-v2.prod",
            "spiffe://cluster.local/ns/prod/sa/backend",
        ),
        (
            "frontend.prod",
            "spiffe://cluster.local/ns/prod/sa/frontend",
        ),
        (
            "istio-ingressgateway.istio-system",
            "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
        ),
    ] {
        assert!(
            log.lines().any(|l| l.contains(&format!("{proxy} |"))
                && l.contains(&format!("got the workload certificate id={id} "))),
            "{proxy} has no certificate for {id}:\n{log}"
        );
    }
    let state = mesh.dir.path().join(".skiff");
    assert!(state.join("ca/root-cert.pem").is_file());
    let secret = std::fs::metadata(state.join("bootstrap-secret")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&secret.permissions()) & 0o777,
        0o600
    );

    // The gateway answers with the frontend's greeting and the backend's version.
    let client = client();
    let (status, body) = get(&client, mesh.gateway(), &[]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("Hello, world!"), "{body}");
    assert!(body.contains("Hostname: frontend"), "{body}");
    assert!(
        matches!(backend_version(&body), Some("1.0.0" | "2.0.0")),
        "{body}"
    );

    // Zero trust (60-zero-trust.yaml): every hop is mutual TLS, so each app learns who
    // called it from its sidecar; the policies allow the gateway's and the frontend's
    // GETs and nothing else.
    assert!(
        body.contains(
            "Hostname: frontend\nCaller: spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account\n"
        ),
        "{body}"
    );
    assert!(
        body.contains("  Caller: spiffe://cluster.local/ns/prod/sa/frontend\n"),
        "{body}"
    );
    let (status, body) = post(mesh.gateway()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body, "RBAC: access denied");
    mesh.wait_for("the denial in the log", Duration::from_secs(10), || {
        mesh.log().lines().any(|l| {
            l.contains("frontend.prod |")
                && l.contains("\"POST / HTTP/1.1\" 403")
                && l.contains("rbac_access_denied_matched_policy[none]: peer spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account not allowed")
        })
    });
    // A plain-text request to a sidecar's inbound port, as a process outside the mesh
    // would send it, is refused: the connection closes without an answer.
    let inbound = std::net::SocketAddr::new(mesh.workload(11), 15006);
    let refused = get_path(inbound, "/").await;
    assert!(refused.is_err(), "{refused:?}");
    // ...and the sidecar's log says which policy refused it.
    mesh.wait_for(
        "the plain-text refusal in the log",
        Duration::from_secs(10),
        || {
            mesh.log().lines().any(|l| {
                l.contains("backend-v1.prod |")
                    && l.contains(
                        "plaintext connection refused: PeerAuthentication prod/default is STRICT",
                    )
            })
        },
    );

    // 2,000 requests split 90/10 between v1 and v2, within a binomial bound: the mean
    // is 200 and the standard deviation 13.4, so 130..=270 is more than 5 sigma wide.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let gateway = mesh.gateway();
        tasks.push(tokio::spawn(async move {
            let client = mesh::client();
            let mut v2 = 0u32;
            for _ in 0..250 {
                let (status, body) = get(&client, gateway, &[]).await.unwrap();
                assert_eq!(status, 200, "{body}");
                match backend_version(&body) {
                    Some("2.0.0") => v2 += 1,
                    Some("1.0.0") => {}
                    other => panic!("unexpected backend version {other:?} in {body}"),
                }
            }
            v2
        }));
    }
    let mut v2 = 0;
    for task in tasks {
        v2 += task.await.unwrap();
    }
    assert!((130..=270).contains(&v2), "{v2} of 2000 went to v2");

    // The header rule comes first: every canary request reaches v2.
    for _ in 0..200 {
        let (status, body) = get(&client, mesh.gateway(), &[("x-canary", "true")])
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(backend_version(&body), Some("2.0.0"), "{body}");
    }

    // An HTTP/2 client (h2c, prior knowledge) works too.
    let h2 = h2_client();
    for _ in 0..20 {
        let (status, body) = get(&h2, mesh.gateway(), &[]).await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(backend_version(&body).is_some(), "{body}");
    }

    // Every proxy is in sync with the control plane.
    let status = proxy_status(&mesh);
    assert!(all_synced(&status), "{status}");

    // Ctrl-C stops everything and leaves no process behind.
    let exit = mesh.interrupt();
    assert!(
        exit.success(),
        "skiff up exited with {exit}:\n{}",
        mesh.log()
    );
    let left = mesh.processes();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(
        get(&mesh::client(), mesh.gateway(), &[]).await.is_err(),
        "the gateway still answers after skiff up stopped"
    );
}

/// A POST through the gateway: (status, body).
async fn post(gateway: std::net::SocketAddr) -> (u16, String) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let req = hyper::Request::post(format!("http://{gateway}/"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shifting_all_traffic_to_v2_under_load_fails_no_request() {
    let mesh = Mesh::start(22);
    let load = Load::start(mesh.gateway(), 4);
    mesh.wait_for("load to flow", Duration::from_secs(20), || load.ok() > 200);

    set_split(&mesh, 0, 100);
    wait_all_v2(&mesh, 200).await;
    let before = load.ok();
    mesh.wait_for("more load", Duration::from_secs(20), || {
        load.ok() > before + 200
    });

    let (ok, failed, errors) = load.stop().await;
    assert_eq!(failed, 0, "{failed} of {} failed: {errors:?}", ok + failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_ride_out_a_control_plane_restart() {
    let mesh = Mesh::start(23);
    let load = Load::start(mesh.gateway(), 4);
    mesh.wait_for("load to flow", Duration::from_secs(20), || load.ok() > 200);

    // Kill the control plane: traffic goes on with the last config.
    let control = mesh.control_pid().expect("a control plane process");
    mesh::signal(control, "KILL");
    let before = load.ok();
    mesh.wait_for(
        "load without a control plane",
        Duration::from_secs(20),
        || load.ok() > before + 500,
    );

    // skiff up starts it again (after its restart backoff): the proxies reconnect and
    // take new config.
    mesh.wait_for(
        "skiff up to restart the control plane",
        Duration::from_secs(20),
        || mesh.log().contains("skiff up: control restarted"),
    );
    mesh.wait_for("every proxy to resync", Duration::from_secs(40), || {
        all_synced(&proxy_status(&mesh))
    });
    set_split(&mesh, 0, 100);
    wait_all_v2(&mesh, 100).await;

    let (ok, failed, errors) = load.stop().await;
    assert_eq!(failed, 0, "{failed} of {} failed: {errors:?}", ok + failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_is_reported_left_out_and_changes_no_proxy() {
    let mesh = Mesh::start(24);
    let (_, syncz_before) = get_path(mesh.control_debug(), "/debug/syncz")
        .await
        .unwrap();
    let versions = |syncz: &str| -> Vec<String> {
        let value: serde_json::Value = serde_json::from_str(syncz).unwrap();
        let rows = value
            .as_array()
            .or_else(|| value.get("proxies").and_then(|p| p.as_array()))
            .cloned()
            .unwrap_or_else(|| panic!("syncz lists no proxies: {syncz}"));
        let mut out: Vec<String> = rows
            .iter()
            .map(|row| format!("{} {}", row["proxy"], row["sent"]))
            .collect();
        out.sort();
        assert_eq!(out.len(), PROXIES.len(), "{syncz}");
        out
    };

    // A VirtualService with a misspelt field: an error with file and line.
    std::fs::write(
        mesh.dir.path().join("99-broken.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: broken\n  namespace: prod\nspec:\n  hosts: [backend]\n  http:\n  - route:\n    - destination:\n        host: backend\n      wieght: 100\n",
    )
    .unwrap();
    let mut configz = String::new();
    for _ in 0..200 {
        configz = get_path(mesh.control_debug(), "/debug/configz")
            .await
            .unwrap()
            .1;
        if configz.contains("99-broken.yaml") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status: serde_json::Value = serde_json::from_str(&configz).unwrap();
    let error = &status["errors"][0];
    assert!(
        error["file"].as_str().unwrap().ends_with("99-broken.yaml"),
        "{configz}"
    );
    assert_eq!(error["line"], 12, "{configz}");
    assert_eq!(error["column"], 7, "{configz}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("spec.http[0].route[0].wieght: unknown field"),
        "{configz}"
    );
    assert_eq!(status["ok"], false, "{configz}");

    // The broken resource is left out: no proxy's config changed, nothing was pushed,
    // and traffic flows as before.
    let (_, syncz_after) = get_path(mesh.control_debug(), "/debug/syncz")
        .await
        .unwrap();
    assert_eq!(versions(&syncz_before), versions(&syncz_after));
    let client = client();
    for _ in 0..50 {
        let (status, body) = get(&client, mesh.gateway(), &[]).await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_update_keeps_the_old_config_and_shows_as_nack() {
    let mesh = Mesh::start(25);
    let frontend_admin = std::net::SocketAddr::new(mesh.workload(10), 15000);
    let (_, dump) = get_path(frontend_admin, "/config_dump").await.unwrap();
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    let running = dump["version"].as_str().unwrap().to_owned();

    // Valid Istio (the control plane publishes it), but the regex compiles to more than
    // a proxy accepts: every sidecar that routes to the backend rejects it.
    let path = mesh.dir.path().join(VS_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace(
        "  - name: split\n",
        "  - name: long-ids\n    match:\n    - uri:\n        regex: '/\\w{100}'\n    route:\n    - destination:\n        host: backend\n        subset: v2\n  - name: split\n",
    );
    std::fs::write(&path, text).unwrap();

    let mut status = String::new();
    mesh.wait_for("the frontend's NACK", Duration::from_secs(30), || {
        status = proxy_status(&mesh);
        status
            .lines()
            .any(|l| l.starts_with("frontend ") && l.contains("NACK"))
    });
    let line = status.lines().find(|l| l.starts_with("frontend ")).unwrap();
    assert!(line.contains("size limit"), "{status}");
    assert!(
        line.contains(&running),
        "the ACKed version is the old one: {status}"
    );

    // The frontend still runs its old config, and traffic flows.
    let (_, dump) = get_path(frontend_admin, "/config_dump").await.unwrap();
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump["version"].as_str(), Some(running.as_str()));
    let client = client();
    for _ in 0..50 {
        let (status, body) = get(&client, mesh.gateway(), &[]).await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_service_fault_delays_and_aborts_at_the_callers_sidecar() {
    let mesh = Mesh::start(26);
    // Two rules ahead of the split, chosen by the canary header the frontend passes on:
    // `teapot` is aborted with 418 by the frontend's sidecar, `slow` waits 400 ms.
    let path = mesh.dir.path().join(VS_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let rules = "  - name: teapot\n    match:\n    - headers:\n        x-canary:\n          exact: teapot\n    fault:\n      abort:\n        httpStatus: 418\n        percentage:\n          value: 100\n    route:\n    - destination:\n        host: backend\n        subset: v1\n  - name: slow\n    match:\n    - headers:\n        x-canary:\n          exact: slow\n    fault:\n      delay:\n        fixedDelay: 400ms\n        percentage:\n          value: 100\n    route:\n    - destination:\n        host: backend\n        subset: v2\n";
    std::fs::write(
        &path,
        text.replace("  - name: split\n", &format!("{rules}  - name: split\n")),
    )
    .unwrap();

    let client = client();
    let teapot = [("x-canary", "teapot")];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the abort never took effect; skiff up printed:\n{}",
            mesh.log()
        );
        let (status, body) = get(&client, mesh.gateway(), &teapot).await.unwrap();
        if status != 200 {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The frontend reports what its call to the backend got: the injected answer.
    assert!(body.contains("418"), "{body}");
    assert!(body.contains("fault filter abort"), "{body}");
    for _ in 0..20 {
        let (status, body) = get(&client, mesh.gateway(), &teapot).await.unwrap();
        assert_eq!(status, 502, "{body}");
        assert!(body.contains("418"), "{body}");
    }

    // The delay holds requests back, then lets them through to their destination.
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let (status, body) = get(&client, mesh.gateway(), &[("x-canary", "slow")])
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(backend_version(&body), Some("2.0.0"), "{body}");
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "answered after {:?}",
            started.elapsed()
        );
    }

    // Other requests are neither delayed nor aborted.
    for _ in 0..50 {
        let (status, body) = get(&client, mesh.gateway(), &[]).await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_skiff_up_outright_still_stops_everything_it_started() {
    // Besides the example, an app that is no skiff program and starts a child of its
    // own (two commands: the shell cannot just become `sleep`).
    let idler = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: idler
  namespace: prod
  labels: {app: idler}
  annotations:
    skiff.dev/run: "sleep 3600; sleep 3601"
spec:
  address: 127.0.10.30
"#;
    let mut mesh = Mesh::start_with(27, &[("50-idler.yaml", idler)]);
    let (status, body) = get(&client(), mesh.gateway(), &[]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let running = mesh.processes();
    // The control plane, five proxies, four apps and the sleep (and the apps' keepers).
    assert!(running.len() >= 11, "{running:#?}");
    assert!(
        running.iter().any(|(_, cmd)| cmd.starts_with("sleep 3600")),
        "{running:#?}"
    );

    // SIGKILL: `skiff up` cannot stop anything; its children notice and stop themselves.
    mesh.kill();
    let mut left = running;
    mesh.wait_for("the children to stop", Duration::from_secs(20), || {
        left = mesh.processes();
        left.is_empty()
    });
    assert!(
        get(&client(), mesh.gateway(), &[]).await.is_err(),
        "the gateway still answers"
    );
}
