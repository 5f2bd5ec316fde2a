//! The demo as a user runs it, in real processes on loopback: a `frontend` sample app
//! calls `backend` through its own `skiff proxy` (as an HTTP proxy), which routes to the
//! backend's `skiff proxy` over the transport header. A `x-canary: true` request header,
//! forwarded by the sample app, picks the v2 subset, as in the canary example.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use skiff_model::config::{
    Cluster, Endpoint, Forward, HeaderMatch, InboundPort, LbPolicy, Node, OutboundPort, Protocol,
    ProxyConfig, Route, RouteAction, RouteMatch, StringMatch, VirtualHost, WeightedCluster,
};

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two loopback addresses for this test process, away from other tests' addresses.
fn addresses() -> (IpAddr, IpAddr) {
    let b = 100 + (std::process::id() % 100) as u8;
    (
        IpAddr::V4(Ipv4Addr::new(127, b, 201, 1)),
        IpAddr::V4(Ipv4Addr::new(127, b, 201, 2)),
    )
}

fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sample_app(listen: SocketAddr, args: &[&str], env: &[(&str, String)]) -> Proc {
    let mut command = Command::new(env!("CARGO_BIN_EXE_skiff"));
    command
        .arg("sample-app")
        .arg("--listen")
        .arg(listen.to_string())
        .args(args)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let child = Proc(child);
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("sample-app started");
    assert_eq!(line, format!("listening on {listen}"));
    child
}

fn proxy(id: &str, ip: IpAddr, config: &ProxyConfig, dir: &Path) -> Proc {
    let path = dir.join(format!("{id}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "proxy",
            "--id",
            id,
            "--concurrency",
            "1",
            "--access-log",
            "off",
        ])
        .arg("--config-file")
        .arg(&path)
        .arg("--address")
        .arg(ip.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Proc(child)
}

/// GET `path` from `addr`; returns (status, body). `None` while nothing answers.
fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.parse().ok()?, body.to_owned()))
}

fn wait_ready(admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if matches!(get(admin, "/ready", &[]), Some((200, _))) {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("proxy with admin {admin} never became ready");
}

fn node(name: &str, ip: IpAddr) -> Node {
    Node {
        id: format!("{name}.prod"),
        name: name.to_owned(),
        namespace: "prod".to_owned(),
        address: Some(ip),
        labels: BTreeMap::from([("app".to_owned(), name.to_owned())]),
        service_account: "default".to_owned(),
        spiffe_id: "spiffe://cluster.local/ns/prod/sa/default".to_owned(),
        ..Node::default()
    }
}

fn cluster(subset: &str, app: SocketAddr) -> Cluster {
    Cluster {
        name: format!("outbound|80|{subset}|backend.prod.svc.cluster.local"),
        service: "backend.prod.svc.cluster.local".to_owned(),
        port: 80,
        subset: Some(subset.to_owned()),
        protocol: Protocol::Http,
        lb: LbPolicy::RoundRobin,
        endpoints: vec![Endpoint {
            address: app,
            proxy_port: Some(15006),
            workload: format!("backend-{subset}.prod"),
            weight: 1,
            spiffe_id: String::new(),
            sidecar: true,
            mtls: false,
            locality: String::new(),
            priority: 0,
            dns: None,
        }],
        connect_timeout: Duration::from_secs(2),
        tls: Default::default(),
        traffic: Default::default(),
    }
}

fn forward_to(subset: &str) -> RouteAction {
    RouteAction::Forward(Forward {
        destinations: vec![WeightedCluster {
            cluster: format!("outbound|80|{subset}|backend.prod.svc.cluster.local"),
            weight: 100,
        }],
        retries: None,
        rewrite: None,
    })
}

#[test]
fn frontend_reaches_backend_through_two_proxies_and_canary_header_picks_v2() {
    let (front_ip, back_ip) = addresses();
    let dir = tempfile::tempdir().unwrap();
    let v1 = SocketAddr::new(back_ip, free_port(back_ip));
    let v2 = SocketAddr::new(back_ip, free_port(back_ip));
    let frontend = SocketAddr::new(front_ip, free_port(front_ip));

    // The backend's sidecar: both versions' ports behind one inbound listener.
    let backend_config = ProxyConfig {
        node: node("backend", back_ip),
        inbound: [v1, v2]
            .iter()
            .map(|app| InboundPort {
                target_port: app.port(),
                protocol: Protocol::Http,
                services: vec!["backend.prod.svc.cluster.local:80".to_owned()],
                mtls: Default::default(),
            })
            .collect(),
        ..ProxyConfig::default()
    };
    // The frontend's sidecar: backend:80, canary header to v2, the rest to v1.
    let canary = RouteMatch {
        headers: vec![HeaderMatch {
            name: "x-canary".to_owned(),
            value: StringMatch::Exact("true".to_owned()),
        }],
        ..RouteMatch::default()
    };
    let frontend_config = ProxyConfig {
        node: node("frontend", front_ip),
        outbound: vec![OutboundPort {
            port: 80,
            protocol: Protocol::Http,
            virtual_hosts: vec![VirtualHost {
                name: "backend.prod.svc.cluster.local:80".to_owned(),
                domains: ["backend", "backend.prod", "backend.prod.svc.cluster.local"]
                    .iter()
                    .flat_map(|d| [d.to_string(), format!("{d}:80")])
                    .collect(),
                routes: vec![
                    Route {
                        name: "prod/backend/0".to_owned(),
                        matches: vec![canary],
                        action: forward_to("v2"),
                        timeout: None,
                    },
                    Route {
                        name: "prod/backend/1".to_owned(),
                        matches: vec![],
                        action: forward_to("v1"),
                        timeout: None,
                    },
                ],
            }],
            tcp: vec![],
        }],
        clusters: vec![cluster("v1", v1), cluster("v2", v2)],
        ..ProxyConfig::default()
    };

    let _backend_proxy = proxy("backend.prod", back_ip, &backend_config, dir.path());
    let _frontend_proxy = proxy("frontend.prod", front_ip, &frontend_config, dir.path());
    wait_ready(SocketAddr::new(back_ip, 15000));
    wait_ready(SocketAddr::new(front_ip, 15000));
    let _v1 = sample_app(v1, &["--version", "1.0.0", "--name", "backend-v1"], &[]);
    let _v2 = sample_app(v2, &["--version", "2.0.0", "--name", "backend-v2"], &[]);
    let _frontend = sample_app(
        frontend,
        &[
            "--version",
            "2.0.0",
            "--name",
            "frontend",
            "--target",
            "backend.prod.svc.cluster.local",
        ],
        &[("HTTP_PROXY", format!("http://{front_ip}:15001"))],
    );

    let head = "Hello, world!\nVersion: 2.0.0\nHostname: frontend\nTarget: http://backend.prod.svc.cluster.local/\n";
    let (status, body) = get(frontend, "/", &[]).expect("frontend answers");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        format!("{head}  Hello, world!\n  Version: 1.0.0\n  Hostname: backend-v1\n")
    );
    let (status, body) = get(frontend, "/", &[("x-canary", "true")]).expect("frontend answers");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        format!("{head}  Hello, world!\n  Version: 2.0.0\n  Hostname: backend-v2\n")
    );

    // With the backend gone, the frontend reports the proxy's 503 as its own 502.
    drop(_v1);
    let (status, body) = get(frontend, "/", &[]).expect("frontend answers");
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("answered 503"), "{body}");
}
