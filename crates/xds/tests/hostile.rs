//! Hostile discovery clients over real gRPC on loopback: oversized and garbage
//! messages, huge or forged node ids, NACK texts with terminal escapes, and streams
//! that never send a request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use bytes::{BufMut, Bytes, BytesMut};
use skiff_model::config::ProxyConfig;
use skiff_xds::proto::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use skiff_xds::proto::{DiscoveryRequest, ErrorDetail, Node};
use skiff_xds::{PROXY_CONFIG_TYPE_URL, PushSnapshot, SyncTable, XdsServer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

const PATIENCE: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    sync: SyncTable,
    snapshots: watch::Sender<Arc<PushSnapshot>>,
}

async fn server(first_request_timeout: Duration) -> Server {
    let mut c = ProxyConfig::default();
    c.node.id = "a.prod".into();
    c.node.name = "a".into();
    c.node.namespace = "prod".into();
    let (tx, rx) = watch::channel(Arc::new(PushSnapshot::new(1, vec![c])));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sync = SyncTable::new();
    let xds = XdsServer::new(rx, sync.clone()).with_first_request_timeout(first_request_timeout);
    tokio::spawn(xds.serve(listener, std::future::pending()));
    Server {
        addr,
        sync,
        snapshots: tx,
    }
}

async fn client(addr: SocketAddr) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
    AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20)
}

/// Opens a stream with `first` as its first request; returns the first answer.
async fn first_answer(
    addr: SocketAddr,
    first: DiscoveryRequest,
) -> Result<skiff_xds::proto::DiscoveryResponse, tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(first).await.unwrap();
    let mut stream = client(addr)
        .await
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let answer = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("an answer in time")?;
    drop(tx);
    answer.ok_or_else(|| tonic::Status::ok("stream ended without a status"))
}

fn subscribe(id: String) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node {
            id,
            metadata: Default::default(),
        }),
        type_url: PROXY_CONFIG_TYPE_URL.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_huge_node_id_is_refused_without_being_echoed() -> Result<()> {
    let s = server(PATIENCE).await;
    let status = first_answer(s.addr, subscribe("x".repeat(900_000)))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().len() < 200, "{}", status.message().len());
    // A message past the decoding limit gets a non-zero status, not `OK`.
    let status = first_answer(s.addr, subscribe("x".repeat(2 << 20)))
        .await
        .expect_err("refused");
    assert_ne!(status.code(), tonic::Code::Ok, "{status:?}");
    assert!(
        matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{status:?}"
    );
    // The server still serves a proper proxy.
    let config = first_answer(s.addr, subscribe("a.prod".into())).await?;
    let names: Vec<&str> = config.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a.prod", "mesh"]);
    Ok(())
}

#[tokio::test]
async fn a_garbage_message_gets_an_error_status() -> Result<()> {
    let s = server(PATIENCE).await;
    // A raw gRPC call whose message is not a DiscoveryRequest.
    let mut body = BytesMut::new();
    body.put_u8(0);
    body.put_u32(6);
    body.put_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    let stream = tokio::net::TcpStream::connect(s.addr).await?;
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await?;
    tokio::spawn(conn);
    let req = http::Request::post(format!(
        "http://{}/skiff.discovery.v1.AggregatedDiscoveryService/StreamAggregatedResources",
        s.addr
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(http_body_util::Full::new(Bytes::from(body)))?;
    let resp = send.send_request(req).await?;
    let mut status = resp.headers().get("grpc-status").cloned();
    if status.is_none() {
        let collected = http_body_util::BodyExt::collect(resp.into_body()).await?;
        status = collected
            .trailers()
            .and_then(|t| t.get("grpc-status").cloned());
    }
    let Some(status) = status else {
        bail!("no grpc-status at all")
    };
    assert_ne!(status, "0", "garbage must not end with OK");
    Ok(())
}

#[tokio::test]
async fn nack_text_is_stored_printable_and_bounded() -> Result<()> {
    let s = server(PATIENCE).await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(subscribe("a.prod".into())).await?;
    let mut stream = client(s.addr)
        .await
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let pushed = stream.message().await?.expect("a config");
    let forged = format!("bad\n\u{1b}[2Ja.prod SYNCED{}", "y".repeat(100_000));
    tx.send(DiscoveryRequest {
        type_url: PROXY_CONFIG_TYPE_URL.into(),
        version_info: "old".into(),
        response_nonce: pushed.nonce.clone(),
        error_detail: Some(ErrorDetail {
            code: 3,
            message: forged,
        }),
        ..Default::default()
    })
    .await?;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let nack = loop {
        if let Some(n) = s.sync.row("a.prod", &s.snapshots.borrow()).nack {
            break n;
        }
        assert!(tokio::time::Instant::now() < deadline, "no NACK recorded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(!nack.chars().any(char::is_control), "{nack:?}");
    assert!(nack.len() < 5000, "{}", nack.len());
    assert!(nack.contains("more bytes"), "the cut is said: {nack}");
    Ok(())
}

#[tokio::test]
async fn a_stream_that_never_sends_a_request_is_ended() -> Result<()> {
    let s = server(Duration::from_millis(200)).await;
    let (_tx, rx) = mpsc::channel::<DiscoveryRequest>(1);
    let mut stream = client(s.addr)
        .await
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    match tokio::time::timeout(PATIENCE, stream.message()).await {
        Ok(Err(status)) => assert_eq!(status.code(), tonic::Code::DeadlineExceeded),
        Ok(Ok(m)) => bail!("expected an error, got {m:?}"),
        Err(_) => bail!("the silent stream was kept open"),
    }
    Ok(())
}
