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
                matches: vec![],
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
    // A port with no config is refused (REGISTRY_ONLY: BlackHoleCluster).
    let err = connect_tunnel(p.outbound(), "cache:6380")
        .await
        .unwrap_err();
    assert!(err.starts_with("HTTP/1.1 502"), "{err}");
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
async fn h2c_upgrade_with_a_body_is_answered_over_http1() {
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
            http::Request::post("http://backend/")
                .header("connection", "Upgrade, HTTP2-Settings")
                .header("upgrade", "h2c")
                .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
                .body(http_body_util::Full::from("data"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "v1:data");
    assert_eq!(r.header("x-seen-version"), "HTTP/1.1");
    assert_eq!(r.header("x-seen-connection"), "");
}

/// One HTTP/2 frame read off a raw connection: (type, flags, stream, payload).
async fn read_frame(s: &mut tokio::net::TcpStream) -> (u8, u8, u32, Vec<u8>) {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.unwrap();
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.unwrap();
    (head[3], head[4], stream, payload)
}

#[tokio::test]
async fn h2c_upgrade_switches_the_connection_and_answers_on_stream_1() {
    let ip = fresh_ip();
    let v1 = backend("v1", ip).await;
    let config = one_service(
        ip,
        vec![route("r", vec![], to("v1"))],
        vec![cluster("v1", Protocol::Http, vec![endpoint(v1.addr)])],
    );
    let p = TestProxy::with_config(ip, config).await;
    // What `curl --http2` sends.
    let mut s = tokio::net::TcpStream::connect(p.outbound()).await.unwrap();
    s.write_all(
        b"GET http://backend/up HTTP/1.1\r\nHost: backend\r\nx-probe: 1\r\n\
          Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(s.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(head.contains("upgrade: h2c"), "{head}");
    // The client's side of HTTP/2: preface and (empty) SETTINGS.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    // The answer to the upgraded request arrives as stream 1.
    let (mut status, mut body) = (None, Vec::new());
    loop {
        let (kind, flags, stream, payload) = read_frame(&mut s).await;
        match (kind, stream) {
            (0x4, 0) | (0x8, _) | (0x6, 0) => {} // SETTINGS (and ACK), WINDOW_UPDATE, PING
            (0x1, 1) => {
                // hpack: `:status: 200` is entry 8 of the static table, sent indexed.
                status = Some(payload[0]);
            }
            (0x0, 1) => body.extend_from_slice(&payload),
            other => panic!("unexpected frame {other:?} with flags {flags:#x}"),
        }
        if stream == 1 && flags & 0x1 != 0 {
            break;
        }
    }
    assert_eq!(status, Some(0x88), "stream 1 was not answered 200");
    assert_eq!(String::from_utf8(body).unwrap(), "v1");
    // Routed and logged as an HTTP/2 request.
    assert!(p.log_line("\"GET /up HTTP/2\"").await.contains(" 200 "));
}
