//! Protocol handling: h2c clients, HTTP/2 upstreams, CONNECT tunnels, sniffing.

use skiff_model::config::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn h2c_prior_knowledge_client() {
    let ip = fresh_ip();
    let v1 = backend("v1", ip).await;
    let config = one_service(
        ip,
        vec![route("r", vec![], to("v1"))],
        vec![cluster("v1", Protocol::Http, vec![endpoint(v1.addr)])],
    );
    let p = TestProxy::with_config(ip, config).await;
    let r = h2_get(p.outbound(), "http://backend/x").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "v1");
    // HTTP/2 downstream, HTTP/1.1 upstream (the cluster's protocol).
    assert_eq!(r.header("x-seen-version"), "HTTP/1.1");
    assert_eq!(r.header("x-seen-host"), "backend");
    assert!(p.log_line("\"GET /x HTTP/2\"").await.contains(" 200 "));
}

#[tokio::test]
async fn http2_upstream_for_http2_clusters() {
    let ip = fresh_ip();
    let v1 = backend("v1", ip).await;
    let config = one_service(
        ip,
        vec![route("r", vec![], to("v1"))],
        vec![cluster("v1", Protocol::Http2, vec![endpoint(v1.addr)])],
    );
    let p = TestProxy::with_config(ip, config).await;
    let mut c = Client::connect(p.outbound()).await;
    for _ in 0..3 {
        let r = c.get("http://backend/").await;
        assert_eq!(r.header("x-seen-version"), "HTTP/2.0");
        assert_eq!(r.header("x-seen-host"), "backend");
    }
}

fn tcp_config(
    ip: std::net::IpAddr,
    protocol: Protocol,
    target: std::net::SocketAddr,
) -> ProxyConfig {
    sidecar(
        ip,
        vec![OutboundPort {
            port: 6379,
            protocol,
            virtual_hosts: vec![],
            tcp: vec![TcpRoute {
                name: "cache".into(),
                domains: vec![],
                destinations: vec![WeightedCluster {
                    cluster: "cache".into(),
                    weight: 100,
                }],
            }],
        }],
        vec![cluster("cache", Protocol::Tcp, vec![endpoint(target)])],
    )
}

#[tokio::test]
async fn connect_tunnel_for_tcp() {
    let ip = fresh_ip();
    let echo = echo_server(ip).await;
    let p = TestProxy::with_config(ip, tcp_config(ip, Protocol::Tcp, echo)).await;
    let mut s = connect_tunnel(p.outbound(), "cache:6379").await.unwrap();
    s.write_all(b"PING\r\n").await.unwrap();
    let mut buf = [0u8; 6];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"PING\r\n");
    // A port with no config is refused.
    let err = connect_tunnel(p.outbound(), "cache:6380")
        .await
        .unwrap_err();
    assert!(err.starts_with("HTTP/1.1 404"), "{err}");
}

#[tokio::test]
async fn connect_to_a_dead_tcp_endpoint_is_503_uf() {
    let ip = fresh_ip();
    let p = TestProxy::with_config(
        ip,
        tcp_config(ip, Protocol::Tcp, std::net::SocketAddr::new(ip, 9)),
    )
    .await;
    let err = connect_tunnel(p.outbound(), "cache:6379")
        .await
        .unwrap_err();
    assert!(err.starts_with("HTTP/1.1 503"), "{err}");
    assert!(p.log_line("CONNECT").await.contains(" 503 UF "));
}

#[tokio::test]
async fn undeclared_protocol_is_sniffed() {
    let ip = fresh_ip();
    let echo = echo_server(ip).await;
    let p = TestProxy::with_config(ip, tcp_config(ip, Protocol::Unspecified, echo)).await;
    // Not HTTP: carried as TCP.
    let mut s = connect_tunnel(p.outbound(), "cache:6379").await.unwrap();
    s.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
    let mut buf = [0u8; 14];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"*1\r\n$4\r\nPING\r\n");
}

#[tokio::test]
async fn connect_to_an_http_port_serves_http_inside() {
    let ip = fresh_ip();
    let v1 = backend("v1", ip).await;
    let config = one_service(
        ip,
        vec![route("r", vec![], to("v1"))],
        vec![cluster("v1", Protocol::Http, vec![endpoint(v1.addr)])],
    );
    let p = TestProxy::with_config(ip, config).await;
    let mut s = connect_tunnel(p.outbound(), "backend:80").await.unwrap();
    // No Host header: the tunnel's destination is the authority.
    s.write_all(b"GET /in-tunnel HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.0 200"), "{out}");
    assert!(out.ends_with("v1"), "{out}");
}

#[tokio::test]
async fn websocket_style_upgrade() {
    let ip = fresh_ip();
    let v1 = backend("v1", ip).await;
    let config = one_service(
        ip,
        vec![route("r", vec![], to("v1"))],
        vec![cluster("v1", Protocol::Http, vec![endpoint(v1.addr)])],
    );
    let p = TestProxy::with_config(ip, config).await;
    let (head, mut s) = upgrade(p.outbound(), "http://backend/ws", "backend").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("upgrade: echo") && lower.contains("connection: upgrade"),
        "{head}"
    );
    s.write_all(b"ping through the upgrade").await.unwrap();
    let mut buf = [0u8; 24];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping through the upgrade");
    assert!(p.log_line("/ws").await.contains(" 101 - "));
}

#[tokio::test]
async fn h2c_upgrade_is_answered_over_http1() {
    let ip = fresh_ip();
    let v1 = backend("v1", ip).await;
    let config = one_service(
        ip,
        vec![route("r", vec![], to("v1"))],
        vec![cluster("v1", Protocol::Http, vec![endpoint(v1.addr)])],
    );
    let p = TestProxy::with_config(ip, config).await;
    let mut c = Client::connect(p.outbound()).await;
    let r = c
        .send(
            http::Request::get("http://backend/")
                .header("connection", "Upgrade, HTTP2-Settings")
                .header("upgrade", "h2c")
                .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "v1");
    assert_eq!(r.header("x-seen-version"), "HTTP/1.1");
    assert_eq!(r.header("x-seen-connection"), "");
}
