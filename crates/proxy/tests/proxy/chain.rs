//! Two proxies chained: the client's proxy reaches the server's inbound listener with the
//! transport header, and the server's proxy hands the request to its app.

use std::net::SocketAddr;

use skiff_model::config::*;

use crate::support::*;

/// Starts a server workload (app + sidecar) at a fresh address; returns the proxy and
/// the endpoint other proxies use to reach the app through it.
async fn server(name: &'static str, protocol: Protocol) -> (TestProxy, Backend, Endpoint) {
    let ip = fresh_ip();
    let app = backend(name, ip).await;
    let mut config = sidecar(ip, vec![], vec![]);
    config.inbound = vec![InboundPort {
        target_port: app.addr.port(),
        protocol,
        services: vec!["backend.ns.svc.cluster.local:80".into()],
        mtls: Default::default(),
    }];
    let p = TestProxy::with_config(ip, config).await;
    let ep = Endpoint {
        address: app.addr,
        proxy_port: Some(p.inbound().port()),
        workload: format!("{name}.ns"),
        weight: 1,
        spiffe_id: String::new(),
        sidecar: true,
        mtls: false,
        locality: String::new(),
        priority: 0,
        dns: None,
    };
    (p, app, ep)
}

#[tokio::test]
async fn client_proxy_to_server_proxy_to_app() {
    let (server_proxy, app, ep) = server("app", Protocol::Http).await;
    let ip = fresh_ip();
    let config = one_service(
        ip,
        vec![route(
            "default",
            vec![],
            to("outbound|80||backend.ns.svc.cluster.local"),
        )],
        vec![cluster(
            "outbound|80||backend.ns.svc.cluster.local",
            Protocol::Http,
            vec![ep],
        )],
    );
    let client = TestProxy::with_config(ip, config).await;
    let mut c = Client::connect(client.outbound()).await;
    for _ in 0..3 {
        let r = c.get("http://backend/hello").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "app");
        assert_eq!(r.header("x-seen-host"), "backend");
        assert_eq!(r.header("x-seen-x-request-id").len(), 36);
    }
    assert_eq!(app.hits.load(std::sync::atomic::Ordering::Relaxed), 3);
    // Both sides log, with the app's address as the upstream.
    let out = client.log_line("/hello").await;
    assert!(out.contains(&format!("\"{}\"", app.addr)), "{out}");
    let inb = server_proxy.log_line("/hello").await;
    let port = app.addr.port();
    assert!(
        inb.contains(&format!("inbound|{port}|| inbound|{port}||")),
        "{inb}"
    );
}

#[tokio::test]
async fn h2_between_proxies_and_to_a_grpc_app() {
    // The service is HTTP/2 (gRPC-style): the client proxy speaks h2 to the peer proxy,
    // which speaks h2 to the app.
    let (_server_proxy, _app, ep) = server("grpc-app", Protocol::Grpc).await;
    let ip = fresh_ip();
    let config = one_service(
        ip,
        vec![route("default", vec![], to("c"))],
        vec![cluster("c", Protocol::Grpc, vec![ep])],
    );
    let client = TestProxy::with_config(ip, config).await;
    let r = get(client.outbound(), "http://backend/pkg.Service/Method").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-seen-version"), "HTTP/2.0");
    assert_eq!(r.header("x-seen-host"), "backend");
}

#[tokio::test]
async fn inbound_rejects_a_connection_without_header_or_for_an_unknown_port() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server_proxy, _app, _ep) = server("app", Protocol::Http).await;
    let mut s = tokio::net::TcpStream::connect(server_proxy.inbound())
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        s.read_to_end(&mut buf).await.unwrap(),
        0,
        "closed without an answer"
    );
    server_proxy.log_line(" DPE ").await;

    let mut s = tokio::net::TcpStream::connect(server_proxy.inbound())
        .await
        .unwrap();
    let header = skiff_proxy::transport_header::TransportHeader { target_port: 1 }.encode();
    s.write_all(&header).await.unwrap();
    assert_eq!(s.read_to_end(&mut buf).await.unwrap(), 0);
    server_proxy.log_line(" NR ").await;
}

#[tokio::test]
async fn tcp_through_connect_and_two_proxies() {
    let ip = fresh_ip();
    let echo = echo_server(ip).await;
    let mut server_config = sidecar(ip, vec![], vec![]);
    server_config.inbound = vec![InboundPort {
        target_port: echo.port(),
        protocol: Protocol::Tcp,
        services: vec![],
        mtls: Default::default(),
    }];
    let server_proxy = TestProxy::with_config(ip, server_config).await;

    let cip = fresh_ip();
    let config = sidecar(
        cip,
        vec![OutboundPort {
            port: 5432,
            protocol: Protocol::Tcp,
            virtual_hosts: vec![],
            tcp: vec![TcpRoute {
                matches: vec![],
                name: "db.ns.svc.cluster.local:5432".into(),
                domains: vec!["db".into(), "db.ns".into()],
                destinations: vec![WeightedCluster {
                    cluster: "db".into(),
                    weight: 100,
                }],
            }],
        }],
        vec![cluster(
            "db",
            Protocol::Tcp,
            vec![Endpoint {
                address: echo,
                proxy_port: Some(server_proxy.inbound().port()),
                workload: "db.ns".into(),
                weight: 1,
                spiffe_id: String::new(),
                sidecar: true,
                mtls: false,
                locality: String::new(),
                priority: 0,
                dns: None,
            }],
        )],
    );
    let client = TestProxy::with_config(cip, config).await;
    let mut s = connect_tunnel(client.outbound(), "db:5432").await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"ping over two proxies").await.unwrap();
    let mut buf = [0u8; 21];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping over two proxies");
    drop(s);
    let line = client.log_line("\"- - -\"").await;
    assert!(line.contains(" 0 - 21 21 "), "{line}");
    assert!(line.ends_with("db.ns.svc.cluster.local:5432 db"), "{line}");
    let _ = SocketAddr::new(ip, 0);
}

#[tokio::test]
async fn upgrade_through_two_proxies() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_server_proxy, _app, ep) = server("app", Protocol::Http).await;
    let ip = fresh_ip();
    let config = one_service(
        ip,
        vec![route("default", vec![], to("c"))],
        vec![cluster("c", Protocol::Http, vec![ep])],
    );
    let client = TestProxy::with_config(ip, config).await;
    let (head, mut s) = upgrade(client.outbound(), "/ws", "backend").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for msg in [&b"one"[..], b"two", b"three"] {
        s.write_all(msg).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, msg);
    }
}
