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
    gate: Arc<skiff_xds::server::PushGate>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(addr: SocketAddr, snapshots: watch::Receiver<Arc<PushSnapshot>>) -> Server {
        Self::start_with(addr, snapshots, |s| s).await
    }

    async fn start_with(
        addr: SocketAddr,
        snapshots: watch::Receiver<Arc<PushSnapshot>>,
        options: impl FnOnce(XdsServer) -> XdsServer,
    ) -> Server {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sync = SyncTable::new();
        let server = options(XdsServer::new(snapshots, sync.clone()));
        let gate = server.push_gate().clone();
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
            gate,
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
            let bad = update.own().node.labels.get("rev").map(String::as_str) == Some("bad");
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
    assert_eq!(update.config(), config("a.prod", "1"));
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
    assert_eq!(update.own().node.labels["rev"], "2");
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

    // Going back to the config the proxy runs: nothing needs sending (its NACK said
    // what it holds), and it counts as synced on that version.
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
    assert_eq!(a.client.status().borrow().responses, 2);

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
    assert_eq!(update.own().node.labels["rev"], "2");
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
    assert_eq!(update.own().node.id, "ghost.prod");
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
    let names: Vec<&str> = response.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names[0], "a.prod",
        "the proxy's own part first, then the pieces of the shared part: {names:?}"
    );
    assert!(names.contains(&"mesh"), "{names:?}");
    assert!(response.removed_resources.is_empty());
    let body: serde_json::Value = serde_json::from_slice(&response.resources[0].body)?;
    assert_eq!(body["node"]["id"], "a.prod", "the body is JSON");
    let mesh = response
        .resources
        .iter()
        .find(|r| r.name == "mesh")
        .expect("mesh");
    let mesh: serde_json::Value = serde_json::from_slice(&mesh.body)?;
    assert!(mesh["mesh"].is_object(), "the piece is JSON: {mesh}");
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

/// A proxy speaking the protocol by hand, so a test decides when it ACKs.
struct RawProxy {
    requests: mpsc::Sender<DiscoveryRequest>,
    responses: tonic::Streaming<skiff_xds::proto::DiscoveryResponse>,
}

impl RawProxy {
    async fn connect(addr: SocketAddr, id: &str) -> Result<RawProxy> {
        let mut client =
            AggregatedDiscoveryServiceClient::connect(format!("http://{addr}")).await?;
        let (requests, rx) = mpsc::channel(4);
        requests
            .send(DiscoveryRequest {
                node: Some(skiff_xds::proto::Node {
                    id: id.to_owned(),
                    metadata: [("version".to_owned(), "9.9.9".to_owned())].into(),
                }),
                type_url: PROXY_CONFIG_TYPE_URL.into(),
                resource_names: vec![id.to_owned()],
                ..Default::default()
            })
            .await?;
        let responses = client
            .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(RawProxy {
            requests,
            responses,
        })
    }

    /// The next push, unanswered.
    async fn next_push(&mut self) -> Result<skiff_xds::proto::DiscoveryResponse> {
        tokio::time::timeout(PATIENCE, self.responses.message())
            .await
            .context("a push in time")??
            .context("the stream is open")
    }

    async fn answer(
        &self,
        push: &skiff_xds::proto::DiscoveryResponse,
        nack: Option<&str>,
    ) -> Result<()> {
        self.requests
            .send(DiscoveryRequest {
                type_url: PROXY_CONFIG_TYPE_URL.into(),
                version_info: push.version_info.clone(),
                response_nonce: push.nonce.clone(),
                error_detail: nack.map(|m| skiff_xds::proto::ErrorDetail {
                    code: 3,
                    message: m.to_owned(),
                }),
                ..Default::default()
            })
            .await?;
        Ok(())
    }
}

fn metrics(sync: &SyncTable) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    sync.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
    text
}

/// The value of a sample, 0 when the series is not there yet.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// Publishes the next snapshot as the control plane does: the sync table follows the
/// change, then the streams see it.
fn publish_followed(
    tx: &watch::Sender<Arc<PushSnapshot>>,
    sync: &SyncTable,
    generation: u64,
    configs: Vec<ProxyConfig>,
) -> usize {
    let next = PushSnapshot::new(generation, configs);
    let previous = tx.borrow().clone();
    let affected = sync.publish(&previous, &next, tokio::time::Instant::now());
    tx.send_replace(Arc::new(next));
    affected
}

#[tokio::test]
async fn a_change_is_one_propagation_sample_once_every_affected_proxy_acked() -> Result<()> {
    const PROPAGATED: &str = "skiff_config_propagation_seconds_count";
    let ids = ["a.prod", "b.prod", "c.prod"];
    let configs = |rev: &str| ids.iter().map(|id| config(id, rev)).collect::<Vec<_>>();
    let (tx, rx) = watch::channel(Arc::new(PushSnapshot::default()));
    publish(&tx, 1, configs("1"));
    let server = Server::start("127.0.0.1:0".parse()?, rx).await;
    let mut proxies = Vec::new();
    for id in ids {
        let mut p = RawProxy::connect(server.addr, id).await?;
        let push = p.next_push().await?;
        p.answer(&push, None).await?;
        proxies.push(p);
    }
    for id in ids {
        row_until(&server.sync, &tx, id, "SYNCED", |r| {
            r.status == SyncStatus::Synced
        })
        .await;
    }
    let text = metrics(&server.sync);
    assert_eq!(value(&text, "pilot_xds{version=\"9.9.9\"}"), 3.0, "{text}");
    assert_eq!(value(&text, PROPAGATED), 0.0, "no change yet: {text}");

    assert_eq!(publish_followed(&tx, &server.sync, 2, configs("2")), 3);
    let mut pushes = Vec::new();
    for p in &mut proxies {
        pushes.push(p.next_push().await?);
    }
    // a and b ACK; c is held back.
    for (p, push) in proxies.iter().zip(&pushes).take(2) {
        p.answer(push, None).await?;
    }
    for id in &ids[..2] {
        row_until(&server.sync, &tx, id, "SYNCED on generation 2", |r| {
            r.status == SyncStatus::Synced
        })
        .await;
    }
    let text = metrics(&server.sync);
    assert_eq!(value(&text, PROPAGATED), 0.0, "c has not ACKed: {text}");
    assert_eq!(
        value(&text, "pilot_proxy_convergence_time_count"),
        3.0,
        "three pushes carried the change: {text}"
    );
    let c = server.sync.row("c.prod", &tx.borrow());
    let change = c.last_change.expect("c waits for the change");
    assert_eq!(change.state, skiff_xds::ChangeState::Waiting, "{change:?}");

    proxies[2].answer(&pushes[2], None).await?;
    let c = row_until(&server.sync, &tx, "c.prod", "the change applied", |r| {
        r.last_change
            .as_ref()
            .is_some_and(|c| c.state == skiff_xds::ChangeState::Applied)
    })
    .await;
    assert!(c.last_change.unwrap().propagation_ms.is_some());
    let text = metrics(&server.sync);
    assert_eq!(value(&text, PROPAGATED), 1.0, "{text}");

    // The next change: b rejects it. It is counted as a NACK and as a change that did
    // not propagate, and observes nothing.
    publish_followed(&tx, &server.sync, 3, configs("3"));
    for (i, p) in proxies.iter_mut().enumerate() {
        let push = p.next_push().await?;
        p.answer(&push, (i == 1).then_some("bad route")).await?;
    }
    row_until(&server.sync, &tx, "b.prod", "NACK", |r| {
        r.status == SyncStatus::Nack
    })
    .await;
    for id in ["a.prod", "c.prod"] {
        row_until(&server.sync, &tx, id, "SYNCED on generation 3", |r| {
            r.last_change.as_ref().is_some_and(|c| c.generation == 3)
                && r.status == SyncStatus::Synced
        })
        .await;
    }
    let text = metrics(&server.sync);
    assert_eq!(
        value(&text, "pilot_total_xds_rejects_total{type=\"ProxyConfig\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "skiff_config_propagation_incomplete_total{reason=\"nack\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(value(&text, PROPAGATED), 1.0, "{text}");
    assert_eq!(
        value(&text, "pilot_xds_pushes_total{type=\"ProxyConfig\"}"),
        9.0,
        "{text}"
    );
    drop(proxies);
    server.stop().await;
    Ok(())
}

/// `config(id, "1")` with a cluster per name, each with `endpoints` endpoints.
fn with_clusters(id: &str, clusters: &[(&str, usize)]) -> ProxyConfig {
    let mut c = config(id, "1");
    for (name, endpoints) in clusters {
        let cluster = serde_json::json!({
            "name": name, "service": "s.prod.svc.cluster.local", "port": 80,
            "protocol": "HTTP", "lb": "ROUND_ROBIN", "connectTimeout": 10000,
            "endpoints": (0..*endpoints).map(|i| serde_json::json!({
                "address": format!("10.0.0.{}:8080", i + 1), "workload": format!("w{i}.prod"),
                "weight": 1
            })).collect::<Vec<_>>()
        });
        c.clusters.push(serde_json::from_value(cluster).unwrap());
    }
    c
}

/// A server on `config` (generation 1) and a raw proxy that received and acknowledged
/// its first push.
async fn acked_raw(
    config: ProxyConfig,
) -> Result<(
    watch::Sender<Arc<PushSnapshot>>,
    Server,
    RawProxy,
    skiff_xds::proto::DiscoveryResponse,
)> {
    let (tx, rx) = watch::channel(Arc::new(PushSnapshot::default()));
    publish(&tx, 1, vec![config]);
    let server = Server::start("127.0.0.1:0".parse().unwrap(), rx).await;
    let mut raw = RawProxy::connect(server.addr, "a.prod").await?;
    let first = raw.next_push().await?;
    raw.answer(&first, None).await?;
    Ok((tx, server, raw, first))
}

fn names(push: &skiff_xds::proto::DiscoveryResponse) -> Vec<&str> {
    push.resources.iter().map(|r| r.name.as_str()).collect()
}

#[tokio::test]
async fn a_change_sends_only_the_resources_it_touched_and_names_the_removed() -> Result<()> {
    let (tx, rx) = watch::channel(Arc::new(PushSnapshot::default()));
    publish(
        &tx,
        1,
        vec![with_clusters("a.prod", &[("c1", 2), ("c2", 1)])],
    );
    let server = Server::start("127.0.0.1:0".parse().unwrap(), rx).await;
    let mut raw = RawProxy::connect(server.addr, "a.prod").await?;
    let first = raw.next_push().await?;
    assert_eq!(
        names(&first),
        [
            "a.prod",
            "cluster/c1",
            "cluster/c2",
            "endpoints/c1",
            "endpoints/c2",
            "mesh"
        ]
    );
    raw.answer(&first, None).await?;

    // One more endpoint in c1: that piece alone.
    publish(
        &tx,
        2,
        vec![with_clusters("a.prod", &[("c1", 3), ("c2", 1)])],
    );
    let second = raw.next_push().await?;
    assert_eq!(names(&second), ["endpoints/c1"]);
    assert!(second.removed_resources.is_empty());
    assert_eq!(second.version_info, version(&tx, "a.prod"));
    raw.answer(&second, None).await?;
    let row = row_until(&server.sync, &tx, "a.prod", "SYNCED", |r| {
        r.status == SyncStatus::Synced
    })
    .await;
    let bytes = |push: &skiff_xds::proto::DiscoveryResponse| -> u64 {
        push.resources.iter().map(|r| r.body.len() as u64).sum()
    };
    assert_eq!(row.pushed_bytes, bytes(&first) + bytes(&second), "{row:?}");
    assert!(bytes(&second) * 3 < bytes(&first));

    // c2 goes: its cluster and endpoints are removed, nothing is sent.
    publish(&tx, 3, vec![with_clusters("a.prod", &[("c1", 3)])]);
    let third = raw.next_push().await?;
    assert!(third.resources.is_empty(), "{:?}", names(&third));
    assert_eq!(third.removed_resources, ["cluster/c2", "endpoints/c2"]);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_refused_resource_is_not_sent_again_and_the_others_still_are() -> Result<()> {
    let (tx, server, mut raw, first) =
        acked_raw(with_clusters("a.prod", &[("c1", 1), ("c2", 1)])).await?;

    // Both clusters' endpoints change; the proxy takes c1's and refuses c2's.
    publish(
        &tx,
        2,
        vec![with_clusters("a.prod", &[("c1", 2), ("c2", 2)])],
    );
    let second = raw.next_push().await?;
    assert_eq!(names(&second), ["endpoints/c1", "endpoints/c2"]);
    let holds = |c2: &skiff_xds::proto::DiscoveryResponse| {
        first
            .resources
            .iter()
            .filter(|r| r.name != "endpoints/c1" && r.name != "endpoints/c2")
            .chain(second.resources.iter().filter(|r| r.name == "endpoints/c1"))
            .chain(c2.resources.iter().filter(|r| r.name == "endpoints/c2"))
            .map(|r| (r.name.clone(), r.version.clone()))
            .collect()
    };
    raw.requests
        .send(DiscoveryRequest {
            type_url: PROXY_CONFIG_TYPE_URL.into(),
            version_info: "partial".into(),
            response_nonce: second.nonce.clone(),
            error_detail: Some(skiff_xds::proto::ErrorDetail {
                code: 3,
                message: "endpoints/c2: bad address".into(),
            }),
            initial_resource_versions: holds(&first),
            rejected_resources: vec!["endpoints/c2".into()],
            ..Default::default()
        })
        .await?;
    let row = row_until(&server.sync, &tx, "a.prod", "NACK", |r| {
        r.status == SyncStatus::Nack
    })
    .await;
    assert!(row.nack.unwrap().contains("bad address"));

    // c1 changes again: only c1 is sent; the refused version of c2 is not.
    publish(
        &tx,
        3,
        vec![with_clusters("a.prod", &[("c1", 3), ("c2", 2)])],
    );
    let third = raw.next_push().await?;
    assert_eq!(names(&third), ["endpoints/c1"]);
    raw.answer(&third, None).await?;
    // A new version of c2 is sent.
    publish(
        &tx,
        4,
        vec![with_clusters("a.prod", &[("c1", 3), ("c2", 3)])],
    );
    let fourth = raw.next_push().await?;
    assert_eq!(names(&fourth), ["endpoints/c2"]);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_proxy_that_resubscribes_gets_only_what_changed_meanwhile() -> Result<()> {
    let (tx, server, raw, first) =
        acked_raw(with_clusters("a.prod", &[("c1", 1), ("c2", 1)])).await?;
    drop(raw);

    // While the proxy is away, c2 gains an endpoint and c1 goes.
    publish(&tx, 2, vec![with_clusters("a.prod", &[("c2", 2)])]);
    let mut client =
        AggregatedDiscoveryServiceClient::connect(format!("http://{}", server.addr)).await?;
    let (requests, rx) = mpsc::channel(4);
    requests
        .send(DiscoveryRequest {
            node: Some(skiff_xds::proto::Node {
                id: "a.prod".into(),
                metadata: Default::default(),
            }),
            type_url: PROXY_CONFIG_TYPE_URL.into(),
            version_info: first.version_info.clone(),
            initial_resource_versions: first
                .resources
                .iter()
                .map(|r| (r.name.clone(), r.version.clone()))
                .collect(),
            ..Default::default()
        })
        .await?;
    let mut responses = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let resumed = tokio::time::timeout(PATIENCE, responses.message())
        .await??
        .context("a push")?;
    assert_eq!(names(&resumed), ["endpoints/c2"]);
    assert_eq!(resumed.removed_resources, ["cluster/c1", "endpoints/c1"]);
    drop(requests);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_client_applies_deltas_into_the_config_the_server_holds() {
    let (tx, rx) = watch::channel(Arc::new(PushSnapshot::default()));
    let configs = [
        with_clusters("a.prod", &[("c1", 1), ("c2", 1)]),
        with_clusters("a.prod", &[("c1", 2), ("c2", 1)]),
        with_clusters("a.prod", &[("c2", 3)]),
        with_clusters("a.prod", &[("c2", 3), ("c3", 1)]),
    ];
    publish(&tx, 1, vec![configs[0].clone()]);
    let server = Server::start("127.0.0.1:0".parse().unwrap(), rx).await;
    let mut a = proxy(server.addr, "a.prod");
    for (i, want) in configs.iter().enumerate() {
        if i > 0 {
            publish(&tx, i as u64 + 1, vec![want.clone()]);
        }
        let update = a.next_update().await;
        assert_eq!(update.config(), *want, "after change {i}");
        assert_eq!(update.version, version(&tx, "a.prod"), "after change {i}");
    }
    server.stop().await;
}

/// A config whose one cluster has 2,000 endpoints (~200 KB), different each round.
fn big_endpoints(id: &str, round: usize) -> ProxyConfig {
    let mut c = with_clusters(id, &[("c1", 0)]);
    let template = with_clusters(id, &[("c1", 1)]).clusters[0].endpoints[0].clone();
    c.clusters[0].endpoints = (0..2000)
        .map(|i| {
            let mut e = template.clone();
            e.address = format!("10.{}.{}.{}:8080", round % 250, i / 250, i % 250)
                .parse()
                .unwrap();
            e
        })
        .collect();
    c
}

#[tokio::test]
async fn with_one_push_at_a_time_a_proxy_that_stops_reading_gives_its_place_on() -> Result<()> {
    // The stuck proxy's first config (500 clusters of 200 endpoints, ~10 MB in ~160
    // responses) is far more than the HTTP/2 windows and the stream's queue hold: its
    // push blocks, holding the only place.
    let names: Vec<String> = (0..500).map(|i| format!("c{i}")).collect();
    let clusters: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 200)).collect();
    let (tx, rx) = watch::channel(Arc::new(PushSnapshot::default()));
    publish(
        &tx,
        1,
        vec![
            with_clusters("stuck.prod", &clusters),
            config("b.prod", "0"),
        ],
    );
    let server = Server::start_with("127.0.0.1:0".parse().unwrap(), rx, |s| {
        s.with_push_limit(1, Duration::from_millis(300))
    })
    .await;
    let stuck = RawProxy::connect(server.addr, "stuck.prod").await?;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.gate.load() != (1, 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stuck push never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Another proxy gets its config once the stuck push gives its place up.
    let b = proxy(server.addr, "b.prod");
    let want = version(&tx, "b.prod");
    b.status_until("its first config", |s| s.version.as_deref() == Some(&want))
        .await;
    assert_eq!(server.gate.load(), (0, 0), "the stuck push holds no place");
    let text = metrics(&server.sync);
    assert_eq!(
        value(&text, "pilot_proxy_queue_time_count"),
        2.0,
        "both pushes passed the gate: {text}"
    );
    drop(stuck);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_proxy_that_stops_reading_holds_a_bounded_amount_and_delays_no_one() -> Result<()> {
    // Each snapshot gives the stuck proxy ~200 KB of new endpoints: far more, over
    // all of them, than the HTTP/2 windows and the stream's queue hold.
    let big = big_endpoints;
    let (tx, rx) = watch::channel(Arc::new(PushSnapshot::default()));
    publish(&tx, 1, vec![big("stuck.prod", 0), config("b.prod", "0")]);
    let server = Server::start("127.0.0.1:0".parse().unwrap(), rx).await;
    // It subscribes, then never reads again.
    let stuck = RawProxy::connect(server.addr, "stuck.prod").await?;
    let b = proxy(server.addr, "b.prod");
    row_until(&server.sync, &tx, "stuck.prod", "first push", |r| {
        r.pushes >= 1
    })
    .await;

    let mut published = Vec::new();
    for round in 1..=40 {
        let snapshot = Arc::new(PushSnapshot::new(
            round as u64 + 1,
            [
                big("stuck.prod", round),
                config("b.prod", &round.to_string()),
            ],
        ));
        published.push(Arc::downgrade(&snapshot));
        tx.send_replace(snapshot);
        tokio::task::yield_now().await;
    }
    // The healthy proxy gets the last version, though the other is stuck.
    let want = version(&tx, "b.prod");
    b.status_until("the last version", |s| s.version.as_deref() == Some(&want))
        .await;
    let row = server.sync.row("stuck.prod", &tx.borrow());
    assert!(
        row.pushes < 40,
        "the stuck proxy was not sent every round: {row:?}"
    );
    // Of forty snapshots, the server keeps the current one, the one the stuck stream
    // is blocked sending, and perhaps one a stream is between: not the history.
    tokio::time::sleep(QUIET).await;
    let alive = published.iter().filter(|w| w.strong_count() > 0).count();
    assert!(alive <= 3, "{alive} of 40 snapshots still held");
    drop(stuck);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_large_change_comes_in_parts_that_the_client_applies_together() -> Result<()> {
    // 300 clusters of 10 endpoints: some 300 KB, more than one response holds.
    let names: Vec<String> = (0..300).map(|i| format!("c{i:03}")).collect();
    let clusters: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 10)).collect();
    let want = with_clusters("a.prod", &clusters);
    let (tx, rx) = watch::channel(Arc::new(PushSnapshot::default()));
    publish(&tx, 1, vec![want.clone()]);
    let server = Server::start("127.0.0.1:0".parse().unwrap(), rx).await;

    let mut raw = RawProxy::connect(server.addr, "a.prod").await?;
    let mut parts = vec![raw.next_push().await?];
    while parts.last().unwrap().more {
        parts.push(raw.next_push().await?);
    }
    assert!(parts.len() >= 4, "{} parts", parts.len());
    for part in &parts {
        let size: usize = part.resources.iter().map(|r| r.body.len()).sum();
        assert!(size <= 80 * 1024, "a part of {size} bytes");
        assert_eq!(part.version_info, version(&tx, "a.prod"));
    }
    drop(raw);

    // The client hands over the whole config once, from the last part.
    let mut a = proxy(server.addr, "a.prod");
    let update = a.next_update().await;
    assert_eq!(update.config(), want);
    a.assert_no_update().await;
    row_until(&server.sync, &tx, "a.prod", "SYNCED", |r| {
        r.status == SyncStatus::Synced
    })
    .await;
    server.stop().await;
    Ok(())
}

/// `with_clusters` plus an HTTP port 80 with a virtual host per cluster name, named
/// `<cluster>.prod`, routing to that cluster.
fn with_hosts(id: &str, clusters: &[&str]) -> ProxyConfig {
    let mut c = with_clusters(id, &clusters.iter().map(|n| (*n, 1)).collect::<Vec<_>>());
    let vhosts: Vec<serde_json::Value> = clusters
        .iter()
        .map(|n| {
            serde_json::json!({
                "name": format!("{n}.prod.svc.cluster.local:80"),
                "domains": [format!("{n}.prod"), format!("{n}.prod:80")],
                "routes": [{"name": "default", "matches": [],
                            "action": {"forward": {"destinations": [{"cluster": n, "weight": 100}]}}}]
            })
        })
        .collect();
    c.outbound = vec![
        serde_json::from_value(serde_json::json!({
            "port": 80, "protocol": "HTTP", "virtualHosts": vhosts, "tcp": []
        }))
        .unwrap(),
    ];
    c
}

#[tokio::test]
async fn an_on_demand_proxy_is_sent_only_what_its_names_reach() -> Result<()> {
    let (tx, rx) = watch::channel(Arc::new(PushSnapshot::default()));
    publish(&tx, 1, vec![with_hosts("a.prod", &["c1", "c2", "c3"])]);
    let server = Server::start("127.0.0.1:0".parse().unwrap(), rx).await;
    let mut client =
        AggregatedDiscoveryServiceClient::connect(format!("http://{}", server.addr)).await?;
    let (requests, rx) = mpsc::channel(4);
    requests
        .send(DiscoveryRequest {
            node: Some(skiff_xds::proto::Node {
                id: "a.prod".into(),
                metadata: Default::default(),
            }),
            type_url: PROXY_CONFIG_TYPE_URL.into(),
            on_demand: true,
            subscribe: vec!["c2.prod".into()],
            ..Default::default()
        })
        .await?;
    let mut responses = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut next = async || -> Result<skiff_xds::proto::DiscoveryResponse> {
        tokio::time::timeout(PATIENCE, responses.message())
            .await??
            .context("a push")
    };
    let first = next().await?;
    assert_eq!(
        names(&first),
        [
            "a.prod",
            "cluster/c2",
            "endpoints/c2",
            "mesh",
            "port/80",
            "vhost/80/c2.prod.svc.cluster.local:80"
        ]
    );
    // Its version is that of what it holds, not of the whole view.
    assert_ne!(first.version_info, version(&tx, "a.prod"));

    // One more name, with its port: only what it adds.
    requests
        .send(DiscoveryRequest {
            type_url: PROXY_CONFIG_TYPE_URL.into(),
            subscribe: vec!["c3.prod:80".into()],
            ..Default::default()
        })
        .await?;
    let second = next().await?;
    assert_eq!(
        names(&second),
        [
            "cluster/c3",
            "endpoints/c3",
            "vhost/80/c3.prod.svc.cluster.local:80"
        ]
    );
    // A change to a service it did not ask for sends it nothing; one to a service it
    // holds does.
    publish(
        &tx,
        2,
        vec![with_hosts("a.prod", &["c1", "c2", "c3", "c4"])],
    );
    tokio::time::sleep(QUIET).await;
    let mut changed = with_hosts("a.prod", &["c1", "c2", "c3", "c4"]);
    changed.clusters[2].endpoints.clear();
    publish(&tx, 3, vec![changed]);
    let third = next().await?;
    assert_eq!(
        third.removed_resources,
        ["endpoints/c3"],
        "{:?}",
        names(&third)
    );
    assert!(third.resources.is_empty(), "{:?}", names(&third));
    drop(requests);
    server.stop().await;
    Ok(())
}
