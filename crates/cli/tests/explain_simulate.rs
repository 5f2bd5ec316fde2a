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

/// A token signed here (ES256) and the JWKS that verifies it.
struct Signer {
    key: jsonwebtoken::EncodingKey,
    jwk: serde_json::Value,
}

impl Signer {
    fn new() -> Signer {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let pkcs8 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .unwrap()
            .to_pkcs8v1()
            .unwrap();
        let key = jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref());
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::ES256)
            .unwrap();
        let mut jwk = serde_json::to_value(jwk).unwrap();
        jwk["kid"] = "k1".into();
        Signer { key, jwk }
    }

    fn sign(&self, claims: serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

/// The backend takes tokens of one IdP (its `sub` copied to `x-jwt-sub`) and lets
/// `/v1/private` through only with one.
fn jwt_policies(signer: &Signer) -> String {
    let jwks = serde_json::json!({"keys": [signer.jwk]}).to_string();
    format!(
        "\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: backend-jwt
  namespace: prod
spec:
  selector:
    matchLabels:
      app: backend
  jwtRules:
  - issuer: https://idp.example.com
    audiences: [backend]
    jwks: '{jwks}'
    outputClaimToHeaders:
    - header: x-jwt-sub
      claim: sub
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: private-needs-token
  namespace: prod
spec:
  selector:
    matchLabels:
      app: backend
  action: DENY
  rules:
  - from:
    - source:
        notRequestPrincipals: ['*']
    to:
    - operation:
        paths: [/v1/private]
"
    )
}

/// Tokens in the simulation: a missing one meets the policy that requires it, a good
/// one gives its principal and the claim header the app gets, a bad one is the 401
/// of the RequestAuthentication that refused it, as the live proxy answers each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_tokens_get_the_answers_the_proxies_give() -> anyhow::Result<()> {
    let signer = Signer::new();
    let policies = jwt_policies(&signer);
    let mesh = Mesh::start(&[
        ("mesh.yaml", MESH),
        ("backend-dr.yaml", BACKEND_DR),
        ("routing.yaml", ROUTING),
        ("jwt.yaml", &policies),
    ])
    .await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let good = signer.sign(serde_json::json!({
        "iss": "https://idp.example.com", "sub": "alice", "aud": "backend", "exp": now + 600,
    }));
    let expired = signer.sign(serde_json::json!({
        "iss": "https://idp.example.com", "sub": "alice", "aud": "backend", "exp": now - 600,
    }));
    let url = "http://backend.prod.svc.cluster.local/v1/private";
    // Where the RequestAuthentication is: the first document of its file.
    let jwt_at = "/jwt.yaml:1";

    // No token: the DENY policy's notRequestPrincipals holds.
    let live = mesh.get_via_with("frontend.prod", url, &[]).await?;
    assert_eq!(live.status.as_u16(), 403, "{}", live.body);
    let sim = simulate(&mesh, url, &[]).await;
    let ep = &sim["destinations"][0]["endpoints"][0];
    assert!(ep["authentication"].is_null(), "{sim:#}");
    assert_eq!(ep["authorization"]["decision"], "DENY", "{sim:#}");
    assert_eq!(
        ep["authorization"]["policy"], "prod/private-needs-token",
        "{sim:#}"
    );

    // A good token: allowed, with its principal and the header the app gets.
    let bearer = format!("Bearer {good}");
    let live = mesh
        .get_via_with("frontend.prod", url, &[("authorization", &bearer)])
        .await?;
    assert_eq!(live.status.as_u16(), 200, "{}", live.body);
    let sim = simulate(&mesh, url, &[&format!("authorization: {bearer}")]).await;
    let ep = &sim["destinations"][0]["endpoints"][0];
    let t = &ep["authentication"];
    assert_eq!(t["decision"], "verified", "{sim:#}");
    assert_eq!(t["principal"], "https://idp.example.com/alice", "{sim:#}");
    assert_eq!(t["policy"], "prod/backend-jwt", "{sim:#}");
    assert!(
        t["location"].as_str().is_some_and(|l| l.ends_with(jwt_at)),
        "{sim:#}"
    );
    assert_eq!(
        t["headersAdded"],
        serde_json::json!(["x-jwt-sub: alice"]),
        "{sim:#}"
    );
    assert_eq!(
        t["headersRemoved"],
        serde_json::json!(["authorization"]),
        "{sim:#}"
    );
    assert_eq!(ep["authorization"]["decision"], "ALLOW", "{sim:#}");

    // An expired token: the 401, and the policy that refused it.
    let bearer = format!("Bearer {expired}");
    let live = mesh
        .get_via_with("frontend.prod", url, &[("authorization", &bearer)])
        .await?;
    assert_eq!(live.status.as_u16(), 401, "{}", live.body);
    let sim = simulate(&mesh, url, &[&format!("authorization: {bearer}")]).await;
    let t = &sim["destinations"][0]["endpoints"][0]["authentication"];
    assert_eq!(t["decision"], "401", "{sim:#}");
    assert_eq!(t["reason"], live.body.trim(), "{sim:#}");
    assert_eq!(t["policy"], "prod/backend-jwt", "{sim:#}");
    assert!(
        t["location"].as_str().is_some_and(|l| l.ends_with(jwt_at)),
        "{sim:#}"
    );
    // And in words.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["explain", "--from", "frontend.prod", "--control"])
        .arg(mesh.control().debug_addr.to_string())
        .args(["-H", &format!("authorization: {bearer}"), url])
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("401 Jwt is expired by RequestAuthentication prod/backend-jwt ("),
        "{text}"
    );
    Ok(())
}
