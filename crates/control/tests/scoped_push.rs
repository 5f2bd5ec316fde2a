//! Who gets a push: only the proxies whose configuration a change alters. An endpoint
//! added to a service that only its own namespace sees reaches that namespace's
//! proxies and no others; re-reading an unchanged directory pushes nothing. Counted from
//! the control plane's own per-proxy push counts (`/debug/syncz`'s `pushes`) and from
//! what the proxies receive, over real xDS streams.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use skiff_control::{ControlOptions, MeshCompiler, Running};
use skiff_xds::{ClientOptions, ConfigUpdate, NodeInfo, SyncStatus};
use tokio::sync::mpsc;

const PATIENCE: Duration = Duration::from_secs(10);

/// Namespace `a`: service `api` (exported to `a` only) and two clients; namespace `b`:
/// service `web` (exported everywhere) and one client.
fn mesh(api_endpoints: usize, web_port: u16) -> String {
    let mut out = String::new();
    for (ns, svc, export) in [("a", "api", "."), ("b", "web", "*")] {
        let port = if svc == "web" { web_port } else { 80 };
        out += &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {svc}\n  namespace: {ns}\n  annotations:\n    networking.istio.io/exportTo: \"{export}\"\nspec:\n  selector:\n    app: {svc}\n  ports:\n  - name: http\n    port: {port}\n    targetPort: 8080\n---\n"
        );
    }
    for i in 0..api_endpoints {
        out += &format!(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: api-{i}\n  namespace: a\nspec:\n  address: 127.0.1.{}\n  labels:\n    app: api\n---\n",
            10 + i
        );
    }
    for (name, ns, ip) in [
        ("client-1", "a", "127.0.2.1"),
        ("client-2", "a", "127.0.2.2"),
        ("client-3", "b", "127.0.2.3"),
    ] {
        out += &format!(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  address: {ip}\n  labels:\n    app: {name}\n---\n"
        );
    }
    out
}

const CLIENTS: [&str; 3] = ["client-1.a", "client-2.a", "client-3.b"];

async fn start(dir: &Path) -> Result<Running> {
    let options = ControlOptions {
        xds_listen: "127.0.0.1:0".parse()?,
        debug_listen: "127.0.0.1:0".parse()?,
        ..ControlOptions::new(dir)
    };
    Ok(skiff_control::start(options, MeshCompiler::default()).await?)
}

struct Client {
    _client: skiff_xds::XdsClient,
    rx: mpsc::UnboundedReceiver<ConfigUpdate>,
}

impl Client {
    fn connect(addr: SocketAddr, id: &str) -> Result<Client> {
        let (tx, rx) = mpsc::unbounded_channel();
        let options = ClientOptions {
            initial_backoff: Duration::from_millis(20),
            ..ClientOptions::default()
        };
        let client = skiff_xds::connect(&addr.to_string(), NodeInfo::new(id), options, move |u| {
            let _ = tx.send(u);
            Ok(())
        })?;
        Ok(Client {
            _client: client,
            rx,
        })
    }

    async fn next(&mut self) -> Result<ConfigUpdate> {
        tokio::time::timeout(PATIENCE, self.rx.recv())
            .await?
            .context("client alive")
    }
}

/// Each client's push count, once every client is synced with the current snapshot.
async fn synced_pushes(running: &Running) -> Vec<u64> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let snapshot = running.plane.snapshot();
        let rows: Vec<_> = CLIENTS
            .iter()
            .map(|id| running.plane.sync().row(id, &snapshot))
            .collect();
        if rows.iter().all(|r| r.status == SyncStatus::Synced) {
            return rows.iter().map(|r| r.pushes).collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the clients never synced: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn api_endpoints(update: &ConfigUpdate) -> usize {
    update
        .config()
        .clusters
        .iter()
        .filter(|c| c.service.starts_with("api."))
        .map(|c| c.endpoints.len())
        .sum()
}

fn web_ports(update: &ConfigUpdate) -> Vec<u16> {
    update
        .config()
        .outbound
        .iter()
        .filter(|p| p.virtual_hosts.iter().any(|v| v.name.starts_with("web.b.")))
        .map(|p| p.port)
        .collect()
}

#[tokio::test]
async fn an_endpoint_change_reaches_only_the_proxies_that_see_it_and_a_no_op_reload_nothing()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("mesh.yaml");
    std::fs::write(&file, mesh(1, 8000))?;
    let running = start(dir.path()).await?;
    let mut clients = CLIENTS
        .iter()
        .map(|id| Client::connect(running.xds_addr, id))
        .collect::<Result<Vec<_>>>()?;
    for (c, id) in clients.iter_mut().zip(CLIENTS) {
        let first = c.next().await?;
        // Namespace a sees api; b does not (exportTo "."); everyone sees web.
        let expected = if id.ends_with(".a") { 1 } else { 0 };
        assert_eq!(api_endpoints(&first), expected, "{id}");
        assert_eq!(web_ports(&first), vec![8000], "{id}");
    }
    let before = synced_pushes(&running).await;
    assert_eq!(before, vec![1, 1, 1], "one push each to start");

    // Re-reading the unchanged directory, twice: nothing compiled, published or
    // pushed.
    let status = running.plane.status();
    let plane = running.plane.clone();
    let again = tokio::task::spawn_blocking(move || {
        plane.reload();
        plane.reload()
    })
    .await?;
    assert_eq!(again.reloads, status.reloads + 2);
    assert!(again.ok, "{:?}", again.errors);
    assert_eq!(
        again.serving_generation, status.serving_generation,
        "an unchanged reload published a snapshot"
    );
    assert_eq!(
        running.plane.snapshot().generation(),
        status.serving_generation
    );
    assert_eq!(
        synced_pushes(&running).await,
        before,
        "an unchanged reload pushed"
    );

    // A second endpoint of api: only the namespace-a proxies' config changes.
    // It travels as the api cluster's endpoints and nothing else.
    std::fs::write(&file, mesh(2, 8000))?;
    for c in &mut clients[..2] {
        let update = c.next().await?;
        assert_eq!(api_endpoints(&update), 2);
        assert!(
            !update.changed.is_empty()
                && update
                    .changed
                    .iter()
                    .all(|n| n.starts_with("endpoints/outbound|") && n.contains("|api.")),
            "the endpoint change sent {:?}",
            update.changed
        );
        assert_eq!(update.removed, Vec::<String>::new());
    }
    let after_endpoint = synced_pushes(&running).await;
    assert_eq!(
        after_endpoint,
        vec![2, 2, 1],
        "pushes after the endpoint change"
    );
    let triggers = |kind: &str| {
        let mut registry = prometheus_client::registry::Registry::default();
        running.plane.sync().register_metrics(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        let series = format!("pilot_push_triggers_total{{type=\"{kind}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .map_or(0.0, |v| v.parse::<f64>().unwrap())
    };
    assert!(
        triggers("endpoint") >= 1.0,
        "the endpoint change counts as one"
    );
    let configs = triggers("config");
    assert!(configs >= 1.0, "the first load counts as a config push");

    // A change everyone sees: the next thing client-3 receives is this change, so
    // the endpoint change never reached it.
    std::fs::write(&file, mesh(2, 8001))?;
    for (c, id) in clients.iter_mut().zip(CLIENTS) {
        let update = c.next().await?;
        assert_eq!(web_ports(&update), vec![8001], "{id}");
        let expected = if id.ends_with(".a") { 2 } else { 0 };
        assert_eq!(api_endpoints(&update), expected, "{id}");
    }
    assert_eq!(synced_pushes(&running).await, vec![3, 3, 2]);
    assert!(
        triggers("config") > configs,
        "a port change counts as a config push"
    );
    running.shutdown().await?;
    Ok(())
}
