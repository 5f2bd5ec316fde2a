//! Idle connections are closed: an HTTP/2 connection with no request in flight (GOAWAY,
//! then close) and an opaque TCP connection that carries no byte, each after its idle
//! timeout; a request that takes longer than the timeout is not cut.

use hyper_util::rt::{TokioExecutor, TokioIo};

use super::*;

fn idle_limits() -> Limits {
    Limits {
        idle_timeout: Some(Duration::from_secs(1)),
        tcp_idle_timeout: Some(Duration::from_secs(1)),
        ..Limits::default()
    }
}

/// An HTTP/2 (prior knowledge) connection to the proxy: its sender, and its
/// connection task, which ends when the proxy closes the connection.
async fn h2_connection(
    proxy: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let s = TcpStream::connect(proxy).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .unwrap();
    (sender, tokio::spawn(conn))
}

async fn h2_request(
    sender: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    url: &str,
) -> Reply {
    let req = http::Request::get(url)
        .body(http_body_util::Empty::new())
        .unwrap();
    read_reply(sender.send_request(req).await.unwrap()).await
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_its_idle_timeout() {
    let (p, _b, _) = proxy_with(idle_limits()).await;
    let (mut sender, conn) = h2_connection(p.outbound()).await;
    assert_eq!(h2_request(&mut sender, "http://backend/").await.status, 200);
    // Nothing more is sent: the proxy closes the connection (GOAWAY, then close).
    let ended = tokio::time::timeout(PATIENCE, conn)
        .await
        .expect("the proxy kept an idle HTTP/2 connection open");
    ended.unwrap().expect("a clean close after GOAWAY");
    still_serves(&p).await;
}

#[tokio::test]
async fn a_request_longer_than_the_idle_timeout_is_not_cut() {
    let (p, _b, _) = proxy_with(idle_limits()).await;
    let (mut sender, conn) = h2_connection(p.outbound()).await;
    // 2.5 s in flight, more than twice the 1 s idle timeout: not idle.
    let r = h2_request(&mut sender, "http://backend/delay/2500").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!conn.is_finished(), "closed while a request was in flight");
}

#[tokio::test]
async fn an_idle_tcp_connection_is_closed_after_its_idle_timeout() {
    let ip = fresh_ip();
    let echo = echo_server(ip).await;
    let config = sidecar(
        ip,
        vec![OutboundPort {
            port: 5432,
            protocol: Protocol::Tcp,
            virtual_hosts: vec![],
            tcp: vec![TcpRoute {
                name: "ns/db/tcp/0".into(),
                domains: vec!["db".into(), "db:5432".into()],
                destinations: vec![WeightedCluster {
                    cluster: "db".into(),
                    weight: 100,
                }],
                matches: vec![],
            }],
        }],
        vec![cluster("db", Protocol::Tcp, vec![endpoint(echo)])],
    );
    let p = TestProxy::start_with(ip, |o| o.limits = idle_limits()).await;
    p.proxy.apply("1", config).unwrap();
    let mut s = connect_tunnel(p.outbound(), "db:5432").await.unwrap();
    // Bytes both ways for longer than the timeout keep it open...
    for _ in 0..6 {
        s.write_all(b"ping").await.unwrap();
        let mut pong = [0u8; 4];
        s.read_exact(&mut pong).await.unwrap();
        assert_eq!(&pong, b"ping");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // ...and silence closes it.
    assert_eq!(read_to_close(&mut s).await, "");
    let line = p.log_line("ns/db/tcp/0").await;
    assert!(line.contains("idle timeout"), "{line}");
}
