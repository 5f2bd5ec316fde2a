//! The ways a request fails, and the flags they leave: UH, UF, UT, URX.

use std::time::{Duration, Instant};

use skiff_model::config::*;

use crate::support::*;

#[tokio::test]
async fn no_endpoints_is_503_uh() {
    let ip = fresh_ip();
    let config = one_service(
        ip,
        vec![route("r", vec![], to("empty"))],
        vec![cluster("empty", Protocol::Http, vec![])],
    );
    let p = TestProxy::with_config(ip, config).await;
    let r = get(p.outbound(), "http://backend/").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (503, "no healthy upstream")
    );
    // As Istio's sidecars (`always_set_request_id_in_response` off): the request id
    // the proxy gave the request is not sent back, not even on its own answers.
    assert!(r.headers.get("x-request-id").is_none(), "{:?}", r.headers);
    assert!(p.log_line("\"GET / ").await.contains(" 503 UH "));
}

#[tokio::test]
async fn connect_failure_is_503_uf() {
    let ip = fresh_ip();
    // Nothing listens there.
    let closed = std::net::SocketAddr::new(ip, 9);
    let config = one_service(
        ip,
        vec![route("r", vec![], to("dead"))],
        vec![cluster("dead", Protocol::Http, vec![endpoint(closed)])],
    );
    let p = TestProxy::with_config(ip, config).await;
    let r = get(p.outbound(), "http://backend/").await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("connection failure"), "{}", r.body);
    let line = p.log_line("\"GET / ").await;
    assert!(line.contains(" 503 UF "), "{line}");
    // The endpoint it tried is the record's upstream host.
    assert!(line.contains(&format!(" \"{closed}\" ")), "{line}");
}

#[tokio::test]
async fn route_timeout_is_504_ut() {
    let ip = fresh_ip();
    let slow = backend("slow", ip).await;
    let mut r = route("r", vec![], to("slow"));
    r.timeout = Some(Duration::from_millis(200));
    let config = one_service(
        ip,
        vec![r],
        vec![cluster("slow", Protocol::Http, vec![endpoint(slow.addr)])],
    );
    let p = TestProxy::with_config(ip, config).await;
    let started = Instant::now();
    let r = get(p.outbound(), "http://backend/delay/3000").await;
    assert_eq!(r.status, 504);
    assert!(started.elapsed() < Duration::from_secs(2));
    let line = p.log_line("/delay/3000").await;
    assert!(line.contains(" 504 UT "), "{line}");
    // The endpoint the cut-short try went to is the record's upstream host.
    assert!(line.contains(&format!(" \"{}\" ", slow.addr)), "{line}");
    // Fast requests on the same route are fine.
    assert_eq!(
        get(p.outbound(), "http://backend/delay/1").await.status,
        200
    );
}

fn retrying(attempts: u32, on: &str) -> RouteAction {
    RouteAction::Forward(Forward {
        destinations: vec![WeightedCluster {
            cluster: "flaky".into(),
            weight: 100,
        }],
        retries: Some(RetryPolicy {
            attempts,
            per_try_timeout: None,
            retry_on: vec![on.into()],
            backoff: None,
        }),
        rewrite: None,
    })
}

#[tokio::test]
async fn retries_then_success() {
    let ip = fresh_ip();
    let flaky = backend("flaky", ip).await;
    let config = one_service(
        ip,
        vec![route("r", vec![], retrying(3, "5xx"))],
        vec![cluster("flaky", Protocol::Http, vec![endpoint(flaky.addr)])],
    );
    let p = TestProxy::with_config(ip, config).await;
    let r = get(p.outbound(), "http://backend/flaky/2").await;
    assert_eq!(r.status, 200);
    assert_eq!(flaky.hits.load(std::sync::atomic::Ordering::Relaxed), 3);
}

#[tokio::test]
async fn retries_exhausted_is_urx() {
    let ip = fresh_ip();
    let flaky = backend("flaky", ip).await;
    let config = one_service(
        ip,
        vec![route("r", vec![], retrying(2, "gateway-error"))],
        vec![cluster("flaky", Protocol::Http, vec![endpoint(flaky.addr)])],
    );
    let p = TestProxy::with_config(ip, config).await;
    let r = get(p.outbound(), "http://backend/status/503").await;
    assert_eq!(r.status, 503);
    assert_eq!(flaky.hits.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert!(p.log_line("/status/503").await.contains(" 503 URX "));
    // A status the policy does not name is not retried.
    let r = get(p.outbound(), "http://backend/status/500").await;
    assert_eq!(r.status, 500);
    assert_eq!(flaky.hits.load(std::sync::atomic::Ordering::Relaxed), 4);
}

#[tokio::test]
async fn a_request_body_is_replayed_for_retries_up_to_the_limit() {
    let ip = fresh_ip();
    let alive = backend("alive", ip).await;
    let dead = std::net::SocketAddr::new(ip, 9);
    let mut c = cluster(
        "flaky",
        Protocol::Http,
        vec![endpoint(dead), endpoint(alive.addr)],
    );
    c.lb = LbPolicy::RoundRobin;
    // Istio's default retry policy; /status and /flaky go to a cluster of the live
    // backend only.
    let policy = "connect-failure,refused-stream,unavailable,cancelled,503";
    let mut only_alive = retrying(2, policy);
    if let RouteAction::Forward(f) = &mut only_alive {
        f.destinations[0].cluster = "alive".into();
    }
    let config = one_service(
        ip,
        vec![
            route("status", vec![uri_prefix("/status")], only_alive.clone()),
            route("flaky", vec![uri_prefix("/flaky")], only_alive),
            route("r", vec![], retrying(2, policy)),
        ],
        vec![
            c,
            cluster("alive", Protocol::Http, vec![endpoint(alive.addr)]),
        ],
    );
    let p = TestProxy::with_config(ip, config).await;
    let mut client = Client::connect(p.outbound()).await;
    for i in 0..6 {
        let body = format!("payload {i}");
        let r = client
            .send(
                http::Request::post("http://backend/echo")
                    .body(http_body_util::Full::from(body.clone()))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, 200, "try {i}: {}", r.body);
        assert_eq!(r.body, format!("alive:{body}"));
    }
    // A 503 after a small body was sent is retried with the same body, as Envoy does
    // with the request it buffers: the third try succeeds and echoes it.
    let before = alive.hits.load(std::sync::atomic::Ordering::Relaxed);
    let r = client
        .send(
            http::Request::post("http://backend/flaky/2")
                .body(http_body_util::Full::from("small payload"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "alive:small payload");
    let after_small = alive.hits.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(after_small - before, 3, "first try and two retries");
    // A body over the replay limit streams through and is not kept: no retry once sent.
    let big = "x".repeat(100 * 1024);
    let r = client
        .send(
            http::Request::post("http://backend/status/503")
                .body(http_body_util::Full::from(big))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 503);
    let after_big = alive.hits.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(after_big - after_small, 1);
    let r = client.get("http://backend/status/503").await;
    assert_eq!(r.status, 503);
    let after_get = alive.hits.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(after_get - after_big, 3, "first try and two retries");
}

#[tokio::test]
async fn fault_injection_delays_and_aborts() {
    let ip = fresh_ip();
    let v1 = backend("v1", ip).await;
    let mut config = one_service(
        ip,
        vec![
            route("ns/vs/slow", vec![uri_prefix("/slow")], to("v1")),
            route("ns/vs/half", vec![uri_prefix("/half")], to("v1")),
            route("ns/vs/broken", vec![], to("v1")),
        ],
        vec![cluster("v1", Protocol::Http, vec![endpoint(v1.addr)])],
    );
    config.faults.insert(
        "ns/vs/slow".into(),
        Fault {
            delay: Some(FaultDelay {
                fixed_delay: Duration::from_millis(300),
                per_million: 1_000_000,
            }),
            abort: None,
        },
    );
    config.faults.insert(
        "ns/vs/half".into(),
        Fault {
            delay: None,
            abort: Some(FaultAbort {
                grpc_status: None,
                http_status: 503,
                per_million: 500_000,
            }),
        },
    );
    config.faults.insert(
        "ns/vs/broken".into(),
        Fault {
            delay: None,
            abort: Some(FaultAbort {
                grpc_status: None,
                http_status: 418,
                per_million: 1_000_000,
            }),
        },
    );
    let p = TestProxy::with_config(ip, config).await;
    let mut c = Client::connect(p.outbound()).await;

    let started = Instant::now();
    let r = c.get("http://backend/slow").await;
    assert_eq!(r.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(p.log_line("/slow").await.contains(" 200 DI "));

    let r = c.get("http://backend/").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (418, "fault filter abort")
    );
    assert!(p.log_line("\"GET / ").await.contains(" 418 FI "));

    // Binomial(400, 0.5): mean 200, standard deviation 10; allow 6 either side.
    let mut aborted = 0;
    for _ in 0..400 {
        if c.get("http://backend/half").await.status == 503 {
            aborted += 1;
        }
    }
    assert!((140..=260).contains(&aborted), "{aborted} of 400 aborted");
    // Aborted requests never reach the backend.
    assert_eq!(
        v1.hits.load(std::sync::atomic::Ordering::Relaxed),
        1 + 400 - aborted
    );
}
