//! The stream idle timeout (Envoy's `stream_idle_timeout`): a request whose bytes stop
//! moving either way is ended — `408` while its response has not begun, a reset once
//! it has — and recorded `SI`; the connection's other streams carry on, and a stream
//! whose bytes keep moving, however slowly, is never cut. Paused time: the proxy, the
//! clients and the backend share the test's clock.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::*;

const IDLE: Duration = Duration::from_secs(10);

/// The tests' proxy is a sidecar (its outbound listener): the timeout is asked for there.
fn stream_idle_limits() -> Limits {
    Limits {
        stream_idle_timeout: Some(IDLE),
        stream_idle_on_sidecars: true,
        ..Limits::default()
    }
}

/// A request body the test writes to, piece by piece; it ends when the sender drops.
type ChanBody = StreamBody<ReceiverStream<Result<Frame<Bytes>, Infallible>>>;

fn chan_body() -> (mpsc::Sender<Result<Frame<Bytes>, Infallible>>, ChanBody) {
    let (tx, rx) = mpsc::channel(4);
    (tx, StreamBody::new(ReceiverStream::new(rx)))
}

async fn h2_connection(
    proxy: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<ChanBody>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let s = TcpStream::connect(proxy).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .unwrap();
    (sender, tokio::spawn(conn))
}

/// A GET with an empty body on `sender`'s connection.
async fn h2_get_on(
    sender: &mut hyper::client::conn::http2::SendRequest<ChanBody>,
    url: &str,
) -> Reply {
    let (tx, body) = chan_body();
    drop(tx);
    let req = http::Request::get(url).body(body).unwrap();
    read_reply(sender.send_request(req).await.unwrap()).await
}

#[tokio::test(start_paused = true)]
async fn an_http2_stream_that_sends_nothing_more_gets_408_and_its_connection_carries_on() {
    let (p, b, _) = proxy_with(stream_idle_limits()).await;
    let (mut sender, conn) = h2_connection(p.outbound()).await;
    // HEADERS without END_STREAM, then nothing: the backend waits for the body.
    let (stalled_tx, body) = chan_body();
    let req = http::Request::post("http://backend/").body(body).unwrap();
    let started = Instant::now();
    let stalled = tokio::spawn(sender.send_request(req));
    // The connection's other streams work meanwhile...
    tokio::time::sleep(IDLE / 2).await;
    assert_eq!(h2_get_on(&mut sender, "http://backend/").await.status, 200);
    let resp = tokio::time::timeout(IDLE * 2, stalled)
        .await
        .expect("the idle stream was never ended")
        .unwrap()
        .expect("answered, not reset: the response had not begun");
    let waited = started.elapsed();
    let r = read_reply(resp).await;
    assert_eq!(r.status, 408, "{}", r.body);
    assert_eq!(r.body, "stream timeout");
    // Sampled four times a timeout: between 1 and 1.25 timeouts after the last byte.
    assert!(
        waited >= IDLE && waited <= IDLE * 5 / 4 + Duration::from_secs(1),
        "{waited:?}"
    );
    let line = p.log_line(" 408 ").await;
    assert!(line.contains(" 408 SI "), "{line}");
    // ...and after.
    assert_eq!(h2_get_on(&mut sender, "http://backend/").await.status, 200);
    assert!(
        !conn.is_finished(),
        "the connection was closed with the stream"
    );
    assert_eq!(b.hits.load(std::sync::atomic::Ordering::Relaxed), 3);
    drop(stalled_tx);
}

#[tokio::test(start_paused = true)]
async fn an_upstream_that_stalls_mid_response_has_its_stream_reset() {
    let (p, _b, _) = proxy_with(stream_idle_limits()).await;
    let (mut sender, _conn) = h2_connection(p.outbound()).await;
    let (tx, body) = chan_body();
    drop(tx);
    // Its name now, then again after a minute: six idle timeouts of silence.
    let req = http::Request::get("http://backend/trickle/1/60000")
        .body(body)
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let started = Instant::now();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "backend");
    let ended = tokio::time::timeout(IDLE * 2, body.frame())
        .await
        .expect("the stalled stream was never reset");
    let waited = started.elapsed();
    match ended {
        Some(Err(e)) => assert!(format!("{e:?}").contains("INTERNAL_ERROR"), "{e:?}"),
        other => panic!("the stream ended without a reset: {other:?}"),
    }
    assert!(
        waited >= IDLE && waited <= IDLE * 5 / 4 + Duration::from_secs(1),
        "{waited:?}"
    );
    let line = p.log_line("/trickle/1/60000").await;
    assert!(line.contains(" 200 SI "), "{line}");
    // The connection carries on.
    assert_eq!(h2_get_on(&mut sender, "http://backend/").await.status, 200);
}

#[tokio::test(start_paused = true)]
async fn an_upstream_that_stalls_mid_response_to_http1_has_the_connection_closed() {
    let (p, _b, _) = proxy_with(stream_idle_limits()).await;
    let mut s = TcpStream::connect(p.outbound()).await.unwrap();
    s.write_all(b"GET http://backend/trickle/1/60000 HTTP/1.1\r\nHost: backend\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_to_close_within(&mut s, IDLE * 2).await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(answer.contains("backend"), "{answer}");
    assert!(!answer.contains("backendbackend"), "{answer}");
    assert!(started.elapsed() >= IDLE, "{:?}", started.elapsed());
    let line = p.log_line("/trickle/1/60000").await;
    assert!(line.contains(" 200 SI "), "{line}");
    still_serves(&p).await;
}

#[tokio::test(start_paused = true)]
async fn an_http1_request_whose_body_stops_gets_408() {
    let (p, _b, _) = proxy_with(stream_idle_limits()).await;
    let mut s = TcpStream::connect(p.outbound()).await.unwrap();
    s.write_all(b"POST http://backend/ HTTP/1.1\r\nHost: backend\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        while !String::from_utf8_lossy(&answer).contains("stream timeout") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(IDLE * 2, read)
        .await
        .expect("the idle request was never ended");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert_eq!(status(&answer), 408, "{answer}");
    assert!(started.elapsed() >= IDLE, "{:?}", started.elapsed());
    let line = p.log_line(" 408 ").await;
    assert!(line.contains(" 408 SI "), "{line}");
    still_serves(&p).await;
}

#[tokio::test(start_paused = true)]
async fn a_request_body_that_trickles_within_the_timeout_is_not_cut() {
    let (p, _b, _) = proxy_with(stream_idle_limits()).await;
    let mut s = TcpStream::connect(p.outbound()).await.unwrap();
    s.write_all(
        b"POST http://backend/ HTTP/1.1\r\nHost: backend\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    // A byte every half timeout for three timeouts.
    let started = Instant::now();
    for _ in 0..6 {
        tokio::time::sleep(IDLE / 2).await;
        s.write_all(b"1\r\nx\r\n").await.unwrap();
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    assert!(started.elapsed() >= IDLE * 3);
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"backend:xxxxxx") {
        let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert_eq!(status(&answer), 200, "{answer}");
}

/// The same over HTTP/2, in real time: under the paused clock the HTTP/2 request body
/// does not reach the proxy in this harness (why is not understood yet), so this one
/// runs a 2 s timeout against a byte every 0.25 s, for 3 s: a scheduling stall would
/// have to last over 1.75 s to cut it.
#[tokio::test]
async fn an_http2_request_body_that_trickles_within_the_timeout_is_not_cut() {
    let idle = Duration::from_secs(2);
    let (p, _b, _) = proxy_with(Limits {
        stream_idle_timeout: Some(idle),
        stream_idle_on_sidecars: true,
        ..Limits::default()
    })
    .await;
    let (mut sender, _conn) = h2_connection(p.outbound()).await;
    let (tx, body) = chan_body();
    let req = http::Request::post("http://backend/").body(body).unwrap();
    let sent = tokio::spawn(sender.send_request(req));
    for _ in 0..12 {
        tokio::time::sleep(idle / 8).await;
        let sent = tx.send(Ok(Frame::data(Bytes::from_static(b"x")))).await;
        assert!(sent.is_ok(), "cut: {:?}", p.log.lock().unwrap());
    }
    drop(tx);
    let r = read_reply(sent.await.unwrap().unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "backend:xxxxxxxxxxxx");
}

#[tokio::test(start_paused = true)]
async fn a_response_that_trickles_within_the_timeout_is_not_cut() {
    let (p, _b, _) = proxy_with(stream_idle_limits()).await;
    let (mut sender, _conn) = h2_connection(p.outbound()).await;
    // Its name every half timeout, six times: three timeouts in all.
    let started = Instant::now();
    let r = h2_get_on(&mut sender, "http://backend/trickle/6/5000").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "backend".repeat(7));
    assert!(started.elapsed() >= IDLE * 3);
    let line = p.log_line("/trickle/6/5000").await;
    assert!(line.contains(" 200 - "), "{line}");
}

#[tokio::test(start_paused = true)]
async fn with_no_stream_idle_timeout_a_stalled_stream_is_left_alone() {
    let (p, _b, _) = proxy_with(Limits {
        stream_idle_timeout: None,
        ..Limits::default()
    })
    .await;
    let (mut sender, _conn) = h2_connection(p.outbound()).await;
    // Silence for a minute (Envoy's 5 min default is off, as in Istio's sidecars).
    let r = h2_get_on(&mut sender, "http://backend/trickle/1/60000").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "backendbackend");
}

/// The defaults: a sidecar has no stream idle timeout (as Istio's generated config),
/// so six silent minutes pass; a gateway has Envoy's 5 min.
#[tokio::test(start_paused = true)]
async fn by_default_a_sidecar_leaves_a_quiet_stream_alone() {
    let (p, _b, _) = proxy_with(Limits::default()).await;
    let (mut sender, _conn) = h2_connection(p.outbound()).await;
    let r = h2_get_on(&mut sender, "http://backend/trickle/1/360000").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "backendbackend");
}

#[tokio::test(start_paused = true)]
async fn by_default_a_gateway_ends_a_stream_quiet_for_5_minutes() {
    let ip = fresh_ip();
    let b = backend("backend", ip).await;
    let mut config = sidecar(
        ip,
        vec![],
        vec![cluster("backend", Protocol::Http, vec![endpoint(b.addr)])],
    );
    config.node.kind = ProxyKind::Gateway;
    config.gateway = vec![GatewayPort {
        tcp: vec![],
        tls: vec![],
        port: 80,
        protocol: Protocol::Http,
        gateways: vec!["ns/gw".into()],
        virtual_hosts: vec![vhost(&["*"], vec![route("r", vec![], to("backend"))])],
    }];
    let p = TestProxy::start_with(ip, |o| o.gateway_port_offset = 8000).await;
    p.proxy.apply("1", config).unwrap();
    let gw = p.proxy.gateway_addr(80).unwrap();
    let (mut sender, _conn) = h2_connection(gw).await;
    let (tx, body) = chan_body();
    drop(tx);
    let req = http::Request::get("http://shop.example.com/trickle/1/420000")
        .body(body)
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let started = Instant::now();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "backend");
    // Envoy's 5 min, sampled four times a timeout: reset between 5 and 6 min 15 s,
    // before the backend's second piece at 7 min.
    match body.frame().await {
        Some(Err(e)) => assert!(format!("{e:?}").contains("INTERNAL_ERROR"), "{e:?}"),
        other => panic!("the stream ended without a reset: {other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(300) && waited <= Duration::from_secs(376),
        "{waited:?}"
    );
    let line = p.log_line("/trickle/1/420000").await;
    assert!(line.contains(" 200 SI "), "{line}");
}
