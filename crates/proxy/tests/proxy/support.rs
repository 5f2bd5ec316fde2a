//! Backends, clients and config builders for the end-to-end tests.

#![allow(dead_code, reason = "each test uses a different part")]

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use skiff_model::config::*;
use skiff_proxy::{AccessLogTarget, Proxy, ProxyOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::ReceiverStream;

/// A loopback address no other test (or other process of this run) uses:
/// 127.<random>.<counter>.1, so fixed ports like 15001 never clash.
pub fn fresh_ip() -> IpAddr {
    static BASE: OnceLock<u8> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let base = *BASE.get_or_init(|| 10 + (std::process::id() % 200) as u8);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    IpAddr::V4(Ipv4Addr::new(
        127,
        base,
        (n / 200) as u8,
        (n % 200 + 20) as u8,
    ))
}

/// A small HTTP backend (HTTP/1.1 and h2c). It answers with its name in the body and
/// `x-backend`, and echoes what it saw in `x-seen-*` headers. Paths:
/// `/delay/<ms>` waits; `/trickle/<n>/<ms>` answers its name, then its name again n
/// times, `ms` apart; `/status/<code>` answers that code; `/flaky/<n>` fails with 503
/// the first n times; `/grpc/<code>` answers 200 with that `grpc-status`;
/// `/chance/<percent>` fails with 503 that share of the time, at
/// random. Request headers named `x-test-*` come back as `x-seen-x-test-*` (values
/// joined with `,`).
#[derive(Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// Connections accepted.
    pub conns: Arc<AtomicUsize>,
    pub name: &'static str,
    /// The authority of every request it answered, in order.
    pub hosts: Arc<Mutex<Vec<String>>>,
}

pub async fn backend(name: &'static str, ip: IpAddr) -> Backend {
    backend_at(name, SocketAddr::new(ip, 0)).await
}

pub async fn backend_at(name: &'static str, addr: SocketAddr) -> Backend {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let flaky = Arc::new(AtomicUsize::new(0));
    let conns = Arc::new(AtomicUsize::new(0));
    let hosts = Arc::new(Mutex::new(Vec::new()));
    let h = hits.clone();
    let cs = conns.clone();
    let hs = hosts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            cs.fetch_add(1, Ordering::Relaxed);
            let hits = h.clone();
            let flaky = flaky.clone();
            let hosts = hs.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let hits = hits.clone();
                    let flaky = flaky.clone();
                    let host = req
                        .headers()
                        .get("host")
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_owned)
                        .or_else(|| req.uri().authority().map(|a| a.to_string()))
                        .unwrap_or_default();
                    hosts.lock().unwrap().push(host);
                    async move { Ok::<_, Infallible>(answer(name, req, &hits, &flaky).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Backend {
        addr,
        hits,
        conns,
        name,
        hosts,
    }
}

async fn answer(
    name: &'static str,
    mut req: Request<Incoming>,
    hits: &AtomicUsize,
    flaky: &AtomicUsize,
) -> Response<BackendBody> {
    hits.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_owned();
    // `Upgrade: echo` switches to a protocol that writes back what it reads.
    if req.headers().get("upgrade").is_some_and(|u| u == "echo") {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .header("x-backend", name)
            .body(Either::Left(Full::default()))
            .unwrap();
    }
    let mut status = StatusCode::OK;
    if let Some(ms) = path.strip_prefix("/delay/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    } else if let Some(code) = path.strip_prefix("/status/") {
        status = StatusCode::from_u16(code.parse().unwrap()).unwrap();
    } else if let Some(n) = path.strip_prefix("/flaky/")
        && flaky.fetch_add(1, Ordering::Relaxed) < n.parse().unwrap()
    {
        status = StatusCode::SERVICE_UNAVAILABLE;
    } else if path.starts_with("/grpc/") {
        // Answered below with the code as `grpc-status`.
    } else if let Some(pct) = path.strip_prefix("/chance/")
        && rand::random_range(0..100u32) < pct.parse::<u32>().unwrap()
    {
        status = StatusCode::SERVICE_UNAVAILABLE;
    }
    let seen_host = req
        .headers()
        .get("host")
        .map(|h| h.to_str().unwrap().to_owned())
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let mut resp = Response::builder()
        .status(status)
        .header("x-backend", name)
        .header("x-seen-path", req.uri().path_and_query().unwrap().as_str())
        .header("x-seen-host", seen_host)
        .header("x-seen-version", format!("{:?}", req.version()));
    for h in [
        "x-request-id",
        "x-forwarded-proto",
        "x-forwarded-for",
        "connection",
        "proxy-connection",
        "x-canary",
        "x-forwarded-client-cert",
        "x-user",
        "authorization",
    ] {
        if let Some(v) = req.headers().get(h) {
            resp = resp.header(format!("x-seen-{h}"), v.clone());
        }
    }
    if let Some(code) = path.strip_prefix("/grpc/") {
        resp = resp.header("grpc-status", code);
    }
    if let Some((n, ms)) = path
        .strip_prefix("/trickle/")
        .and_then(|rest| rest.split_once('/'))
    {
        return resp
            .body(slow_body(name, n.parse().unwrap(), ms.parse().unwrap()))
            .unwrap();
    }
    let mut test_headers: Vec<&str> = req
        .headers()
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with("x-test-"))
        .collect();
    test_headers.dedup();
    for name in test_headers {
        let joined: Vec<&str> = req
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        resp = resp.header(format!("x-seen-{name}"), joined.join(","));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut out = name.as_bytes().to_vec();
    if !body.is_empty() {
        out.push(b':');
        out.extend_from_slice(&body);
    }
    resp.body(Either::Left(Full::new(Bytes::from(out))))
        .unwrap()
}

type BackendBody =
    Either<Full<Bytes>, StreamBody<ReceiverStream<Result<Frame<Bytes>, Infallible>>>>;

/// The backend's name now, then again `n` times, `ms` milliseconds apart.
fn slow_body(name: &'static str, n: u32, ms: u64) -> BackendBody {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let _ = tx
            .send(Ok(Frame::data(Bytes::from_static(name.as_bytes()))))
            .await;
        for _ in 0..n {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let chunk = Ok(Frame::data(Bytes::from_static(name.as_bytes())));
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    Either::Right(StreamBody::new(ReceiverStream::new(rx)))
}

/// A TCP server that writes back what it reads.
pub async fn echo_server(ip: IpAddr) -> SocketAddr {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A proxy under test, with its access log in memory.
pub struct TestProxy {
    pub proxy: Proxy,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl TestProxy {
    pub async fn start(ip: IpAddr) -> TestProxy {
        TestProxy::start_with(ip, |_| {}).await
    }

    pub async fn start_with(ip: IpAddr, f: impl FnOnce(&mut ProxyOptions)) -> TestProxy {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut options = ProxyOptions {
            id: "test.ns".into(),
            address: Some(ip),
            access_log: AccessLogTarget::Memory(log.clone()),
            drain_timeout: Duration::from_secs(2),
            ..ProxyOptions::default()
        };
        f(&mut options);
        let proxy = Proxy::start(options).await.unwrap();
        TestProxy { proxy, log }
    }

    pub async fn with_config(ip: IpAddr, config: ProxyConfig) -> TestProxy {
        let p = TestProxy::start(ip).await;
        p.proxy.apply("1", config).unwrap();
        p
    }

    pub fn outbound(&self) -> SocketAddr {
        self.proxy.outbound_addr().unwrap()
    }

    pub fn inbound(&self) -> SocketAddr {
        self.proxy.inbound_addr().unwrap()
    }

    /// Waits (briefly) for a log line containing `needle`, and returns it.
    pub async fn log_line(&self, needle: &str) -> String {
        for _ in 0..100 {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "no log line with {needle:?} in {:?}",
            self.log.lock().unwrap()
        );
    }
}

/// A keep-alive HTTP/1.1 client connection to a proxy, sending absolute-form requests
/// as an app with `HTTP_PROXY` set does.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// The client's own address, as the proxy sees it.
    pub local: SocketAddr,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

impl Client {
    pub async fn connect(proxy: SocketAddr) -> Client {
        let s = TcpStream::connect(proxy).await.unwrap();
        let local = s.local_addr().unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .unwrap();
        tokio::spawn(conn);
        Client { sender, local }
    }

    pub async fn get(&mut self, url: &str) -> Reply {
        self.send(Request::get(url).body(Full::default()).unwrap())
            .await
    }

    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Reply {
        self.sender.ready().await.unwrap();
        let resp = self.sender.send_request(req).await.unwrap();
        read_reply(resp).await
    }
}

pub async fn read_reply(resp: Response<Incoming>) -> Reply {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// One request on a new connection.
pub async fn get(proxy: SocketAddr, url: &str) -> Reply {
    Client::connect(proxy).await.get(url).await
}

/// An h2c (prior knowledge) client connection.
pub async fn h2_get(proxy: SocketAddr, url: &str) -> Reply {
    let s = TcpStream::connect(proxy).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(Request::get(url).body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    read_reply(resp).await
}

/// Sends an `Upgrade: echo` request through the proxy; returns the response head and
/// the stream, switched to the echo protocol when the head is a 101.
pub async fn upgrade(proxy: SocketAddr, url: &str, host: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(
        format!(
            "GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    (String::from_utf8_lossy(&head).into_owned(), s)
}

/// Opens a CONNECT tunnel through the proxy; returns the stream after the 200.
pub async fn connect_tunnel(proxy: SocketAddr, target: &str) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if head.starts_with("HTTP/1.1 200") {
        Ok(s)
    } else {
        Err(head)
    }
}

// ----- config builders -----

pub fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint {
        address: addr,
        proxy_port: None,
        workload: "backend.ns".into(),
        weight: 1,
        spiffe_id: String::new(),
        sidecar: false,
        mtls: false,
        locality: String::new(),
        priority: 0,
        dns: None,
    }
}

pub fn cluster(name: &str, protocol: Protocol, endpoints: Vec<Endpoint>) -> Cluster {
    Cluster {
        name: name.into(),
        service: "backend.ns.svc.cluster.local".into(),
        port: 80,
        subset: None,
        protocol,
        lb: LbPolicy::RoundRobin,
        endpoints,
        connect_timeout: Duration::from_secs(2),
        tls: Default::default(),
        traffic: Default::default(),
    }
}

pub fn to(cluster: &str) -> RouteAction {
    weighted(&[(cluster, 100)])
}

pub fn weighted(dests: &[(&str, u32)]) -> RouteAction {
    RouteAction::Forward(Forward {
        destinations: dests
            .iter()
            .map(|(c, w)| WeightedCluster {
                cluster: c.to_string(),
                weight: *w,
            })
            .collect(),
        retries: None,
        rewrite: None,
    })
}

pub fn route(name: &str, matches: Vec<RouteMatch>, action: RouteAction) -> Route {
    Route {
        name: name.into(),
        matches,
        action,
        timeout: None,
    }
}

pub fn vhost(domains: &[&str], routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name: format!("{}:80", domains[0]),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes,
    }
}

pub fn sidecar(ip: IpAddr, outbound: Vec<OutboundPort>, clusters: Vec<Cluster>) -> ProxyConfig {
    ProxyConfig {
        node: Node {
            id: "test.ns".into(),
            name: "test".into(),
            namespace: "ns".into(),
            kind: ProxyKind::Sidecar,
            address: Some(ip),
            ..Node::default()
        },
        outbound,
        inbound: vec![],
        gateway: vec![],
        clusters,
        ..Default::default()
    }
}

pub fn http_port(port: u16, vhosts: Vec<VirtualHost>) -> OutboundPort {
    OutboundPort {
        port,
        protocol: Protocol::Http,
        virtual_hosts: vhosts,
        tcp: vec![],
    }
}

/// A sidecar config with one outbound HTTP port 80 and one service `backend`.
pub fn one_service(ip: IpAddr, routes: Vec<Route>, clusters: Vec<Cluster>) -> ProxyConfig {
    sidecar(
        ip,
        vec![http_port(
            80,
            vec![vhost(&["backend", "backend:80"], routes)],
        )],
        clusters,
    )
}

pub fn uri_prefix(p: &str) -> RouteMatch {
    RouteMatch {
        uri: Some(StringMatch::Prefix(p.into())),
        ..RouteMatch::default()
    }
}
