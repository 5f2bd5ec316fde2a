//! The control plane with the real compiler: Istio YAML in a watched directory,
//! proxies over xDS, errors with file:line.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use skiff_control::{ConfigStatus, ControlOptions, MeshCompiler, Running, Severity};
use skiff_xds::{ClientOptions, ConfigUpdate, NodeInfo};
use tokio::sync::mpsc;

const PATIENCE: Duration = Duration::from_secs(10);

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
  address: 127.0.0.11
  labels:
    app: backend
    version: v1
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

/// A VirtualService with a misspelt field on line 12.
const BAD_ROUTE: &str = "\
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
      weihgt: 100
";

const BACKEND_V2: &str = "\
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: backend-v2
  namespace: prod
spec:
  address: 127.0.0.13
  labels:
    app: backend
    version: v2
";

/// The timeouts of the routes to the backend, as the frontend's config has them.
fn route_timeouts(update: &ConfigUpdate) -> Vec<Option<Duration>> {
    update
        .config()
        .outbound
        .iter()
        .filter(|p| p.port == 80)
        .flat_map(|p| &p.virtual_hosts)
        .filter(|vh| vh.domains.iter().any(|d| d == "backend"))
        .flat_map(|vh| &vh.routes)
        .map(|r| r.timeout)
        .collect()
}

const TIMEOUT_ROUTE: &str = "\
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
    timeout: 3s
";

async fn start(dir: &Path) -> Result<Running> {
    let options = ControlOptions {
        xds_listen: "127.0.0.1:0".parse()?,
        debug_listen: "127.0.0.1:0".parse()?,
        ..ControlOptions::new(dir)
    };
    Ok(skiff_control::start(options, MeshCompiler::default()).await?)
}

async fn status_until(
    running: &Running,
    what: &str,
    f: impl Fn(&ConfigStatus) -> bool,
) -> Arc<ConfigStatus> {
    let mut rx = running.plane.subscribe_status();
    let reached = tokio::time::timeout(PATIENCE, rx.wait_for(|s| f(s)))
        .await
        .ok()
        .and_then(|r| r.ok())
        .map(|s| s.clone());
    reached.unwrap_or_else(|| panic!("never reached: {what}; status {:?}", running.plane.status()))
}

fn client(
    addr: SocketAddr,
    id: &str,
) -> Result<(skiff_xds::XdsClient, mpsc::UnboundedReceiver<ConfigUpdate>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let options = ClientOptions {
        initial_backoff: Duration::from_millis(20),
        ..ClientOptions::default()
    };
    let client = skiff_xds::connect(&addr.to_string(), NodeInfo::new(id), options, move |u| {
        let _ = tx.send(u);
        Ok(())
    })?;
    Ok((client, rx))
}

async fn next(rx: &mut mpsc::UnboundedReceiver<ConfigUpdate>) -> Result<ConfigUpdate> {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await?
        .context("client alive")
}

#[tokio::test]
async fn istio_yaml_is_compiled_served_and_guarded_against_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("mesh.yaml"), MESH)?;
    let running = start(dir.path()).await?;

    let status = running.plane.status();
    assert!(status.ok, "{status:?}");
    let snapshot = running.plane.snapshot();
    let ids: Vec<&str> = snapshot.proxies().map(|(id, _)| id).collect();
    assert_eq!(ids, ["backend-v1.prod", "frontend.prod"]);

    // The frontend's proxy gets a config that routes to the backend.
    let (_frontend, mut updates) = client(running.xds_addr, "frontend.prod")?;
    let first = next(&mut updates).await?;
    let first_config = first.config();
    let port80 = first_config
        .outbound
        .iter()
        .find(|p| p.port == 80)
        .context("outbound port 80")?;
    assert!(
        port80
            .virtual_hosts
            .iter()
            .any(|vh| vh.domains.iter().any(|d| d == "backend")),
        "{port80:?}"
    );
    assert!(first.config().clusters.iter().any(|c| {
        c.endpoints
            .iter()
            .any(|e| e.address == "127.0.0.11:8080".parse().unwrap())
    }));

    // A route with a 3 s timeout: pushed.
    std::fs::write(dir.path().join("route.yaml"), TIMEOUT_ROUTE)?;
    let status = status_until(&running, "the route", |s| s.serving_generation == 2).await;
    assert!(status.ok, "{status:?}");
    let second = next(&mut updates).await?;
    assert_ne!(second.version, first.version);
    assert_eq!(route_timeouts(&second), [Some(Duration::from_secs(3))]);

    // The route file broken (a misspelt field on line 12): reported with file:line of
    // the field; the route's last good version keeps serving.
    std::fs::write(dir.path().join("route.yaml"), BAD_ROUTE)?;
    let status = status_until(&running, "an error", |s| !s.ok).await;
    let error = status
        .errors
        .iter()
        .find(|e| e.message.contains("weihgt"))
        .with_context(|| format!("an error naming the field: {:?}", status.errors))?;
    assert_eq!(error.severity, Severity::Error);
    assert_eq!(error.file.as_deref(), Some("route.yaml"), "{error:?}");
    assert_eq!((error.line, error.column), (Some(12), Some(7)), "{error:?}");
    assert!(
        status.warnings.iter().any(|w| w.to_string().starts_with(
            "route.yaml:1:1: VirtualService prod/backend: its new version has errors"
        )),
        "the kept version is named: {:?}",
        status.warnings
    );
    let served = running.plane.snapshot();
    let frontend = served.get("frontend.prod").context("frontend served")?;
    assert_eq!(
        frontend.version, second.version,
        "the frontend's config is unchanged"
    );

    // Meanwhile a change in another file still reaches the proxies: a second backend.
    std::fs::write(dir.path().join("mesh.yaml"), format!("{MESH}{BACKEND_V2}"))?;
    let status = status_until(&running, "the new workload", |s| {
        s.serving_generation > served.generation() && s.proxies == 3
    })
    .await;
    assert!(!status.ok, "route.yaml is still broken: {status:?}");
    let third = next(&mut updates).await?;
    assert!(
        third.config().clusters.iter().any(|c| c
            .endpoints
            .iter()
            .any(|e| e.address == "127.0.0.13:8080".parse().unwrap())),
        "the new endpoint reached the frontend: {:?}",
        third.config().clusters
    );
    assert_eq!(
        route_timeouts(&third),
        [Some(Duration::from_secs(3))],
        "the broken route's last good version still serves"
    );

    // Fixed: ok again, and the fixed route (no timeout) is pushed.
    std::fs::write(
        dir.path().join("route.yaml"),
        BAD_ROUTE.replace("weihgt", "weight"),
    )?;
    let status = status_until(&running, "fixed", |s| s.ok).await;
    assert!(status.errors.is_empty());
    let fourth = next(&mut updates).await?;
    assert_eq!(route_timeouts(&fourth), [None]);
    running.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn an_empty_directory_serves_no_proxies_with_a_warning() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let running = start(dir.path()).await?;
    let status = running.plane.status();
    assert!(status.ok);
    assert_eq!(status.proxies, 0);
    assert!(
        status.warnings[0].message.contains("no .yaml"),
        "{status:?}"
    );
    running.shutdown().await?;
    Ok(())
}
