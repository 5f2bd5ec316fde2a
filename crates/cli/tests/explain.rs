//! `skiff explain REQUEST_ID` against a real mesh (the in-process harness: control
//! plane, CA, sidecars over mutual TLS, test apps): for each failure the proxies
//! flag, the explanation names the configuration object responsible with file:line.

use skiff_harness::Mesh;

#[path = "support/explain_mesh.rs"]
mod explain_mesh;

use explain_mesh::{BACKEND_DR, MESH, ROUTING, line_of};

#[path = "support/schema.rs"]
mod schema;

/// `skiff explain ID` against the mesh's control plane: its stdout. Its `-o json`
/// form is checked against docs/schema/explain.schema.json on the way.
async fn explain(mesh: &Mesh, id: &str) -> String {
    let run = |json: bool| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_skiff"));
        cmd.args(["explain", id, "--control"])
            .arg(mesh.control().debug_addr.to_string());
        if json {
            cmd.args(["-o", "json"]);
        }
        cmd.output()
    };
    let out = run(false).await.expect("run skiff explain");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "skiff explain {id} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = run(true).await.expect("run skiff explain -o json");
    assert!(json.status.success(), "skiff explain {id} -o json failed");
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    schema::assert_valid("explain.schema.json", None, &v);
    assert_eq!(
        v["explanation"]["flag"]
            .as_str()
            .map(|f| stdout.contains(f)),
        Some(true),
        "the json explains the same hop as the table:\n{v:#}\n{stdout}"
    );
    stdout
}

async fn get(mesh: &Mesh, path: &str, id: &str) -> u16 {
    let url = format!("http://backend.prod.svc.cluster.local{path}");
    mesh.get_via_with("frontend.prod", &url, &[("x-request-id", id)])
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e:#}"))
        .status
        .as_u16()
}

fn assert_has(out: &str, needles: &[&str]) {
    for n in needles {
        assert!(out.contains(n), "expected {n:?} in:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_the_object_behind_each_failure() -> anyhow::Result<()> {
    // The slow workload: accepts connections and never answers.
    let mesh = Mesh::start(&[
        ("mesh.yaml", MESH),
        ("backend-dr.yaml", BACKEND_DR),
        ("routing.yaml", ROUTING),
    ])
    .await?;
    let slow = tokio::net::TcpListener::bind((mesh.ip("slow"), 8080)).await?;
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = slow.accept().await {
            held.push(s);
        }
    });
    let routing =
        |after: &str, needle: &str| format!("routing.yaml:{}", line_of(ROUTING, after, needle));
    let vs = "kind: VirtualService";

    // UH: the subset selects no workload.
    assert_eq!(get(&mesh, "/uh", "t-uh").await, 503);
    let out = explain(&mesh, "t-uh").await;
    assert_has(
        &out,
        &[
            "503 UH at frontend.prod",
            "subset v2 of backend.prod (DestinationRule prod/backend, ",
            &format!(
                "backend-dr.yaml:{}",
                line_of(BACKEND_DR, "subsets:", "- name: v2")
            ),
            "selects no endpoints: no WorkloadEntry has labels version=v2",
        ],
    );

    // NR: no rule takes the path.
    assert_eq!(get(&mesh, "/nothing", "t-nr").await, 404);
    let out = explain(&mesh, "t-nr").await;
    assert_has(
        &out,
        &[
            "404 NR",
            "no rule of VirtualService prod/backend matches path \"/nothing\"",
            &routing(vs, "http:"),
        ],
    );

    // FI: the fault left in place.
    assert_eq!(get(&mesh, "/fi", "t-fi").await, 503);
    let out = explain(&mesh, "t-fi").await;
    assert_has(
        &out,
        &[
            "503 FI",
            "fault injection aborted",
            &routing("prefix: /fi", "fault:"),
            "remove the `fault` block",
        ],
    );

    // UF: nothing listens at the workload's address.
    assert_eq!(get(&mesh, "/uf", "t-uf").await, 503);
    let out = explain(&mesh, "t-uf").await;
    // The endpoint tried, as the proxy recorded it.
    let tried = format!("{}:8080", mesh.ip("down"));
    assert_has(
        &out,
        &[
            "503 UF",
            &format!("could not connect to {tried}, the address of workload down.prod"),
            "WorkloadEntry prod/down",
            &format!(
                "mesh.yaml:{}",
                line_of(MESH, "sidecar.istio.io/inject", "address:")
            ),
        ],
    );

    // URX: the retries ran out.
    assert_eq!(get(&mesh, "/urx", "t-urx").await, 503);
    let out = explain(&mesh, "t-urx").await;
    assert_has(
        &out,
        &[
            "503 UF,URX",
            "tries in all",
            &routing("prefix: /urx", "retries:"),
        ],
    );

    // UT: the route's timeout.
    assert_eq!(get(&mesh, "/ut", "t-ut").await, 504);
    let out = explain(&mesh, "t-ut").await;
    assert_has(
        &out,
        &[
            "504 UT",
            "timeout ran out",
            &routing("prefix: /ut", "timeout:"),
        ],
    );

    // UO: the circuit breaker of the slow service (one connection, one pending).
    let mut tries = Vec::new();
    for i in 0..4 {
        let url = "http://backend.prod.svc.cluster.local/ut".to_owned();
        let id = format!("t-uo-{i}");
        let client = mesh.proxy("frontend.prod").outbound();
        tries.push(tokio::spawn(async move {
            let r = skiff_harness_send(client, &url, &id).await;
            (id, r)
        }));
    }
    let mut overflowed = None;
    for t in tries {
        let (id, status) = t.await?;
        if status == 503 {
            overflowed = Some(id);
        }
    }
    let id = overflowed.expect("one of four concurrent requests overflows a pool of 1 + 1");
    let out = explain(&mesh, &id).await;
    assert_has(
        &out,
        &[
            "503 UO",
            "DestinationRule prod/slow",
            &routing("name: slow", "connectionPool:"),
        ],
    );

    // NC: subset v3 taken out of the DestinationRule; the VirtualService that routes
    // to it is an error now, and keeps its last good version.
    let without_v3 = BACKEND_DR.split("  - name: v3").next().unwrap_or_default();
    let refused = mesh
        .write_config("backend-dr.yaml", without_v3)
        .await
        .expect_err("the VirtualService's subset v3 is undefined now");
    assert!(format!("{refused:#}").contains("subset v3"), "{refused:#}");
    mesh.wait_synced().await?;
    assert_eq!(get(&mesh, "/nc", "t-nc").await, 503);
    let out = explain(&mesh, "t-nc").await;
    assert_has(
        &out,
        &[
            "503 NC",
            "subset v3 of backend.prod, which DestinationRule prod/backend does not define",
            "VirtualService prod/backend",
            &routing("prefix: /nc", "route:"),
            "add subset v3 to DestinationRule prod/backend",
        ],
    );

    // RBAC: the DENY policy, at the backend's sidecar (the inbound hop).
    assert_eq!(get(&mesh, "/v1/admin", "t-rbac").await, 403);
    let out = explain(&mesh, "t-rbac").await;
    assert_has(
        &out,
        &[
            "403 - at backend.prod (inbound)",
            "denied by AuthorizationPolicy prod/deny-admin",
            &routing("apiVersion: security", "apiVersion: security"),
        ],
    );

    // A request that worked is not remembered.
    assert_eq!(get(&mesh, "/v1/ok", "t-ok").await, 200);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["explain", "t-ok", "--control"])
        .arg(mesh.control().debug_addr.to_string())
        .output()
        .await?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no proxy remembers a failed request with x-request-id \"t-ok\"")
    );

    // --last: the most recent failure is the RBAC denial.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["explain", "--last", "--control"])
        .arg(mesh.control().debug_addr.to_string())
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("prod/deny-admin"), "{stdout}");
    holder.abort();
    Ok(())
}

/// One GET through a sidecar's outbound listener with an `x-request-id`: the status.
async fn skiff_harness_send(outbound: std::net::SocketAddr, url: &str, id: &str) -> u16 {
    use http_body_util::BodyExt as _;
    let stream = tokio::net::TcpStream::connect(outbound)
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::get(url)
        .header("host", "backend.prod.svc.cluster.local")
        .header("x-request-id", id)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("send");
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}
