//! The push server and the client over real gRPC on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use skiff_model::config::ProxyConfig;
use skiff_xds::proto::DiscoveryRequest;
use skiff_xds::proto::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use skiff_xds::{
    ClientOptions, ClientStatus, ConfigUpdate, NodeInfo, PROXY_CONFIG_TYPE_URL, PushSnapshot,
    SyncRow, SyncStatus, SyncTable, XdsClient, XdsServer,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Longest wait for something that should happen.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long to watch for something that must not happen.
const QUIET: Duration = Duration::from_millis(300);

fn config(id: &str, label: &str) -> ProxyConfig {
    let mut c = ProxyConfig::default();
    c.node.id = id.to_owned();
    let (name, ns) = id.rsplit_once('.').unwrap();
    c.node.name = name.to_owned();
    c.node.namespace = ns.to_owned();
    c.node.labels.insert("rev".to_owned(), label.to_owned());
    c
}

struct Server {
    addr: SocketAddr,
    sync: SyncTable,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(addr: SocketAddr, snapshots: watch::Receiver<Arc<PushSnapshot>>) -> Server {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sync = SyncTable::new();
        let server = XdsServer::new(snapshots, sync.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Server {
            addr,
            sync,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("server shuts down in time")
            .unwrap();
    }
}

struct Proxy {
    client: XdsClient,
    updates: mpsc::UnboundedReceiver<ConfigUpdate>,
}

/// A client whose handler rejects configs labelled `rev=bad`.
fn proxy(addr: SocketAddr, id: &str) -> Proxy {
    let (tx, updates) = mpsc::unbounded_channel();
    let options = ClientOptions {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..ClientOptions::default()
    };
    let client = skiff_xds::connect(
        &addr.to_string(),
        NodeInfo::new(id),
        options,
        move |update: ConfigUpdate| {
            let bad = update.config.node.labels.get("rev").map(String::as_str) == Some("bad");
            let _ = tx.send(update);
            if bad {
                Err("route r1 names missing cluster outbound|80||nowhere".to_owned())
            } else {
                Ok(())
            }
        },
    )
    .unwrap();
    Proxy { client, updates }
}

impl Proxy {
    async fn next_update(&mut self) -> ConfigUpdate {
        tokio::time::timeout(PATIENCE, self.updates.recv())
            .await
            .expect("an update arrives in time")
            .expect("client alive")
    }

    async fn assert_no_update(&mut self) {
        if let Ok(update) = tokio::time::timeout(QUIET, self.updates.recv()).await {
            panic!("unexpected update: {update:?}");
        }
    }

    async fn status_until(&self, what: &str, f: impl Fn(&ClientStatus) -> bool) -> ClientStatus {
        let mut rx = self.client.status();
        let reached = match tokio::time::timeout(PATIENCE, rx.wait_for(|s| f(s))).await {
            Ok(Ok(s)) => Some(s.clone()),
            _ => None,
        };
        reached.unwrap_or_else(|| panic!("client never reached: {what}; now {:?}", *rx.borrow()))
    }
}

/// Polls the sync table until a proxy's row satisfies `f`.
async fn row_until(
    sync: &SyncTable,
    snapshots: &watch::Sender<Arc<PushSnapshot>>,
    id: &str,
    what: &str,
    f: impl Fn(&SyncRow) -> bool,
) -> SyncRow {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let row = sync.row(id, &snapshots.borrow());
        if f(&row) {
            return row;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{id} never reached: {what}; row is {row:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn publish(tx: &watch::Sender<Arc<PushSnapshot>>, generation: u64, configs: Vec<ProxyConfig>) {
    tx.send_replace(Arc::new(PushSnapshot::new(generation, configs)));
}

fn version(tx: &watch::Sender<Arc<PushSnapshot>>, id: &str) -> String {
    tx.borrow().get(id).unwrap().version.clone()
}

#[tokio::test]
async fn first_config_arrives_and_its_ack_makes_the_proxy_synced() {
    let (tx, rx) = watch::channel(Arc::new(PushSnapshot::default()));
    publish(&tx, 1, vec![config("a.prod", "1"), config("b.prod", "1")]);
    let server = Server::start("127.0.0.1:0".parse().unwrap(), rx).await;

    let mut a = proxy(server.addr, "a.prod");
    let update = a.next_update().await;
    assert_eq!(update.config, config("a.prod", "1"));
    assert_eq!(update.version, version(&tx, "a.prod"));

    let row = row_until(&server.sync, &tx, "a.prod", "SYNCED", |r| {
        r.status == SyncStatus::Synced
    })
    .await;
    assert_eq!(row.sent.as_deref(), Some(update.version.as_str()));
    assert_eq!(row.acked.as_deref(), Some(update.version.as_str()));
    assert_eq!(
        row.proxy_version.as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert!(row.last_push_ms.is_some());
    // b never connected.
    let b = server.sync.row("b.prod", &tx.borrow());
    assert_eq!(b.status, SyncStatus::NotConnected);
    server.stop().await;
}

#[tokio::test]
async fn a_snapshot_that_leaves_a_proxy_unchanged_sends_it_nothing() {
    let (tx, rx) = watch::channel(Arc::new(PushSnapshot::default()));
    publish(&tx, 1, vec![config("a.prod", "1"), config("b.prod", "1")]);
    let server = Server::start("127.0.0.1:0".parse().unwrap(), rx).await;
    let mut a = proxy(server.addr, "a.prod");
    let mut b = proxy(server.addr, "b.prod");
    a.next_update().await;
    b.next_update().await;
    let before = row_until(&server.sync, &tx, "a.prod", "SYNCED", |r| {
        r.status == SyncStatus::Synced
    })
    .await;

    // Generation 2 changes b only.
    publish(&tx, 2, vec![config("a.prod", "1"), config("b.prod", "2")]);
    let update = b.next_update().await;
    assert_eq!(update.config.node.labels["rev"], "2");
    // a's stream has seen generation 2 and decided: nothing must arrive.
    let after = row_until(&server.sync, &tx, "a.prod", "generation 2 seen", |r| {
        r.generation == 2
    })
    .await;
    a.assert_no_update().await;
    assert_eq!(after.sent, before.sent);
    assert_eq!(after.last_push_ms, before.last_push_ms);
    assert_eq!(after.status, SyncStatus::Synced);
    assert_eq!(a.client.status().borrow().responses, 1);
    server.stop().await;
}

#[tokio::test]
async fn a_nack_keeps_the_old_version_and_shows_the_reason() {
    let (tx, rx) = watch::channel(Arc::new(PushSnapshot::default()));
    publish(&tx, 1, vec![config("a.prod", "1")]);
    let server = Server::start("127.0.0.1:0".parse().unwrap(), rx).await;
    let mut a = proxy(server.addr, "a.prod");
    let good = a.next_update().await.version;
    row_until(&server.sync, &tx, "a.prod", "SYNCED", |r| {
        r.status == SyncStatus::Synced
    })
    .await;

    publish(&tx, 2, vec![config("a.prod", "bad")]);
    let bad = a.next_update().await.version;
    assert_ne!(good, bad);
    let row = row_until(&server.sync, &tx, "a.prod", "NACK", |r| {
        r.status == SyncStatus::Nack
    })
    .await;
    assert_eq!(row.sent.as_deref(), Some(bad.as_str()));
    assert_eq!(row.acked.as_deref(), Some(good.as_str()));
    assert!(
        row.nack.as_deref().unwrap().contains("missing cluster"),
        "{row:?}"
    );
    let status = a.client.status().borrow().clone();
    assert_eq!(status.version.as_deref(), Some(good.as_str()));
    assert!(status.last_nack.unwrap().contains("missing cluster"));

    // The same bad config again: no push (the version did not change).
    publish(&tx, 3, vec![config("a.prod", "bad")]);
    row_until(&server.sync, &tx, "a.prod", "generation 3 seen", |r| {
        r.generation == 3
    })
    .await;
    a.assert_no_update().await;

    // Going back to the config the proxy runs: it is pushed (the server last sent the
    // rejected version), and the client recognises its own version and ACKs without
    // calling the handler again.
    publish(&tx, 4, vec![config("a.prod", "1")]);
    let row = row_until(
        &server.sync,
        &tx,
        "a.prod",
        "SYNCED on the old version",
        |r| r.status == SyncStatus::Synced,
    )
    .await;
    assert_eq!(row.sent.as_deref(), Some(good.as_str()));
    a.assert_no_update().await;
    assert_eq!(a.client.status().borrow().responses, 3);

    // A fixed config is pushed and clears the NACK.
    publish(&tx, 5, vec![config("a.prod", "3")]);
    let fixed = a.next_update().await.version;
    let row = row_until(&server.sync, &tx, "a.prod", "SYNCED", |r| {
        r.status == SyncStatus::Synced
    })
    .await;
    assert_eq!(row.acked.as_deref(), Some(fixed.as_str()));
    assert_eq!(row.nack, None);
    server.stop().await;
}

#[tokio::test]
async fn the_client_keeps_its_config_while_the_server_is_down_and_resyncs_after() -> Result<()> {
    let (tx, rx) = watch::channel(Arc::new(PushSnapshot::default()));
    publish(&tx, 1, vec![config("a.prod", "1")]);
    let server = Server::start("127.0.0.1:0".parse()?, rx.clone()).await;
    let addr = server.addr;
    let mut a = proxy(addr, "a.prod");
    let v1 = a.next_update().await.version;
    a.status_until("one config", |s| s.responses == 1).await;

    server.stop().await;
    let down = a.status_until("disconnected", |s| !s.connected).await;
    assert_eq!(
        down.version.as_deref(),
        Some(v1.as_str()),
        "keeps the last good version"
    );
    // Reconnection attempts fail against a closed port; the handler is never called.
    a.assert_no_update().await;
    assert!(!a.client.status().borrow().connected);

    // The server comes back on the same address with the same config: the client
    // resumes with v1 and gets nothing new.
    let server = Server::start(addr, rx.clone()).await;
    a.status_until("reconnected", |s| s.connected && s.connections == 2)
        .await;
    let row = row_until(&server.sync, &tx, "a.prod", "SYNCED after resume", |r| {
        r.status == SyncStatus::Synced
    })
    .await;
    assert_eq!(row.sent.as_deref(), Some(v1.as_str()));
    a.assert_no_update().await;
    assert_eq!(a.client.status().borrow().responses, 1);

    // And pushes still flow on the new stream.
    publish(&tx, 2, vec![config("a.prod", "2")]);
    let v2 = a.next_update().await.version;
    assert_ne!(v1, v2);
    row_until(&server.sync, &tx, "a.prod", "SYNCED on v2", |r| {
        r.status == SyncStatus::Synced && r.acked.as_deref() == Some(v2.as_str())
    })
    .await;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_config_changed_while_the_server_was_down_arrives_on_reconnect() {
    let (tx, rx) = watch::channel(Arc::new(PushSnapshot::default()));
    publish(&tx, 1, vec![config("a.prod", "1")]);
    let server = Server::start("127.0.0.1:0".parse().unwrap(), rx.clone()).await;
    let addr = server.addr;
    let mut a = proxy(addr, "a.prod");
    a.next_update().await;
    server.stop().await;
    a.status_until("disconnected", |s| !s.connected).await;

    publish(&tx, 2, vec![config("a.prod", "2")]);
    let server = Server::start(addr, rx).await;
    let update = a.next_update().await;
    assert_eq!(update.config.node.labels["rev"], "2");
    row_until(&server.sync, &tx, "a.prod", "SYNCED", |r| {
        r.status == SyncStatus::Synced
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_proxy_is_refused_with_a_clear_message() {
    let (tx, rx) = watch::channel(Arc::new(PushSnapshot::default()));
    publish(&tx, 1, vec![config("a.prod", "1")]);
    let server = Server::start("127.0.0.1:0".parse().unwrap(), rx).await;
    let mut ghost = proxy(server.addr, "ghost.prod");
    let status = ghost
        .status_until("an error", |s| s.last_error.is_some())
        .await;
    let error = status.last_error.unwrap();
    assert!(error.contains("\"ghost.prod\" is unknown"), "{error}");
    assert!(error.contains("known proxies: a.prod"), "{error}");
    ghost.assert_no_update().await;

    // Once the mesh config names it, the retrying client gets its config.
    publish(
        &tx,
        2,
        vec![config("a.prod", "1"), config("ghost.prod", "1")],
    );
    let update = ghost.next_update().await;
    assert_eq!(update.config.node.id, "ghost.prod");
    server.stop().await;
}

#[tokio::test]
async fn a_proxy_dropped_from_the_snapshot_keeps_its_config() {
    let (tx, rx) = watch::channel(Arc::new(PushSnapshot::default()));
    publish(&tx, 1, vec![config("a.prod", "1")]);
    let server = Server::start("127.0.0.1:0".parse().unwrap(), rx).await;
    let mut a = proxy(server.addr, "a.prod");
    let v1 = a.next_update().await.version;
    a.status_until("connected", |s| s.connected).await;
    publish(&tx, 2, vec![]);
    let status = a
        .status_until("refused", |s| !s.connected && s.last_error.is_some())
        .await;
    assert!(status.last_error.unwrap().contains("unknown"));
    assert_eq!(status.version.as_deref(), Some(v1.as_str()));
    a.assert_no_update().await;
    server.stop().await;
}

/// The protocol as a raw gRPC client sees it.
#[tokio::test]
async fn raw_protocol_refuses_a_stream_without_a_node_and_ignores_stale_nonces() -> Result<()> {
    let (tx, rx) = watch::channel(Arc::new(PushSnapshot::default()));
    publish(&tx, 1, vec![config("a.prod", "1")]);
    let server = Server::start("127.0.0.1:0".parse()?, rx).await;
    let mut client =
        AggregatedDiscoveryServiceClient::connect(format!("http://{}", server.addr)).await?;

    // No node.
    let (req_tx, req_rx) = mpsc::channel(4);
    req_tx
        .send(DiscoveryRequest {
            type_url: PROXY_CONFIG_TYPE_URL.into(),
            ..Default::default()
        })
        .await?;
    let mut stream = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(req_rx))
        .await?
        .into_inner();
    match stream.message().await {
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().contains("node.id"), "{status:?}");
        }
        other => bail!("expected an error, got {other:?}"),
    }

    // A proper subscription, then a stale ACK (wrong nonce), then the real ACK.
    let (req_tx, req_rx) = mpsc::channel(4);
    let node = NodeInfo::new("a.prod");
    req_tx
        .send(DiscoveryRequest {
            node: Some(skiff_xds::proto::Node {
                id: node.id.clone(),
                metadata: Default::default(),
            }),
            type_url: PROXY_CONFIG_TYPE_URL.into(),
            resource_names: vec!["a.prod".into()],
            ..Default::default()
        })
        .await?;
    let mut stream = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(req_rx))
        .await?
        .into_inner();
    let response = stream.message().await?.context("a response")?;
    assert_eq!(response.type_url, PROXY_CONFIG_TYPE_URL);
    assert_eq!(response.resources.len(), 1);
    assert_eq!(response.resources[0].name, "a.prod");
    let body: serde_json::Value = serde_json::from_slice(&response.resources[0].body)?;
    assert_eq!(body["node"]["id"], "a.prod", "the body is JSON");
    let ack = |nonce: &str| DiscoveryRequest {
        type_url: PROXY_CONFIG_TYPE_URL.into(),
        version_info: response.version_info.clone(),
        response_nonce: nonce.to_owned(),
        ..Default::default()
    };
    // A NACK naming a nonce never sent is stale and ignored; had it counted, the row
    // would show NACK instead of SYNCED after the real ACK.
    let mut stale_nack = ack("not-a-nonce");
    stale_nack.error_detail = Some(skiff_xds::proto::ErrorDetail {
        code: 3,
        message: "stale".into(),
    });
    req_tx.send(stale_nack).await?;
    req_tx.send(ack(&response.nonce)).await?;
    let row = row_until(&server.sync, &tx, "a.prod", "SYNCED", |r| {
        r.status == SyncStatus::Synced
    })
    .await;
    assert_eq!(row.nack, None);
    drop(req_tx);
    server.stop().await;
    Ok(())
}
