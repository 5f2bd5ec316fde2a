//! TCP and TLS routes: weighted TCP routes, `destinationSubnets`, TLS routed by the
//! ClientHello's server name without terminating it, and the gateway's TCP and
//! `PASSTHROUGH` servers.

use std::net::{IpAddr, SocketAddr};

use skiff_model::config::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::certs::{TestCa, read_text, tls_client, tls_named_server};
use crate::support::*;

/// A TCP server that writes `name` on every connection, then echoes.
async fn named_tcp(ip: IpAddr, name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(name.as_bytes()).await;
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

fn tcp_route(
    name: &str,
    domains: &[&str],
    dests: &[(&str, u32)],
    matches: Vec<L4Match>,
) -> TcpRoute {
    TcpRoute {
        name: name.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        destinations: dests
            .iter()
            .map(|(c, w)| WeightedCluster {
                cluster: c.to_string(),
                weight: *w,
            })
            .collect(),
        matches,
    }
}

fn subnet(s: &str) -> L4Match {
    L4Match {
        destination_subnets: vec![s.into()],
        ..L4Match::default()
    }
}

fn sni(names: &[&str]) -> L4Match {
    L4Match {
        sni_hosts: names.iter().map(|n| n.to_string()).collect(),
        ..L4Match::default()
    }
}

fn opaque_port(port: u16, protocol: Protocol, tcp: Vec<TcpRoute>) -> OutboundPort {
    OutboundPort {
        port,
        protocol,
        virtual_hosts: vec![],
        tcp,
    }
}

#[tokio::test]
async fn tcp_route_weights_split_connections() {
    let ip = fresh_ip();
    let a = named_tcp(ip, "a").await;
    let b = named_tcp(ip, "b").await;
    let config = sidecar(
        ip,
        vec![opaque_port(
            5432,
            Protocol::Tcp,
            vec![tcp_route(
                "ns/db/tcp/0",
                &["db", "db:5432"],
                &[("a", 80), ("b", 20)],
                vec![],
            )],
        )],
        vec![
            cluster("a", Protocol::Tcp, vec![endpoint(a)]),
            cluster("b", Protocol::Tcp, vec![endpoint(b)]),
        ],
    );
    let p = TestProxy::with_config(ip, config).await;
    const N: usize = 300;
    let mut to_b = 0;
    for _ in 0..N {
        let mut s = connect_tunnel(p.outbound(), "db:5432").await.unwrap();
        let who = read_text(&mut s, 1).await;
        s.write_all(b"ping").await.unwrap();
        assert_eq!(read_text(&mut s, 4).await, "ping", "bytes pass both ways");
        if who == "b" {
            to_b += 1;
        }
    }
    // Binomial(300, 0.2): mean 60, sigma sqrt(300 * 0.2 * 0.8) = 6.93; 6 sigma = 41.6.
    assert!(
        (19..=101).contains(&to_b),
        "{to_b} of {N} connections went to b"
    );
    let line = p.log_line("ns/db/tcp/0").await;
    assert!(line.contains("\"- - -\" 0 -"), "{line}");
}

#[tokio::test]
async fn destination_subnets_choose_the_route_and_nothing_else_matches() {
    let ip = fresh_ip();
    let a = named_tcp(ip, "a").await;
    let b = named_tcp(ip, "b").await;
    let config = sidecar(
        ip,
        vec![opaque_port(
            5432,
            Protocol::Tcp,
            vec![
                tcp_route("to-a", &[], &[("a", 100)], vec![subnet("127.200.0.0/16")]),
                tcp_route("to-b", &[], &[("b", 100)], vec![subnet("127.201.0.7")]),
            ],
        )],
        vec![
            cluster("a", Protocol::Tcp, vec![endpoint(a)]),
            cluster("b", Protocol::Tcp, vec![endpoint(b)]),
        ],
    );
    let p = TestProxy::with_config(ip, config).await;
    let mut s = connect_tunnel(p.outbound(), "127.200.9.9:5432")
        .await
        .unwrap();
    assert_eq!(read_text(&mut s, 1).await, "a");
    let mut s = connect_tunnel(p.outbound(), "127.201.0.7:5432")
        .await
        .unwrap();
    assert_eq!(read_text(&mut s, 1).await, "b");
    let err = connect_tunnel(p.outbound(), "127.201.0.8:5432")
        .await
        .unwrap_err();
    assert!(err.starts_with("HTTP/1.1 404"), "{err}");
    let err = connect_tunnel(p.outbound(), "db:5432").await.unwrap_err();
    assert!(
        err.starts_with("HTTP/1.1 404"),
        "a name has no address to match: {err}"
    );
}

/// A sidecar with TLS port 443: `a.example.com` to server a, `*.example.org` to b.
async fn tls_setup(ca: &TestCa) -> (TestProxy, IpAddr) {
    let ip = fresh_ip();
    let a = tls_named_server(ip, "a", ca.leaf(&["a.example.com"])).await;
    let b = tls_named_server(ip, "b", ca.leaf(&["web.example.org"])).await;
    let config = sidecar(
        ip,
        vec![opaque_port(
            443,
            Protocol::Tls,
            vec![
                tcp_route(
                    "ns/ext/tls/0",
                    &[],
                    &[("a", 100)],
                    vec![sni(&["a.example.com"])],
                ),
                tcp_route(
                    "ns/ext/tls/1",
                    &[],
                    &[("b", 100)],
                    vec![sni(&["*.example.org"])],
                ),
            ],
        )],
        vec![
            cluster("a", Protocol::Tcp, vec![endpoint(a)]),
            cluster("b", Protocol::Tcp, vec![endpoint(b)]),
        ],
    );
    (TestProxy::with_config(ip, config).await, ip)
}

#[tokio::test]
async fn tls_routes_by_server_name_without_terminating() {
    let ca = TestCa::new("test ca");
    let (p, _) = tls_setup(&ca).await;
    for (name, want) in [("a.example.com", "a"), ("web.example.org", "b")] {
        let tunnel = connect_tunnel(p.outbound(), "ext:443").await.unwrap();
        // The client checks the backend's own certificate: the proxy did not terminate.
        let mut tls = tls_client(tunnel, name, &ca.pem, None).await.unwrap();
        assert_eq!(read_text(&mut tls, 1).await, want, "{name}");
        tls.write_all(b"hello").await.unwrap();
        assert_eq!(read_text(&mut tls, 5).await, "hello");
    }
    let line = p.log_line("ns/ext/tls/1").await;
    assert!(line.ends_with("ns/ext/tls/1 b"), "{line}");

    // No route for this name: the connection is closed, NR with the name in the log.
    let tunnel = connect_tunnel(p.outbound(), "ext:443").await.unwrap();
    assert!(
        tls_client(tunnel, "c.example.net", &ca.pem, None)
            .await
            .is_err()
    );
    let line = p.log_line("server name c.example.net").await;
    assert!(line.contains(" NR "), "{line}");
}

#[tokio::test]
async fn plain_bytes_on_a_tls_port_get_no_route() {
    let ca = TestCa::new("test ca");
    let (p, _) = tls_setup(&ca).await;
    let mut tunnel = connect_tunnel(p.outbound(), "ext:443").await.unwrap();
    tunnel.write_all(b"not a client hello\r\n").await.unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(tunnel.read(&mut buf).await.unwrap_or(0), 0, "closed");
    let line = p.log_line("it sent no TLS server name").await;
    assert!(line.contains(" NR "), "{line}");
}

#[tokio::test]
async fn gateway_tcp_and_passthrough_servers() {
    let ca = TestCa::new("test ca");
    let ip = fresh_ip();
    let db = named_tcp(ip, "d").await;
    let web = tls_named_server(ip, "w", ca.leaf(&["shop.example.com"])).await;
    let mut config = sidecar(
        ip,
        vec![],
        vec![
            cluster("db", Protocol::Tcp, vec![endpoint(db)]),
            cluster("web", Protocol::Tcp, vec![endpoint(web)]),
        ],
    );
    config.node.kind = ProxyKind::Gateway;
    config.gateway = vec![
        GatewayPort {
            port: 443,
            protocol: Protocol::Tls,
            gateways: vec!["ns/gw".into()],
            virtual_hosts: vec![],
            tcp: vec![tcp_route(
                "ns/shop/tls/0",
                &[],
                &[("web", 100)],
                vec![sni(&["shop.example.com"])],
            )],
            tls: vec![],
        },
        GatewayPort {
            port: 31400,
            protocol: Protocol::Tcp,
            gateways: vec!["ns/gw".into()],
            virtual_hosts: vec![],
            tcp: vec![tcp_route("ns/db/tcp/0", &[], &[("db", 100)], vec![])],
            tls: vec![],
        },
    ];
    let p = TestProxy::with_config(ip, config).await;
    let mut s = TcpStream::connect(p.proxy.gateway_addr(31400).unwrap())
        .await
        .unwrap();
    assert_eq!(read_text(&mut s, 1).await, "d");
    s.write_all(b"x").await.unwrap();
    assert_eq!(read_text(&mut s, 1).await, "x");

    let s = TcpStream::connect(p.proxy.gateway_addr(443).unwrap())
        .await
        .unwrap();
    let mut tls = tls_client(s, "shop.example.com", &ca.pem, None)
        .await
        .unwrap();
    assert_eq!(read_text(&mut tls, 1).await, "w");
    let s = TcpStream::connect(p.proxy.gateway_addr(443).unwrap())
        .await
        .unwrap();
    assert!(
        tls_client(s, "other.example.com", &ca.pem, None)
            .await
            .is_err()
    );
    let line = p.log_line("server name other.example.com").await;
    assert!(line.contains(" NR "), "{line}");
}

#[tokio::test]
async fn allow_any_passes_unknown_destinations_through_and_registry_only_refuses() {
    let ip = fresh_ip();
    let web = backend("outside", std::net::Ipv4Addr::LOCALHOST.into()).await;
    let echo = named_tcp(std::net::Ipv4Addr::LOCALHOST.into(), "e").await;
    let mut config = one_service(
        ip,
        vec![route("default", vec![], to("backend"))],
        vec![cluster("backend", Protocol::Http, vec![endpoint(web.addr)])],
    );
    config.outbound_traffic_policy = OutboundTrafficPolicy::AllowAny;
    let p = TestProxy::with_config(ip, config.clone()).await;
    // HTTP to a name outside the registry: resolved by DNS at the proxy, forwarded.
    let url = format!("http://localhost:{}/x", web.addr.port());
    let r = get(p.outbound(), &url).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-backend"), "outside");
    let line = p.log_line("allow_any").await;
    assert!(line.contains("PassthroughCluster"), "{line}");
    // A tunnel to an unknown port.
    let mut s = connect_tunnel(p.outbound(), &format!("localhost:{}", echo.port()))
        .await
        .unwrap();
    assert_eq!(read_text(&mut s, 1).await, "e");

    // REGISTRY_ONLY: 502, named after Istio's block_all route and BlackHoleCluster.
    config.outbound_traffic_policy = OutboundTrafficPolicy::RegistryOnly;
    p.proxy.apply("2", config).unwrap();
    let r = get(p.outbound(), &url).await;
    assert_eq!(r.status, 502);
    let line = p.log_line("block_all").await;
    assert!(line.contains("REGISTRY_ONLY"), "{line}");
    let err = connect_tunnel(p.outbound(), &format!("localhost:{}", echo.port()))
        .await
        .unwrap_err();
    assert!(err.starts_with("HTTP/1.1 502"), "{err}");
    // A known service is still served.
    assert_eq!(get(p.outbound(), "http://backend/").await.status, 200);
}

/// Moves tokio's clock forward by `d` at once (paused time), lets the woken timers
/// run, and lets time flow again.
async fn jump(d: std::time::Duration) {
    tokio::time::pause();
    tokio::time::advance(d).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::resume();
}

/// An opaque TCP connection is closed after `tcp.idleTimeout` without a byte either
/// way, not before; `0s` turns the timeout off (Envoy's TCP proxy default of an hour
/// otherwise).
#[tokio::test]
async fn idle_tcp_connections_are_closed_after_the_idle_timeout() {
    use std::time::Duration;
    let ip = fresh_ip();
    let a = named_tcp(ip, "a").await;
    let with_idle = |idle: Duration| {
        let mut c = cluster("a", Protocol::Tcp, vec![endpoint(a)]);
        c.traffic.connection_pool = Some(ConnectionPool {
            tcp_idle_timeout: Some(idle),
            ..ConnectionPool::default()
        });
        sidecar(
            ip,
            vec![opaque_port(
                5432,
                Protocol::Tcp,
                vec![tcp_route(
                    "ns/db/tcp/0",
                    &["db", "db:5432"],
                    &[("a", 100)],
                    vec![],
                )],
            )],
            vec![c],
        )
    };
    let p = TestProxy::with_config(ip, with_idle(Duration::from_secs(2))).await;
    let mut s = connect_tunnel(p.outbound(), "db:5432").await.unwrap();
    assert_eq!(read_text(&mut s, 1).await, "a");
    // Traffic within the timeout keeps it open.
    for _ in 0..3 {
        jump(Duration::from_millis(1500)).await;
        s.write_all(b"ping").await.unwrap();
        assert_eq!(read_text(&mut s, 4).await, "ping", "still open");
    }
    // Then nothing for longer than the timeout: the proxy closes it.
    jump(Duration::from_millis(2500)).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "closed by the proxy: {read:?} {rest:?}"
    );
    let line = p.log_line("idle timeout").await;
    assert!(line.contains("ns/db/tcp/0"), "{line}");

    // `0s`: never closed for being idle.
    p.proxy.apply("2", with_idle(Duration::ZERO)).unwrap();
    let mut s = connect_tunnel(p.outbound(), "db:5432").await.unwrap();
    assert_eq!(read_text(&mut s, 1).await, "a");
    jump(Duration::from_secs(2 * 3600)).await;
    s.write_all(b"ping").await.unwrap();
    assert_eq!(read_text(&mut s, 4).await, "ping", "no idle timeout");
}

fn limited_tcp(ip: IpAddr, a: SocketAddr, pool: ConnectionPool) -> ProxyConfig {
    let mut c = cluster("a", Protocol::Tcp, vec![endpoint(a)]);
    c.traffic.connection_pool = Some(pool);
    sidecar(
        ip,
        vec![opaque_port(
            5432,
            Protocol::Tcp,
            vec![tcp_route(
                "ns/db/tcp/0",
                &["db", "db:5432"],
                &[("a", 100)],
                vec![],
            )],
        )],
        vec![c],
    )
}

/// `tcp.maxConnections` on an opaque TCP cluster: a connection over it is refused at
/// once (`503 UO` for a tunnel), as Envoy's TCP proxy refuses it; once one closes,
/// another is taken.
#[tokio::test]
async fn opaque_tcp_connections_over_max_connections_are_refused_uo() {
    let ip = fresh_ip();
    let a = named_tcp(ip, "a").await;
    let pool = ConnectionPool {
        max_connections: Some(2),
        ..ConnectionPool::default()
    };
    let p = TestProxy::with_config(ip, limited_tcp(ip, a, pool)).await;
    let mut first = connect_tunnel(p.outbound(), "db:5432").await.unwrap();
    assert_eq!(read_text(&mut first, 1).await, "a");
    let mut second = connect_tunnel(p.outbound(), "db:5432").await.unwrap();
    assert_eq!(read_text(&mut second, 1).await, "a");
    let refused = connect_tunnel(p.outbound(), "db:5432").await.unwrap_err();
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    let line = p.log_line(" UO ").await;
    assert!(line.contains("connectionPool.tcp.maxConnections"), "{line}");
    // The two still work; when one closes its slot comes back.
    second.write_all(b"ping").await.unwrap();
    assert_eq!(read_text(&mut second, 4).await, "ping");
    drop(first);
    let mut again = None;
    for _ in 0..250 {
        if let Ok(s) = connect_tunnel(p.outbound(), "db:5432").await {
            again = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut again = again.expect("a connection once the first closed");
    assert_eq!(read_text(&mut again, 1).await, "a");
}

/// `tcp.maxConnectionDuration` on an opaque TCP cluster: the connection is closed once
/// open that long, busy or not (Envoy's `max_downstream_connection_duration`, flag
/// `DT`); paused time.
#[tokio::test]
async fn opaque_tcp_connections_are_closed_at_max_connection_duration() {
    use std::time::Duration;
    let ip = fresh_ip();
    let a = named_tcp(ip, "a").await;
    let pool = ConnectionPool {
        max_connection_duration: Some(Duration::from_secs(60)),
        ..ConnectionPool::default()
    };
    let p = TestProxy::with_config(ip, limited_tcp(ip, a, pool)).await;
    let mut s = connect_tunnel(p.outbound(), "db:5432").await.unwrap();
    assert_eq!(read_text(&mut s, 1).await, "a");
    for _ in 0..2 {
        jump(Duration::from_secs(25)).await;
        s.write_all(b"ping").await.unwrap();
        assert_eq!(read_text(&mut s, 4).await, "ping", "still open");
    }
    jump(Duration::from_secs(15)).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "closed by the proxy: {read:?} {rest:?}"
    );
    let line = p.log_line("max connection duration").await;
    assert!(line.contains(" DT "), "{line}");
}
