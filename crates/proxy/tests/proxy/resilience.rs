//! DestinationRule resilience through a real proxy: circuit breaking (`UO`), outlier
//! detection (ejection and return, `maxEjectionPercent`), consistent hashing and the
//! spread of random balancing.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use skiff_model::config::*;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::support::*;

/// A backend whose answers are held until the test lets them go (one permit per
/// answer), or answered at once with a status the test can change.
#[derive(Clone)]
struct Held {
    addr: SocketAddr,
    /// Requests that reached it.
    arrived: Arc<AtomicUsize>,
    /// Connections it accepted.
    conns: Arc<AtomicUsize>,
    /// Connections that ended.
    closed: Arc<AtomicUsize>,
    status: Arc<AtomicU16>,
    gate: Option<Arc<Semaphore>>,
}

async fn held_backend(name: &'static str, ip: IpAddr, gated: bool) -> Held {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
    let b = Held {
        addr: listener.local_addr().unwrap(),
        arrived: Arc::default(),
        conns: Arc::default(),
        closed: Arc::default(),
        status: Arc::new(AtomicU16::new(200)),
        gate: gated.then(|| Arc::new(Semaphore::new(0))),
    };
    let state = b.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            state.conns.fetch_add(1, Ordering::Relaxed);
            let state = state.clone();
            let closed = state.closed.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            state.arrived.fetch_add(1, Ordering::Relaxed);
                            if let Some(gate) = &state.gate {
                                gate.acquire().await.unwrap().forget();
                            }
                            let resp = Response::builder()
                                .status(state.status.load(Ordering::Relaxed))
                                .header("x-backend", name)
                                .body(Full::new(Bytes::from_static(name.as_bytes())))
                                .unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
                closed.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    b
}

fn pool(f: impl FnOnce(&mut ConnectionPool)) -> ConnectionPool {
    let mut p = ConnectionPool::default();
    f(&mut p);
    p
}

/// `n` requests at once, each on its own connection; the replies as they come.
fn concurrent(out: SocketAddr, n: usize) -> tokio::sync::mpsc::Receiver<Reply> {
    let (tx, rx) = tokio::sync::mpsc::channel(n);
    for _ in 0..n {
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(get(out, "http://backend/").await).await;
        });
    }
    rx
}

async fn next(rx: &mut tokio::sync::mpsc::Receiver<Reply>) -> Reply {
    // A guard against a hang, not a measurement.
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a reply")
        .expect("a reply")
}

fn count_log(p: &TestProxy, needle: &str) -> usize {
    p.log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

async fn wait_log_count(p: &TestProxy, needle: &str, n: usize) {
    for _ in 0..250 {
        if count_log(p, needle) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "fewer than {n} log lines with {needle:?}: {:?}",
        p.log.lock().unwrap()
    );
}

#[tokio::test]
async fn pending_overflow_is_answered_503_uo_at_once() {
    let ip = fresh_ip();
    let b = held_backend("slow", ip, true).await;
    let mut c = cluster("slow", Protocol::Http, vec![endpoint(b.addr)]);
    c.traffic.connection_pool = Some(pool(|p| {
        p.max_connections = Some(1);
        p.max_pending_requests = Some(1);
    }));
    let p = TestProxy::with_config(
        ip,
        one_service(ip, vec![route("r", vec![], to("slow"))], vec![c]),
    )
    .await;
    let mut replies = concurrent(p.outbound(), 20);
    // One request holds the one connection, one waits for it: the other 18 are
    // answered while both are still held at the backend, so none was queued.
    for _ in 0..18 {
        let r = next(&mut replies).await;
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(r.header("x-envoy-overloaded"), "true");
        assert!(r.body.ends_with("reset reason: overflow"), "{}", r.body);
    }
    // Nothing has been answered by the backend (it holds every answer), and exactly
    // one request is there.
    for _ in 0..250 {
        if b.arrived.load(Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(b.arrived.load(Ordering::Relaxed), 1);
    assert_eq!(b.gate.as_ref().unwrap().available_permits(), 0);
    b.gate.as_ref().unwrap().add_permits(2);
    for _ in 0..2 {
        assert_eq!(next(&mut replies).await.status, 200);
    }
    // The pending request took the first one's connection when it came free.
    assert_eq!(b.conns.load(Ordering::Relaxed), 1);
    assert_eq!(b.arrived.load(Ordering::Relaxed), 2);
    wait_log_count(&p, " 503 UO ", 18).await;
    let line = p.log_line(" 503 UO ").await;
    assert!(line.contains("http1MaxPendingRequests"), "{line}");
    assert_eq!(count_log(&p, " 200 - "), 2);
}

#[tokio::test]
async fn requests_over_http2_max_requests_are_503_uo() {
    let ip = fresh_ip();
    let b = held_backend("slow", ip, true).await;
    let mut c = cluster("slow", Protocol::Http, vec![endpoint(b.addr)]);
    c.traffic.connection_pool = Some(pool(|p| p.max_requests = Some(2)));
    let p = TestProxy::with_config(
        ip,
        one_service(ip, vec![route("r", vec![], to("slow"))], vec![c]),
    )
    .await;
    let mut replies = concurrent(p.outbound(), 5);
    for _ in 0..3 {
        let r = next(&mut replies).await;
        assert_eq!(r.status, 503);
    }
    b.gate.as_ref().unwrap().add_permits(2);
    for _ in 0..2 {
        assert_eq!(next(&mut replies).await.status, 200);
    }
    wait_log_count(&p, " 503 UO ", 3).await;
    assert!(p.log_line(" 503 UO ").await.contains("http2MaxRequests"));
    // The slots came back: the cluster takes requests again.
    b.gate.as_ref().unwrap().add_permits(1);
    assert_eq!(get(p.outbound(), "http://backend/").await.status, 200);
}

fn outlier(f: impl FnOnce(&mut OutlierDetection)) -> OutlierDetection {
    let mut od = OutlierDetection {
        consecutive_5xx: 3,
        consecutive_gateway: 0,
        consecutive_local_origin: 0,
        split_local_origin: false,
        interval: Duration::from_secs(10),
        base_ejection_time: Duration::from_secs(30),
        max_ejection_time: Duration::from_secs(300),
        max_ejection_percent: 100,
        min_health_percent: 0,
    };
    f(&mut od);
    od
}

/// Moves tokio's clock forward by `d` at once (paused time), lets the woken timers
/// run, and lets time flow again.
async fn jump(d: Duration) {
    tokio::time::pause();
    tokio::time::advance(d).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::resume();
}

async fn config_dump(p: &TestProxy) -> serde_json::Value {
    let dump = get(p.proxy.admin_addr(), "/config_dump").await;
    serde_json::from_str(&dump.body).unwrap()
}

fn ejected(dump: &serde_json::Value, cluster: &str) -> Vec<String> {
    dump["upstreams"][cluster]["outlierDetection"]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ejected"] == true)
        .map(|e| e["address"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_failing_endpoint_is_ejected_and_comes_back_after_base_ejection_time() {
    let ip = fresh_ip();
    let a = held_backend("a", ip, false).await;
    let b = held_backend("b", ip, false).await;
    let bad = held_backend("bad", ip, false).await;
    let mut c = cluster(
        "svc",
        Protocol::Http,
        vec![endpoint(a.addr), endpoint(b.addr), endpoint(bad.addr)],
    );
    c.traffic.outlier_detection = Some(outlier(|_| {}));
    let p = TestProxy::with_config(
        ip,
        one_service(ip, vec![route("r", vec![], to("svc"))], vec![c]),
    )
    .await;
    bad.status.store(503, Ordering::Relaxed);
    let mut client = Client::connect(p.outbound()).await;
    // Round robin: the bad endpoint answers every third request; after its third 503
    // in a row it is ejected.
    let mut fives = 0;
    for _ in 0..9 {
        if client.get("http://backend/").await.status == 503 {
            fives += 1;
        }
    }
    assert_eq!(fives, 3);
    assert_eq!(bad.arrived.load(Ordering::Relaxed), 3);
    let line = p.log_line("outlier detection ejected").await;
    assert!(line.contains(" 503 - "), "{line}");
    assert!(line.contains("3 consecutive 5xx"), "{line}");
    assert!(line.contains(&bad.addr.to_string()), "{line}");
    assert_eq!(
        ejected(&config_dump(&p).await, "svc"),
        [bad.addr.to_string()]
    );
    for _ in 0..30 {
        assert_eq!(client.get("http://backend/").await.status, 200);
    }
    assert_eq!(bad.arrived.load(Ordering::Relaxed), 3);

    // Past baseEjectionTime (30 s) and the sweep after it, in paused time.
    bad.status.store(200, Ordering::Relaxed);
    jump(Duration::from_secs(29)).await;
    assert_eq!(
        ejected(&config_dump(&p).await, "svc").len(),
        1,
        "back too early"
    );
    jump(Duration::from_secs(12)).await;
    assert!(ejected(&config_dump(&p).await, "svc").is_empty());
    let mut client = Client::connect(p.outbound()).await;
    for _ in 0..30 {
        assert_eq!(client.get("http://backend/").await.status, 200);
    }
    assert_eq!(bad.arrived.load(Ordering::Relaxed), 3 + 10);
    let dump = config_dump(&p).await;
    let bad_entry = dump["upstreams"]["svc"]["outlierDetection"]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == bad.addr.to_string())
        .unwrap()
        .clone();
    assert_eq!(bad_entry["timesEjected"], 1);
}

#[tokio::test]
async fn max_ejection_percent_holds() {
    let ip = fresh_ip();
    let good = held_backend("good", ip, false).await;
    let bad1 = held_backend("bad1", ip, false).await;
    let bad2 = held_backend("bad2", ip, false).await;
    let mut c = cluster(
        "svc",
        Protocol::Http,
        vec![
            endpoint(good.addr),
            endpoint(bad1.addr),
            endpoint(bad2.addr),
        ],
    );
    // One endpoint of three is 33 %: the first ejection is allowed (0 % < 30 %), the
    // second not (33 % ≥ 30 %).
    c.traffic.outlier_detection = Some(outlier(|o| {
        o.consecutive_5xx = 2;
        o.max_ejection_percent = 30;
    }));
    let p = TestProxy::with_config(
        ip,
        one_service(ip, vec![route("r", vec![], to("svc"))], vec![c]),
    )
    .await;
    bad1.status.store(503, Ordering::Relaxed);
    bad2.status.store(503, Ordering::Relaxed);
    let mut client = Client::connect(p.outbound()).await;
    for _ in 0..60 {
        client.get("http://backend/").await;
    }
    let out = ejected(&config_dump(&p).await, "svc");
    assert_eq!(out.len(), 1, "{out:?}");
    let (kept, gone) = if out[0] == bad1.addr.to_string() {
        (&bad2, &bad1)
    } else {
        (&bad1, &bad2)
    };
    // The one still in the pool keeps taking (and failing) requests.
    let before = (
        kept.arrived.load(Ordering::Relaxed),
        gone.arrived.load(Ordering::Relaxed),
    );
    for _ in 0..20 {
        client.get("http://backend/").await;
    }
    assert!(kept.arrived.load(Ordering::Relaxed) >= before.0 + 8);
    assert_eq!(gone.arrived.load(Ordering::Relaxed), before.1);
    assert_eq!(count_log(&p, "outlier detection ejected"), 1);
}

/// Six standard deviations of a binomial count: the bound statistical tests use.
fn six_sigma(n: f64, p: f64) -> f64 {
    6.0 * (n * p * (1.0 - p)).sqrt()
}

async fn three_backends(ip: IpAddr) -> Vec<Backend> {
    vec![
        backend("b0", ip).await,
        backend("b1", ip).await,
        backend("b2", ip).await,
    ]
}

async fn spread(
    client: &mut Client,
    n: usize,
    header: impl Fn(usize) -> Option<String>,
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for i in 0..n {
        let mut req = Request::get("http://backend/");
        if let Some(v) = header(i) {
            req = req.header("x-user-id", v);
        }
        let r = client.send(req.body(Full::default()).unwrap()).await;
        assert_eq!(r.status, 200);
        *counts.entry(r.header("x-backend").to_owned()).or_default() += 1;
    }
    counts
}

fn hashed(ip: IpAddr, backends: &[Backend], algorithm: HashAlgorithm) -> ProxyConfig {
    let mut c = cluster(
        "svc",
        Protocol::Http,
        backends.iter().map(|b| endpoint(b.addr)).collect(),
    );
    c.traffic.consistent_hash = Some(ConsistentHash {
        key: HashKey::Header("x-user-id".into()),
        algorithm,
    });
    one_service(ip, vec![route("r", vec![], to("svc"))], vec![c])
}

#[tokio::test]
async fn one_user_reaches_one_endpoint_and_many_users_spread() {
    let ip = fresh_ip();
    let backends = three_backends(ip).await;
    let p = TestProxy::with_config(
        ip,
        hashed(ip, &backends, HashAlgorithm::Maglev { table_size: 65537 }),
    )
    .await;
    let mut client = Client::connect(p.outbound()).await;
    let one = spread(&mut client, 1000, |_| Some("user-42".into())).await;
    assert_eq!(one.len(), 1, "{one:?}");
    assert_eq!(one.values().sum::<usize>(), 1000);
    // Maglev gives each of three endpoints a third of the table (±1 entry): users
    // spread binomially.
    let n = 600;
    let many = spread(&mut client, n, |i| Some(format!("user-{i}"))).await;
    let bound = six_sigma(n as f64, 1.0 / 3.0);
    for b in ["b0", "b1", "b2"] {
        let got = *many.get(b).unwrap_or(&0) as f64;
        assert!(
            (got - n as f64 / 3.0).abs() <= bound,
            "{b}: {got} of {n} ({many:?})"
        );
    }
    // Without the header: random, every endpoint still reachable.
    let anon = spread(&mut client, 60, |_| None).await;
    assert_eq!(anon.len(), 3, "{anon:?}");
}

#[tokio::test]
async fn a_ring_hash_keeps_users_on_their_endpoint() {
    let ip = fresh_ip();
    let backends = three_backends(ip).await;
    let p = TestProxy::with_config(
        ip,
        hashed(
            ip,
            &backends,
            HashAlgorithm::RingHash {
                minimum_ring_size: 1024,
            },
        ),
    )
    .await;
    let mut client = Client::connect(p.outbound()).await;
    let mut first = HashMap::new();
    for round in 0..3 {
        for u in 0..50 {
            let r = client
                .send(
                    Request::get("http://backend/")
                        .header("x-user-id", format!("u{u}"))
                        .body(Full::default())
                        .unwrap(),
                )
                .await;
            let b = r.header("x-backend").to_owned();
            if round == 0 {
                first.insert(u, b);
            } else {
                assert_eq!(first[&u], b, "user u{u} moved");
            }
        }
    }
    let used: std::collections::HashSet<_> = first.values().collect();
    assert_eq!(used.len(), 3, "{first:?}");
}

#[tokio::test]
async fn a_hash_cookie_is_set_when_absent_and_then_followed() {
    let ip = fresh_ip();
    let backends = three_backends(ip).await;
    let mut config = hashed(ip, &backends, HashAlgorithm::Maglev { table_size: 65537 });
    config.clusters[0].traffic.consistent_hash = Some(ConsistentHash {
        key: HashKey::Cookie(HashCookie {
            name: "affinity".into(),
            path: Some("/".into()),
            ttl: Some(Duration::from_secs(60)),
        }),
        algorithm: HashAlgorithm::Maglev { table_size: 65537 },
    });
    let p = TestProxy::with_config(ip, config).await;
    let mut client = Client::connect(p.outbound()).await;
    let first = client.get("http://backend/").await;
    let set = first.header("set-cookie").to_owned();
    assert!(set.starts_with("affinity=\""), "{set}");
    assert!(
        set.contains("Max-Age=60") && set.contains("Path=/"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    for _ in 0..30 {
        let r = client
            .send(
                Request::get("http://backend/")
                    .header("cookie", &cookie)
                    .body(Full::default())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.header("x-backend"), first.header("x-backend"));
        assert_eq!(r.header("set-cookie"), "", "set only when absent");
    }
}

#[tokio::test]
async fn random_balancing_spreads_within_binomial_bounds() {
    let ip = fresh_ip();
    let backends = three_backends(ip).await;
    let mut c = cluster(
        "svc",
        Protocol::Http,
        backends.iter().map(|b| endpoint(b.addr)).collect(),
    );
    c.lb = LbPolicy::Random;
    let p = TestProxy::with_config(
        ip,
        one_service(ip, vec![route("r", vec![], to("svc"))], vec![c]),
    )
    .await;
    let mut client = Client::connect(p.outbound()).await;
    let n = 600;
    let counts = spread(&mut client, n, |_| None).await;
    let bound = six_sigma(n as f64, 1.0 / 3.0);
    for b in ["b0", "b1", "b2"] {
        let got = *counts.get(b).unwrap_or(&0) as f64;
        assert!(
            (got - n as f64 / 3.0).abs() <= bound,
            "{b}: {got} of {n} ({counts:?})"
        );
    }
}

#[tokio::test]
async fn max_requests_per_connection_and_h2_upgrade() {
    let ip = fresh_ip();
    let b = backend("b", ip).await;
    let mut c = cluster("one", Protocol::Http, vec![endpoint(b.addr)]);
    c.traffic.connection_pool = Some(pool(|p| p.max_requests_per_connection = Some(1)));
    let mut up = cluster("up", Protocol::Http, vec![endpoint(b.addr)]);
    up.traffic.connection_pool = Some(pool(|p| p.h2_upgrade = true));
    let config = one_service(
        ip,
        vec![
            route("up", vec![uri_prefix("/up")], to("up")),
            route("one", vec![], to("one")),
        ],
        vec![c, up],
    );
    let p = TestProxy::with_config(ip, config).await;
    let mut client = Client::connect(p.outbound()).await;
    for _ in 0..5 {
        let r = client.get("http://backend/").await;
        assert_eq!(r.header("x-seen-version"), "HTTP/1.1");
    }
    // One request per connection: five connections for five requests.
    assert_eq!(b.conns.load(Ordering::Relaxed), 5);
    for _ in 0..3 {
        let r = client.get("http://backend/up").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-seen-version"), "HTTP/2.0");
    }
    // HTTP/2: one connection carries them all.
    assert_eq!(b.conns.load(Ordering::Relaxed), 6);
}

/// A backend that fails every request with 503 except the second to arrive, which it
/// holds until let go and then answers 200.
async fn second_held(ip: IpAddr) -> (SocketAddr, Arc<AtomicUsize>, Arc<Semaphore>) {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let arrived = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let (a, g) = (arrived.clone(), gate.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let (a, g) = (a.clone(), g.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                        let (a, g) = (a.clone(), g.clone());
                        async move {
                            let status = if a.fetch_add(1, Ordering::Relaxed) + 1 == 2 {
                                g.acquire().await.unwrap().forget();
                                200
                            } else {
                                503
                            };
                            let resp = Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new()))
                                .unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, arrived, gate)
}

#[tokio::test]
async fn a_retry_over_max_retries_is_not_made_and_flagged_uo() {
    let ip = fresh_ip();
    let (addr, arrived, gate) = second_held(ip).await;
    let mut c = cluster("flaky", Protocol::Http, vec![endpoint(addr)]);
    c.traffic.connection_pool = Some(pool(|p| p.max_retries = Some(1)));
    let action = RouteAction::Forward(Forward {
        destinations: vec![WeightedCluster {
            cluster: "flaky".into(),
            weight: 100,
        }],
        retries: Some(RetryPolicy {
            attempts: 2,
            per_try_timeout: None,
            retry_on: vec!["5xx".into()],
            backoff: None,
        }),
        rewrite: None,
    });
    let p = TestProxy::with_config(
        ip,
        one_service(ip, vec![route("r", vec![], action)], vec![c]),
    )
    .await;
    let out = p.outbound();
    // A: its first try fails, its retry is held at the backend (the one retry allowed).
    let a = tokio::spawn(async move { get(out, "http://backend/a").await });
    for _ in 0..250 {
        if arrived.load(Ordering::Relaxed) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(arrived.load(Ordering::Relaxed), 2);
    // B: its first try fails too, and no retry is made: its 503 goes back, flagged UO.
    let b = get(out, "http://backend/b").await;
    assert_eq!(b.status, 503);
    assert_eq!(arrived.load(Ordering::Relaxed), 3);
    assert!(p.log_line("\"GET /b ").await.contains(" 503 UO "));
    gate.add_permits(1);
    assert_eq!(a.await.unwrap().status, 200);
    assert!(p.log_line("\"GET /a ").await.contains(" 200 - "));
}

/// `useClientProtocol`: the upstream is spoken to in the protocol the downstream used,
/// on an `http` port (HTTP/1.1 otherwise) and on an `http2` port (HTTP/2 otherwise).
#[tokio::test]
async fn use_client_protocol_keeps_the_downstreams_protocol() {
    let ip = fresh_ip();
    let b = backend("b", ip).await;
    let mut c = cluster("h1", Protocol::Http, vec![endpoint(b.addr)]);
    c.traffic.connection_pool = Some(pool(|p| p.use_client_protocol = true));
    let mut h2 = cluster("h2", Protocol::Http2, vec![endpoint(b.addr)]);
    h2.traffic.connection_pool = Some(pool(|p| p.use_client_protocol = true));
    let mut plain = cluster("plain", Protocol::Http, vec![endpoint(b.addr)]);
    plain.traffic.connection_pool = Some(pool(|p| p.max_requests = Some(100)));
    let config = one_service(
        ip,
        vec![
            route("h2", vec![uri_prefix("/h2")], to("h2")),
            route("plain", vec![uri_prefix("/plain")], to("plain")),
            route("h1", vec![], to("h1")),
        ],
        vec![c, h2, plain],
    );
    let p = TestProxy::with_config(ip, config).await;
    for path in ["/", "/h2"] {
        let r = get(p.outbound(), &format!("http://backend{path}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.header("x-seen-version"),
            "HTTP/1.1",
            "{path} from HTTP/1.1"
        );
        let r = h2_get(p.outbound(), &format!("http://backend{path}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("x-seen-version"), "HTTP/2.0", "{path} from h2");
    }
    // Without it an `http` port is HTTP/1.1 whatever the client spoke.
    let r = h2_get(p.outbound(), "http://backend/plain").await;
    assert_eq!(r.header("x-seen-version"), "HTTP/1.1");
}

/// A port whose protocol is detected (unnamed): a sidecar speaks to the upstream in
/// the downstream's protocol, as istiod's `use_downstream_protocol`; a gateway speaks
/// HTTP/1.1 (istiod sets it on sidecars only).
#[tokio::test]
async fn a_detected_port_keeps_the_downstreams_protocol_on_sidecars_only() {
    let ip = fresh_ip();
    let b = backend("b", ip).await;
    let auto = cluster("auto", Protocol::Unspecified, vec![endpoint(b.addr)]);
    let mut config = one_service(
        ip,
        vec![route("auto", vec![], to("auto"))],
        vec![auto.clone()],
    );
    config.outbound[0].protocol = Protocol::Unspecified;
    let p = TestProxy::with_config(ip, config).await;
    let r = get(p.outbound(), "http://backend/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-seen-version"), "HTTP/1.1");
    let r = h2_get(p.outbound(), "http://backend/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("x-seen-version"),
        "HTTP/2.0",
        "h2 from the app stays h2"
    );

    let gw_ip = fresh_ip();
    let mut gw = sidecar(gw_ip, vec![], vec![auto]);
    gw.node.kind = ProxyKind::Gateway;
    gw.gateway = vec![GatewayPort {
        tcp: vec![],
        tls: vec![],
        port: 80,
        protocol: Protocol::Http,
        gateways: vec!["ns/gw".into()],
        virtual_hosts: vec![vhost(&["backend"], vec![route("auto", vec![], to("auto"))])],
    }];
    let g = TestProxy::start_with(gw_ip, |o| o.gateway_port_offset = 8000).await;
    g.proxy.apply("1", gw).unwrap();
    let addr = g.proxy.gateway_addr(80).unwrap();
    let r = h2_get(addr, "http://backend/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("x-seen-version"),
        "HTTP/1.1",
        "a gateway speaks HTTP/1.1"
    );
}

/// Waits until `n` requests are at the held backend (a guard, not a measurement).
async fn wait_arrived(b: &Held, n: usize) {
    for _ in 0..500 {
        if b.arrived.load(Ordering::Relaxed) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{} requests at the backend, not {n}",
        b.arrived.load(Ordering::Relaxed)
    );
}

/// `maxConcurrentStreams: 1` on an HTTP/2 upstream: each request in flight has its
/// own connection, up to `maxConnections`; beyond it requests wait for a stream.
#[tokio::test]
async fn max_concurrent_streams_opens_connections_within_max_connections() {
    let ip = fresh_ip();
    let b = held_backend("slow", ip, true).await;
    let mut c = cluster("slow", Protocol::Http2, vec![endpoint(b.addr)]);
    c.traffic.connection_pool = Some(pool(|p| {
        p.max_concurrent_streams = Some(1);
        p.max_connections = Some(3);
    }));
    let p = TestProxy::with_config(
        ip,
        one_service(ip, vec![route("r", vec![], to("slow"))], vec![c]),
    )
    .await;
    let mut replies = concurrent(p.outbound(), 5);
    // Three at the backend, each on its own connection; two wait for a stream.
    wait_arrived(&b, 3).await;
    assert_eq!(b.conns.load(Ordering::Relaxed), 3);
    let dump = config_dump(&p).await;
    let cb = &dump["upstreams"]["slow"]["circuitBreaker"];
    assert_eq!(cb["connections"], 3, "{cb}");
    assert_eq!(cb["pendingRequests"], 2, "{cb}");
    b.gate.as_ref().unwrap().add_permits(5);
    for _ in 0..5 {
        assert_eq!(next(&mut replies).await.status, 200);
    }
    // The waiting two took the streams freed: no fourth connection.
    assert_eq!(b.arrived.load(Ordering::Relaxed), 5);
    assert_eq!(b.conns.load(Ordering::Relaxed), 3);
}

/// Without `maxConcurrentStreams` an HTTP/2 upstream multiplexes: one connection for
/// every request in flight.
#[tokio::test]
async fn an_h2_upstream_under_limits_multiplexes_one_connection() {
    let ip = fresh_ip();
    let b = held_backend("slow", ip, true).await;
    let mut c = cluster("slow", Protocol::Http2, vec![endpoint(b.addr)]);
    c.traffic.connection_pool = Some(pool(|p| p.max_connections = Some(10)));
    let p = TestProxy::with_config(
        ip,
        one_service(ip, vec![route("r", vec![], to("slow"))], vec![c]),
    )
    .await;
    let mut replies = concurrent(p.outbound(), 6);
    wait_arrived(&b, 6).await;
    assert_eq!(b.conns.load(Ordering::Relaxed), 1);
    b.gate.as_ref().unwrap().add_permits(6);
    for _ in 0..6 {
        assert_eq!(next(&mut replies).await.status, 200);
    }
}

/// An HTTP/2 upstream with `maxConnections: 1, http2MaxRequests: 2`: of ten requests
/// at once, the two in flight share the one connection and the other eight are
/// answered `503 UO` while those two are still held.
#[tokio::test]
async fn an_h2_upstream_over_http2_max_requests_answers_503_uo_at_once() {
    let ip = fresh_ip();
    let b = held_backend("slow", ip, true).await;
    let mut c = cluster("slow", Protocol::Http2, vec![endpoint(b.addr)]);
    c.traffic.connection_pool = Some(pool(|p| {
        p.max_connections = Some(1);
        p.max_requests = Some(2);
    }));
    let p = TestProxy::with_config(
        ip,
        one_service(ip, vec![route("r", vec![], to("slow"))], vec![c]),
    )
    .await;
    let mut replies = concurrent(p.outbound(), 10);
    for _ in 0..8 {
        let r = next(&mut replies).await;
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(r.header("x-envoy-overloaded"), "true");
    }
    wait_arrived(&b, 2).await;
    assert_eq!(b.gate.as_ref().unwrap().available_permits(), 0);
    assert_eq!(b.conns.load(Ordering::Relaxed), 1);
    b.gate.as_ref().unwrap().add_permits(2);
    for _ in 0..2 {
        assert_eq!(next(&mut replies).await.status, 200);
    }
    wait_log_count(&p, " 503 UO ", 8).await;
    assert!(p.log_line(" 503 UO ").await.contains("http2MaxRequests"));
    assert_eq!(b.arrived.load(Ordering::Relaxed), 2);
}

/// `maxConnections: 1` with `maxConcurrentStreams: 1` and `http1MaxPendingRequests: 1`
/// on an HTTP/2 upstream: one request on the one connection, one waits for its
/// stream, the rest are `503 UO` at once.
#[tokio::test]
async fn an_h2_upstream_at_max_connections_queues_only_http1_max_pending_requests() {
    let ip = fresh_ip();
    let b = held_backend("slow", ip, true).await;
    let mut c = cluster("slow", Protocol::Http2, vec![endpoint(b.addr)]);
    c.traffic.connection_pool = Some(pool(|p| {
        p.max_connections = Some(1);
        p.max_concurrent_streams = Some(1);
        p.max_pending_requests = Some(1);
    }));
    let p = TestProxy::with_config(
        ip,
        one_service(ip, vec![route("r", vec![], to("slow"))], vec![c]),
    )
    .await;
    let mut replies = concurrent(p.outbound(), 6);
    for _ in 0..4 {
        assert_eq!(next(&mut replies).await.status, 503);
    }
    wait_arrived(&b, 1).await;
    b.gate.as_ref().unwrap().add_permits(2);
    for _ in 0..2 {
        assert_eq!(next(&mut replies).await.status, 200);
    }
    assert_eq!(b.arrived.load(Ordering::Relaxed), 2);
    assert_eq!(b.conns.load(Ordering::Relaxed), 1);
    wait_log_count(&p, " 503 UO ", 4).await;
    assert!(
        p.log_line(" 503 UO ")
            .await
            .contains("http1MaxPendingRequests")
    );
}

/// `maxRequestsPerConnection`, `maxConnectionDuration` and `idleTimeout` on an HTTP/2
/// upstream: each makes the next request open a new connection, and nothing else does
/// (paused time for the durations).
#[tokio::test]
async fn h2_connections_are_drained_by_uses_age_and_idleness() {
    let ip = fresh_ip();
    let b = backend("b", ip).await;
    let h2 = |name: &str, f: fn(&mut ConnectionPool)| {
        let mut c = cluster(name, Protocol::Http2, vec![endpoint(b.addr)]);
        c.traffic.connection_pool = Some(pool(f));
        c
    };
    let config = one_service(
        ip,
        vec![
            route("uses", vec![uri_prefix("/uses")], to("uses")),
            route("age", vec![uri_prefix("/age")], to("age")),
            route("idle", vec![uri_prefix("/idle")], to("idle")),
        ],
        vec![
            h2("uses", |p| p.max_requests_per_connection = Some(2)),
            h2("age", |p| {
                p.max_connection_duration = Some(Duration::from_secs(60));
            }),
            h2("idle", |p| p.idle_timeout = Some(Duration::from_secs(30))),
        ],
    );
    let p = TestProxy::with_config(ip, config).await;
    let conns = || b.conns.load(Ordering::Relaxed);
    let ok = |path: &'static str| {
        let out = p.outbound();
        async move {
            let r = get(out, &format!("http://backend{path}")).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            assert_eq!(r.header("x-seen-version"), "HTTP/2.0");
        }
    };
    // Two requests per connection: four requests, two connections.
    for _ in 0..4 {
        ok("/uses").await;
    }
    assert_eq!(conns(), 2);
    // Younger than a minute: reused; older: a new one.
    ok("/age").await;
    jump(Duration::from_secs(30)).await;
    ok("/age").await;
    assert_eq!(conns(), 3);
    jump(Duration::from_secs(31)).await;
    ok("/age").await;
    assert_eq!(conns(), 4);
    // Idle for less than 30 s: reused; for more: closed, and a new one.
    ok("/idle").await;
    assert_eq!(conns(), 5);
    jump(Duration::from_secs(20)).await;
    ok("/idle").await;
    jump(Duration::from_secs(20)).await;
    ok("/idle").await;
    assert_eq!(conns(), 5);
    jump(Duration::from_secs(31)).await;
    ok("/idle").await;
    assert_eq!(conns(), 6);
}

/// `idleTimeout` on an HTTP/1.1 upstream: an idle connection is closed when it has
/// idled that long, with no request needed to notice (paused time), and not before.
#[tokio::test]
async fn idle_h1_connections_are_closed_when_they_pass_the_idle_timeout() {
    let ip = fresh_ip();
    let b = held_backend("b", ip, false).await;
    let mut c = cluster("idle", Protocol::Http, vec![endpoint(b.addr)]);
    c.traffic.connection_pool = Some(pool(|p| p.idle_timeout = Some(Duration::from_secs(30))));
    let p = TestProxy::with_config(
        ip,
        one_service(ip, vec![route("r", vec![], to("idle"))], vec![c]),
    )
    .await;
    let r = get(p.outbound(), "http://backend/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let closed = || b.closed.load(Ordering::Relaxed);
    jump(Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(closed(), 0, "idle for 20 s of 30: still open");
    // A request at 20 s makes it busy, then idle again from then.
    let r = get(p.outbound(), "http://backend/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(b.conns.load(Ordering::Relaxed), 1, "reused");
    jump(Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        closed(),
        0,
        "idle for 20 s since the last request: still open"
    );
    jump(Duration::from_secs(11)).await;
    for _ in 0..500 {
        if closed() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        closed(),
        1,
        "closed once idle for 31 s, with no request to notice"
    );
}

/// At `maxConnections: 1`, with the one connection idle at one endpoint, a request
/// picked for the other endpoint still gets a connection (Envoy guarantees every
/// endpoint it picks one) rather than waiting for good; HTTP/1.1 and HTTP/2 alike.
#[tokio::test]
async fn an_endpoint_without_a_connection_gets_one_at_max_connections() {
    for protocol in [Protocol::Http, Protocol::Http2] {
        let ip = fresh_ip();
        let a = held_backend("a", ip, false).await;
        let b = held_backend("b", ip, false).await;
        let mut c = cluster("two", protocol, vec![endpoint(a.addr), endpoint(b.addr)]);
        c.traffic.connection_pool = Some(pool(|p| p.max_connections = Some(1)));
        let p = TestProxy::with_config(
            ip,
            one_service(ip, vec![route("r", vec![], to("two"))], vec![c]),
        )
        .await;
        // Round robin: the requests alternate between the two.
        for _ in 0..4 {
            let r = tokio::time::timeout(
                Duration::from_secs(10),
                get(p.outbound(), "http://backend/"),
            )
            .await
            .expect("answered, not left waiting");
            assert_eq!(r.status, 200, "{protocol:?}: {}", r.body);
        }
        assert_eq!(a.arrived.load(Ordering::Relaxed), 2, "{protocol:?}");
        assert_eq!(b.arrived.load(Ordering::Relaxed), 2, "{protocol:?}");
        assert_eq!(a.conns.load(Ordering::Relaxed), 1, "{protocol:?}");
        assert_eq!(b.conns.load(Ordering::Relaxed), 1, "{protocol:?}");
    }
}
