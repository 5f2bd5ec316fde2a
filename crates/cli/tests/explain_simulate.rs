//! `skiff explain --from` agrees with live proxies: the same requests simulated and
//! sent through the in-process mesh take the same rule, subset and decision.

use skiff_harness::Mesh;

#[path = "support/explain_mesh.rs"]
mod explain_mesh;

use explain_mesh::{BACKEND_DR, MESH, ROUTING};

#[path = "support/schema.rs"]
mod schema;

/// `skiff explain --from frontend.prod -o json [-H ...] URL`, against the mesh's
/// control plane (its configuration directory).
async fn simulate(mesh: &Mesh, url: &str, headers: &[&str]) -> serde_json::Value {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_skiff"));
    cmd.args([
        "explain",
        "--from",
        "frontend.prod",
        "-o",
        "json",
        "--control",
    ])
    .arg(mesh.control().debug_addr.to_string());
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .arg(url)
        .output()
        .await
        .expect("run skiff explain --from");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = serde_json::from_slice(&out.stdout).expect("json");
    // Every simulation's output conforms to its documented schema.
    schema::assert_valid("explain-simulate.schema.json", None, &v);
    v
}

/// A request to simulate and send: path, headers, the status it gets.
type Case = (&'static str, &'static [(&'static str, &'static str)], u16);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_requests_take_the_rule_subset_and_decision_the_proxies_take()
-> anyhow::Result<()> {
    let mesh = Mesh::start(&[
        ("mesh.yaml", MESH),
        ("backend-dr.yaml", BACKEND_DR),
        ("routing.yaml", ROUTING),
    ])
    .await?;
    let base = "http://backend.prod.svc.cluster.local";
    // (path, headers, live status)
    let cases: [Case; 6] = [
        ("/h/a", &[("x-user", "tester")], 503),
        ("/h/b", &[("x-user", "someone")], 200),
        ("/v1/ok", &[], 200),
        ("/v1/admin", &[], 403),
        ("/uh", &[], 503),
        ("/fi", &[], 503),
    ];
    for (path, headers, status) in cases {
        let url = format!("{base}{path}");
        let live = mesh.get_via_with("frontend.prod", &url, headers).await?;
        assert_eq!(live.status.as_u16(), status, "{path}: {}", live.body);
        let h: Vec<String> = headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let h: Vec<&str> = h.iter().map(String::as_str).collect();
        let sim = simulate(&mesh, &url, &h).await;
        let route = sim["route"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: no route: {sim:#}"));

        // The rule: the frontend's access log names the route it took.
        let line = mesh
            .log_line("frontend.prod", &format!("\"GET {path} "))
            .await?;
        assert!(
            line.contains(route),
            "{path}: simulated {route}, the proxy logged: {line}"
        );
        // Every earlier rule is shown as not matching, the chosen one as matching.
        let rules = sim["rules"].as_array().unwrap();
        assert!(
            rules[..rules.len() - 1]
                .iter()
                .all(|r| r["matched"] == false),
            "{sim:#}"
        );
        assert_eq!(rules.last().unwrap()["matched"], true);

        let dest = &sim["destinations"][0];
        let endpoints = dest["endpoints"].as_array().unwrap();
        match status {
            200 => {
                // The subset: the app that answered is the endpoint simulated.
                assert_eq!(dest["subset"], "v1", "{sim:#}");
                assert_eq!(
                    endpoints[0]["workload"],
                    live.header(skiff_harness::header::APP),
                    "{sim:#}"
                );
                assert_eq!(
                    endpoints[0]["authorization"]["decision"], "ALLOW",
                    "{sim:#}"
                );
                assert_eq!(endpoints[0]["mtls"], "ISTIO_MUTUAL");
            }
            403 => {
                let a = &endpoints[0]["authorization"];
                assert_eq!(a["decision"], "DENY", "{sim:#}");
                assert_eq!(a["policy"], "prod/deny-admin", "{sim:#}");
                let logged = mesh.log_line("backend.prod", "\"GET /v1/admin ").await?;
                assert!(logged.contains("prod/deny-admin"), "{logged}");
            }
            _ if path == "/fi" => {
                assert_eq!(sim["fault"]["abort"]["httpStatus"], 503, "{sim:#}");
                assert!(line.contains(" FI "), "{line}");
            }
            _ => {
                assert_eq!(dest["subset"], "v2", "{sim:#}");
                assert!(endpoints.is_empty(), "{sim:#}");
                assert!(line.contains(" UH "), "{line}");
            }
        }
    }
    Ok(())
}
