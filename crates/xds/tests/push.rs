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
    assert_eq!(
        response.resources.len(),
        2,
        "the proxy's own part and the shared part"
    );
    assert_eq!(response.resources[0].name, "a.prod");
    assert_eq!(response.resources[1].name, "shared");
    let body: serde_json::Value = serde_json::from_slice(&response.resources[0].body)?;
    assert_eq!(body["node"]["id"], "a.prod", "the body is JSON");
    let shared: serde_json::Value = serde_json::from_slice(&response.resources[1].body)?;
    assert!(shared.is_object(), "the shared part is JSON: {shared}");
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
