//! Zero trust across the mesh: namespace STRICT, deny by default, one allowed call.

#[path = "shared/mesh.rs"]
mod common;

use common::{APP_PORT, BACKEND_URL, MESH};
use http::Method;
use skiff_harness::{Mesh, header};

const POLICIES: &str = "\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: prod
spec:
  mtls:
    mode: STRICT
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-all
  namespace: prod
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: backend-allow-frontend
  namespace: prod
spec:
  selector:
    matchLabels:
      app: backend
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/prod/sa/frontend]
    to:
    - operation:
        methods: [GET]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_frontend_may_get_from_backend() -> anyhow::Result<()> {
    let mesh = Mesh::start(&[("mesh.yaml", MESH), ("policies.yaml", POLICIES)]).await?;

    // The allowed call, over mutual TLS: the app learns who called.
    let ok = mesh.get_via("frontend.prod", BACKEND_URL).await?;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.header(header::APP), "backend.prod");
    let xfcc = ok.header(header::XFCC);
    assert!(
        xfcc.contains("URI=spiffe://cluster.local/ns/prod/sa/frontend"),
        "x-forwarded-client-cert: {xfcc:?}"
    );

    // Same caller, another method: refused by the backend's sidecar, naming policies.
    let post = mesh
        .request_via(
            "frontend.prod",
            Method::POST,
            &format!("{BACKEND_URL}items"),
        )
        .await?;
    assert_eq!(post.status, 403, "{}", post.body);
    let line = mesh.log_line("backend.prod", "\"POST /items").await?;
    assert!(line.contains(" 403 "), "{line}");
    assert!(line.contains("prod/deny-all"), "{line}");
    assert!(line.contains("prod/backend-allow-frontend"), "{line}");

    // Another workload of the mesh, with a valid mesh identity: not the principal.
    let other = mesh.get_via("other.prod", BACKEND_URL).await?;
    assert_eq!(other.status, 403, "{}", other.body);
    mesh.log_line("backend.prod", "sa/other not allowed")
        .await?;

    // No mesh identity at all: refused before any HTTP, and the log says why.
    let plain = mesh.plaintext_to_inbound("backend.prod", APP_PORT).await?;
    assert_eq!(
        plain, "",
        "plain text got an answer instead of a closed connection"
    );
    mesh.log_line(
        "backend.prod",
        "plaintext connection refused: PeerAuthentication prod/default is STRICT",
    )
    .await?;

    // Only the one allowed request reached the app.
    assert_eq!(mesh.proxy("backend.prod").app_hits(APP_PORT), 1);
    Ok(())
}
