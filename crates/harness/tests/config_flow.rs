//! Config that keeps flowing, through real proxies: with one broken file in the live
//! directory, a change in another file still reaches the proxies; a resource whose
//! new version is broken keeps serving its last good version.

use anyhow::Result;
use skiff_harness::{Mesh, header};

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
    targetPort: 8080
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: backend-v1
  namespace: prod
spec:
  address: {{ip.v1}}
  labels: {app: backend, version: v1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: backend-v2
  namespace: prod
spec:
  address: {{ip.v2}}
  labels: {app: backend, version: v2}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: frontend
  namespace: prod
spec:
  address: {{ip.frontend}}
  labels: {app: frontend}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: backend
  namespace: prod
spec:
  host: backend
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
";

/// The backend's VirtualService, all to `subset`; `field` is the weight's key (a
/// misspelt one makes the resource invalid, on line 13).
fn route(subset: &str, field: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
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
        subset: {subset}
      {field}: 100
"
    )
}

/// An unrelated VirtualService with an invalid value on line 9.
const BROKEN: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: other
  namespace: prod
spec:
  hosts: [other]
  http:
  - timeout: -3s
    route:
    - destination:
        host: other
";

async fn answered_by(mesh: &Mesh, n: usize) -> Result<Vec<String>> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let reply = mesh
            .get_via("frontend.prod", "http://backend.prod/")
            .await?;
        anyhow::ensure!(reply.status == 200, "{reply:?}");
        seen.push(reply.header(header::APP).to_owned());
    }
    seen.dedup();
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_does_not_hold_back_other_changes() -> Result<()> {
    let v1 = route("v1", "weight");
    let mesh = Mesh::start(&[("mesh.yaml", MESH), ("route.yaml", &v1)]).await?;
    assert_eq!(answered_by(&mesh, 10).await?, ["backend-v1.prod"]);

    // A broken file: refused with file:line of the field.
    let refused = mesh
        .write_config("zz-broken.yaml", BROKEN)
        .await
        .unwrap_err();
    let why = format!("{refused:#}");
    assert!(
        why.contains("zz-broken.yaml") && why.contains("line: Some(9)"),
        "{why}"
    );
    assert!(why.contains("spec.http[0].timeout"), "{why}");

    // While it is broken, a change in another file reaches the proxies.
    let still = mesh
        .write_config("route.yaml", &route("v2", "weight"))
        .await;
    assert!(still.is_err(), "the broken file is still reported");
    mesh.wait_synced().await?;
    assert_eq!(answered_by(&mesh, 10).await?, ["backend-v2.prod"]);

    // The route itself broken: its last good version (v2) keeps serving.
    let _ = mesh
        .write_config("route.yaml", &route("v1", "wieght"))
        .await;
    mesh.wait_synced().await?;
    assert_eq!(answered_by(&mesh, 10).await?, ["backend-v2.prod"]);
    let status = mesh.control().plane.status();
    assert!(!status.ok);
    assert!(
        status.errors.iter().any(|e| e
            .to_string()
            .starts_with("route.yaml:13:7: VirtualService prod/backend")),
        "{:?}",
        status.errors
    );

    // Both fixed: ok again, and the fixed route applies.
    mesh.write_config("zz-broken.yaml", "").await.unwrap_err();
    mesh.write_config("route.yaml", &v1).await?;
    mesh.wait_synced().await?;
    assert!(mesh.control().plane.status().ok);
    assert_eq!(answered_by(&mesh, 10).await?, ["backend-v1.prod"]);
    Ok(())
}
