//! VirtualService HTTP features beyond plain routing, through a real proxy to real
//! backends: every match field, header rules, retries, mirrors, CORS, gRPC aborts and
//! the errors a person reads. Shares are checked against binomial bounds of 6 standard
//! deviations, so the tests essentially never flake.

use std::sync::atomic::Ordering;
use std::time::Duration;

use http::Request;
use http_body_util::Full;
use skiff_model::config::*;

use crate::support::*;

/// Accepts connections and never answers: a mirror that would hang a request that
/// waited for it.
async fn black_hole(ip: std::net::IpAddr) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    addr
}

/// `[mean - 6 sd, mean + 6 sd]` of Binomial(n, p), clamped to `0..=n`.
fn binomial_bounds(n: u32, p: f64) -> std::ops::RangeInclusive<u32> {
    let mean = f64::from(n) * p;
    let sd = (f64::from(n) * p * (1.0 - p)).sqrt();
    let lo = (mean - 6.0 * sd).floor().max(0.0) as u32;
    let hi = (mean + 6.0 * sd).ceil().min(f64::from(n)) as u32;
    lo..=hi
}

fn exact(s: &str) -> StringMatch {
    StringMatch::Exact(s.into())
}

fn hdr(name: &str, m: StringMatch) -> HeaderMatch {
    HeaderMatch {
        name: name.into(),
        value: m,
    }
}

async fn send(c: &mut Client, req: http::request::Builder) -> Reply {
    c.send(req.body(Full::default()).unwrap()).await
}

#[tokio::test]
async fn every_match_field_and_and_or() {
    let ip = fresh_ip();
    let hit = backend("hit", ip).await;
    let miss = backend("miss", ip).await;
    // One rule with two alternatives: each alternative is an AND of its fields.
    let both = RouteMatch {
        uri: Some(StringMatch::Prefix("/API/".into())),
        ignore_uri_case: true,
        scheme: Some(exact("http")),
        method: Some(StringMatch::Regex("GET|HEAD".into())),
        authority: Some(StringMatch::Prefix("backend".into())),
        headers: vec![hdr("x-test-user", StringMatch::Regex("a.*".into()))],
        without_headers: vec![hdr("x-test-deny", StringMatch::Present)],
        query_params: vec![hdr("v", exact("1"))],
        port: Some(80),
    };
    let other = RouteMatch {
        authority: Some(StringMatch::Regex(r"backend\.ns(:80)?".into())),
        uri: Some(exact("/exact")),
        ..RouteMatch::default()
    };
    let https_only = RouteMatch {
        scheme: Some(exact("https")),
        ..RouteMatch::default()
    };
    let config = one_service(
        ip,
        vec![
            route("never", vec![https_only], to("miss")),
            route("hit", vec![both, other], to("hit")),
            route("rest", vec![], to("miss")),
        ],
        vec![
            cluster("hit", Protocol::Http, vec![endpoint(hit.addr)]),
            cluster("miss", Protocol::Http, vec![endpoint(miss.addr)]),
        ],
    );
    let mut config = config;
    config.outbound[0].virtual_hosts[0]
        .domains
        .extend(["backend.ns".into(), "backend.ns:80".into()]);
    let p = TestProxy::with_config(ip, config).await;
    let mut c = Client::connect(p.outbound()).await;
    let req = |uri: &str| {
        Request::get(uri)
            .header("x-test-user", "alice")
            .body(Full::default())
            .unwrap()
    };
    // Everything holds (the path differs in case only).
    assert_eq!(c.send(req("http://backend/api/x?v=1")).await.body, "hit");
    // Each field on its own breaks the first alternative.
    assert_eq!(c.send(req("http://backend/api/x?v=2")).await.body, "miss");
    assert_eq!(c.send(req("http://backend/other?v=1")).await.body, "miss");
    let r = send(
        &mut c,
        Request::get("http://backend/api/x?v=1")
            .header("x-test-user", "alice")
            .header("x-test-deny", "1"),
    )
    .await;
    assert_eq!(r.body, "miss", "withoutHeaders");
    let r = send(
        &mut c,
        Request::get("http://backend/api/x?v=1").header("x-test-user", "bob"),
    )
    .await;
    assert_eq!(r.body, "miss", "header regex");
    let r = c
        .send(
            Request::post("http://backend/api/x?v=1")
                .header("x-test-user", "alice")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.body, "miss", "method");
    // The second alternative: OR across blocks.
    assert_eq!(c.get("http://backend.ns/exact").await.body, "hit");
    assert_eq!(c.get("http://backend.ns/exact/no").await.body, "miss");
    assert_eq!(
        c.get("http://backend/exact").await.body,
        "miss",
        "authority"
    );
    // Nothing over plain HTTP takes the https-only rule, which comes first.
    assert_eq!(miss.hits.load(Ordering::Relaxed), 7);
    assert_eq!(hit.hits.load(Ordering::Relaxed), 2);
}

fn ops(set: &[(&str, &str)], add: &[(&str, &str)], remove: &[&str]) -> HeaderOps {
    let pairs = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    HeaderOps {
        set: pairs(set),
        add: pairs(add),
        remove: remove.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test]
async fn header_rules_apply_destination_first_then_route() {
    let ip = fresh_ip();
    let a = backend("a", ip).await;
    let b = backend("b", ip).await;
    let mut config = one_service(
        ip,
        vec![route("split", vec![], weighted(&[("a", 50), ("b", 50)]))],
        vec![
            cluster("a", Protocol::Http, vec![endpoint(a.addr)]),
            cluster("b", Protocol::Http, vec![endpoint(b.addr)]),
        ],
    );
    let dest = |name: &str, index| DestinationHeaders {
        index,
        headers: HeaderRules {
            request: ops(
                &[("x-test-dest", name), ("x-test-who", "destination")],
                &[("x-test-list", name)],
                &[],
            ),
            response: ops(&[], &[("x-dest", name), ("x-gone", "x")], &[]),
        },
    };
    config.http_policies.insert(
        "split".into(),
        HttpRoutePolicy {
            headers: HeaderRules {
                request: ops(
                    &[("x-test-who", "route")],
                    &[("x-test-list", "route"), ("x-test-fresh", "new")],
                    &["x-test-drop", "x-test-fresh"],
                ),
                response: ops(&[("x-backend", "hidden")], &[], &["x-gone"]),
            },
            destination_headers: vec![dest("a", 0), dest("b", 1)],
            ..HttpRoutePolicy::default()
        },
    );
    let p = TestProxy::with_config(ip, config).await;
    let mut c = Client::connect(p.outbound()).await;
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..40 {
        let r = send(
            &mut c,
            Request::get("http://backend/")
                .header("x-test-drop", "1")
                .header("x-test-fresh", "old")
                .header("x-test-list", "client"),
        )
        .await;
        // The destination's rules applied to the destination that answered.
        assert_eq!(r.header("x-seen-x-test-dest"), r.body);
        assert_eq!(r.header("x-dest"), r.body);
        // Route rules come after the destination's: its `set` wins, its `remove`
        // takes what the destination added.
        assert_eq!(r.header("x-seen-x-test-who"), "route");
        assert_eq!(r.header("x-gone"), "");
        // `add` appends, in order: client, destination, route.
        assert_eq!(
            r.header("x-seen-x-test-list"),
            format!("client,{},route", r.body)
        );
        // Within one rule set, removal comes before `add`.
        assert_eq!(r.header("x-seen-x-test-fresh"), "new");
        assert_eq!(r.header("x-seen-x-test-drop"), "");
        assert_eq!(r.header("x-backend"), "hidden");
        *seen.entry(r.body).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both destinations answered: {seen:?}");
}

#[tokio::test]
async fn header_rules_on_direct_responses_and_none_without_rules() {
    let ip = fresh_ip();
    let v1 = backend("v1", ip).await;
    let mut config = one_service(
        ip,
        vec![
            route(
                "teapot",
                vec![uri_prefix("/tea")],
                RouteAction::DirectResponse {
                    status: 418,
                    body: Some("short".into()),
                },
            ),
            route("plain", vec![], to("v1")),
        ],
        vec![cluster("v1", Protocol::Http, vec![endpoint(v1.addr)])],
    );
    config.http_policies.insert(
        "teapot".into(),
        HttpRoutePolicy {
            headers: HeaderRules {
                request: HeaderOps::default(),
                response: ops(&[("x-kind", "tea")], &[], &[]),
            },
            ..HttpRoutePolicy::default()
        },
    );
    let p = TestProxy::with_config(ip, config).await;
    let mut c = Client::connect(p.outbound()).await;
    assert_eq!(c.get("http://backend/tea").await.header("x-kind"), "tea");
    let r = c.get("http://backend/").await;
    assert_eq!((r.body.as_str(), r.header("x-kind")), ("v1", ""));
}

fn retry_route(on: &str, attempts: u32) -> RouteAction {
    RouteAction::Forward(Forward {
        destinations: vec![WeightedCluster {
            cluster: "app".into(),
            weight: 100,
        }],
        retries: Some(RetryPolicy {
            attempts,
            per_try_timeout: None,
            retry_on: vec![on.into()],
            // A short base keeps the test fast; the back-off itself is unit-tested.
            backoff: Some(Duration::from_millis(1)),
        }),
        rewrite: None,
    })
}

async fn retry_proxy(
    ip: std::net::IpAddr,
    action: RouteAction,
    addr: std::net::SocketAddr,
) -> TestProxy {
    let config = one_service(
        ip,
        vec![route("r", vec![], action)],
        vec![cluster("app", Protocol::Http, vec![endpoint(addr)])],
    );
    TestProxy::with_config(ip, config).await
}

#[tokio::test]
async fn retries_on_5xx_lift_the_success_rate_as_the_math_says() {
    let ip = fresh_ip();
    let app = backend("app", ip).await;
    let p = retry_proxy(ip, retry_route("5xx", 3), app.addr).await;
    let mut c = Client::connect(p.outbound()).await;
    let n = 400;
    let mut ok = 0;
    for _ in 0..n {
        if c.get("http://backend/chance/50").await.status == 200 {
            ok += 1;
        }
    }
    // Four tries, each failing half the time: success 1 - 0.5^4 = 0.9375.
    let bounds = binomial_bounds(n, 1.0 - 0.5f64.powi(4));
    assert!(
        bounds.contains(&ok),
        "{ok} of {n} succeeded, expected {bounds:?}"
    );
    // Every failure used all four tries and says so.
    if ok < n {
        let line = p.log_line(" 503 URX ").await;
        assert!(line.contains(" attempts=4"), "{line}");
    }
    // The backend saw each try: at least one per request, on average 1.875.
    let hits = app.hits.load(Ordering::Relaxed) as u32;
    assert!((n..=4 * n).contains(&hits), "{hits}");
}

#[tokio::test]
async fn connect_failure_only_does_not_retry_503s() {
    let ip = fresh_ip();
    let app = backend("app", ip).await;
    let p = retry_proxy(ip, retry_route("connect-failure", 3), app.addr).await;
    let mut c = Client::connect(p.outbound()).await;
    let n = 200;
    let mut ok = 0;
    for _ in 0..n {
        if c.get("http://backend/chance/50").await.status == 200 {
            ok += 1;
        }
    }
    assert_eq!(app.hits.load(Ordering::Relaxed) as u32, n, "one try each");
    let bounds = binomial_bounds(n, 0.5);
    assert!(bounds.contains(&ok), "{ok} of {n}");
    let line = p.log_line(" 503 - ").await;
    assert!(!line.contains("attempts="), "{line}");
}

#[tokio::test]
async fn exhausted_connect_failures_are_uf_urx() {
    let ip = fresh_ip();
    let closed = std::net::SocketAddr::new(ip, 9);
    let p = retry_proxy(ip, retry_route("connect-failure", 2), closed).await;
    let r = get(p.outbound(), "http://backend/").await;
    assert_eq!(r.status, 503);
    let line = p.log_line("\"GET / ").await;
    assert!(line.contains(" 503 UF,URX "), "{line}");
    assert!(line.contains(" attempts=3"), "{line}");
    assert!(line.contains(&format!(" \"{closed}\" ")), "{line}");
}

#[tokio::test]
async fn grpc_status_retries_and_istios_default_policy() {
    let ip = fresh_ip();
    let app = backend("app", ip).await;
    let p = retry_proxy(ip, retry_route("unavailable,cancelled", 2), app.addr).await;
    let mut c = Client::connect(p.outbound()).await;
    assert_eq!(
        c.get("http://backend/grpc/14").await.header("grpc-status"),
        "14"
    );
    assert_eq!(
        app.hits.load(Ordering::Relaxed),
        3,
        "unavailable is retried"
    );
    c.get("http://backend/grpc/13").await;
    assert_eq!(app.hits.load(Ordering::Relaxed), 4, "internal is not named");
    c.get("http://backend/grpc/1").await;
    assert_eq!(app.hits.load(Ordering::Relaxed), 7, "cancelled is retried");

    // Istio's default: 503 (retriable-status-codes) is retried twice, 500 is not.
    let ip = fresh_ip();
    let app = backend("app", ip).await;
    let default = RouteAction::Forward(Forward {
        destinations: vec![WeightedCluster {
            cluster: "app".into(),
            weight: 100,
        }],
        retries: Some(skiff_model::rules::virtual_service::default_retries()),
        rewrite: None,
    });
    let p = retry_proxy(ip, default, app.addr).await;
    let mut c = Client::connect(p.outbound()).await;
    assert_eq!(c.get("http://backend/status/503").await.status, 503);
    assert_eq!(app.hits.load(Ordering::Relaxed), 3);
    assert_eq!(c.get("http://backend/status/500").await.status, 500);
    assert_eq!(app.hits.load(Ordering::Relaxed), 4);
    assert_eq!(c.get("http://backend/grpc/14").await.status, 200);
    assert_eq!(app.hits.load(Ordering::Relaxed), 7, "unavailable");
}

async fn settle(count: impl Fn() -> usize) -> usize {
    let mut last = usize::MAX;
    for _ in 0..100 {
        let now = count();
        if now == last {
            return now;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    last
}

#[tokio::test]
async fn mirrors_copy_with_shadow_host_and_never_hold_the_request() {
    let ip = fresh_ip();
    let main = backend("main", ip).await;
    let shadow = backend("shadow", ip).await;
    let some = backend("some", ip).await;
    let hole = black_hole(ip).await;
    let mut config = one_service(
        ip,
        vec![route("r", vec![], to("main"))],
        vec![
            cluster("main", Protocol::Http, vec![endpoint(main.addr)]),
            cluster("shadow", Protocol::Http, vec![endpoint(shadow.addr)]),
            cluster("some", Protocol::Http, vec![endpoint(some.addr)]),
            cluster("hole", Protocol::Http, vec![endpoint(hole)]),
            cluster(
                "closed",
                Protocol::Http,
                vec![endpoint(std::net::SocketAddr::new(ip, 9))],
            ),
        ],
    );
    let mirror = |cluster: &str, per_million| Mirror {
        cluster: cluster.into(),
        per_million,
    };
    config.http_policies.insert(
        "r".into(),
        HttpRoutePolicy {
            mirrors: vec![
                mirror("shadow", 1_000_000),
                mirror("some", 300_000),
                mirror("hole", 1_000_000),
                mirror("closed", 1_000_000),
            ],
            ..HttpRoutePolicy::default()
        },
    );
    let p = TestProxy::with_config(ip, config).await;
    let mut c = Client::connect(p.outbound()).await;
    let n = 300u32;
    for i in 0..n {
        // The black hole never answers and the closed port refuses: neither slows
        // nor fails the request itself.
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            c.send(
                Request::post(if i % 2 == 0 {
                    "http://backend/x"
                } else {
                    "http://backend:80/x"
                })
                .body(Full::from("payload"))
                .unwrap(),
            ),
        )
        .await
        .expect("a mirror held the request");
        assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "main:payload"));
    }
    assert_eq!(main.hits.load(Ordering::Relaxed) as u32, n);
    let copies = settle(|| shadow.hits.load(Ordering::Relaxed)).await as u32;
    assert_eq!(copies, n, "every request is mirrored at 100%");
    let hosts = shadow.hosts.lock().unwrap().clone();
    assert!(hosts.iter().any(|h| h == "backend-shadow"), "{hosts:?}");
    assert!(hosts.iter().any(|h| h == "backend-shadow:80"), "{hosts:?}");
    assert!(
        hosts.iter().all(|h| h.starts_with("backend-shadow")),
        "{hosts:?}"
    );
    let partial = settle(|| some.hits.load(Ordering::Relaxed)).await as u32;
    let bounds = binomial_bounds(n, 0.3);
    assert!(bounds.contains(&partial), "30% mirror got {partial} of {n}");
}

fn cors_policy(ignore: bool) -> CorsPolicy {
    CorsPolicy {
        allow_origins: vec![
            exact("https://shop.example"),
            StringMatch::Prefix("https://app.".into()),
            StringMatch::Regex(r"https://.*\.partner\.example".into()),
        ],
        allow_methods: Some("GET,POST".into()),
        allow_headers: Some("x-token".into()),
        expose_headers: Some("x-backend".into()),
        max_age_seconds: Some(600),
        allow_credentials: true,
        ignore_unmatched_preflights: ignore,
    }
}

async fn cors_proxy(ip: std::net::IpAddr, app: &Backend, ignore: bool) -> TestProxy {
    let mut config = one_service(
        ip,
        vec![route("r", vec![], to("app"))],
        vec![cluster("app", Protocol::Http, vec![endpoint(app.addr)])],
    );
    config.http_policies.insert(
        "r".into(),
        HttpRoutePolicy {
            cors: Some(cors_policy(ignore)),
            ..HttpRoutePolicy::default()
        },
    );
    TestProxy::with_config(ip, config).await
}

fn preflight(origin: &str) -> http::request::Builder {
    Request::options("http://backend/cart")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
}

#[tokio::test]
async fn cors_preflights_and_actual_requests() {
    let ip = fresh_ip();
    let app = backend("app", ip).await;
    let p = cors_proxy(ip, &app, false).await;
    let mut c = Client::connect(p.outbound()).await;
    for origin in [
        "https://shop.example",
        "https://app.example",
        "https://eu.partner.example",
    ] {
        let r = send(&mut c, preflight(origin)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("access-control-allow-origin"), origin);
        assert_eq!(r.header("access-control-allow-methods"), "GET,POST");
        assert_eq!(r.header("access-control-allow-headers"), "x-token");
        assert_eq!(r.header("access-control-max-age"), "600");
        assert_eq!(r.header("access-control-allow-credentials"), "true");
    }
    assert_eq!(
        app.hits.load(Ordering::Relaxed),
        0,
        "preflights answered here"
    );
    // An actual request from an allowed origin gets its headers on the response.
    let r = send(
        &mut c,
        Request::get("http://backend/cart").header("origin", "https://shop.example"),
    )
    .await;
    assert_eq!(r.body, "app");
    assert_eq!(
        r.header("access-control-allow-origin"),
        "https://shop.example"
    );
    assert_eq!(r.header("access-control-expose-headers"), "x-backend");
    // Another origin: forwarded, no CORS headers; its preflight is forwarded
    // (unmatchedPreflights FORWARD, the default).
    let r = send(
        &mut c,
        Request::get("http://backend/cart").header("origin", "https://evil.example"),
    )
    .await;
    assert_eq!(r.header("access-control-allow-origin"), "");
    let r = send(&mut c, preflight("https://evil.example")).await;
    assert_eq!(
        (r.body.as_str(), r.header("access-control-allow-origin")),
        ("app", "")
    );
    assert_eq!(app.hits.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn cors_unmatched_preflights_ignored() {
    let ip = fresh_ip();
    let app = backend("app", ip).await;
    let p = cors_proxy(ip, &app, true).await;
    let mut c = Client::connect(p.outbound()).await;
    let r = send(&mut c, preflight("https://evil.example")).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, ""));
    assert_eq!(r.header("access-control-allow-origin"), "");
    assert_eq!(app.hits.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn grpc_status_abort_answers_grpc_requests_trailers_only() {
    let ip = fresh_ip();
    let app = backend("app", ip).await;
    let mut config = one_service(
        ip,
        vec![route("r", vec![], to("app"))],
        vec![cluster("app", Protocol::Http, vec![endpoint(app.addr)])],
    );
    config.faults.insert(
        "r".into(),
        Fault {
            delay: None,
            abort: Some(FaultAbort {
                grpc_status: Some(14),
                http_status: 200,
                per_million: 1_000_000,
            }),
        },
    );
    let p = TestProxy::with_config(ip, config).await;
    let mut c = Client::connect(p.outbound()).await;
    let r = send(
        &mut c,
        Request::post("http://backend/pkg.Svc/Call").header("content-type", "application/grpc"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("grpc-status"), "14");
    assert_eq!(r.header("content-type"), "application/grpc");
    assert_eq!(app.hits.load(Ordering::Relaxed), 0);
    assert!(p.log_line("pkg.Svc").await.contains(" 200 FI "));
}

#[tokio::test]
async fn no_route_says_for_which_authority() {
    let ip = fresh_ip();
    let v1 = backend("v1", ip).await;
    let config = one_service(
        ip,
        vec![route("only-api", vec![uri_prefix("/api")], to("v1"))],
        vec![cluster("v1", Protocol::Http, vec![endpoint(v1.addr)])],
    );
    let p = TestProxy::with_config(ip, config).await;
    // A known host whose routes do not take the path (an unknown host is outside the
    // registry: 502 under REGISTRY_ONLY, `routing::no_route_is_404_nr`).
    let r = get(p.outbound(), "http://backend/x").await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no route matched"), "{}", r.body);
    assert!(r.body.contains("\"backend\""), "{}", r.body);
    let line = p.log_line("GET /x").await;
    assert!(
        line.contains(" 404 NR ") && line.contains("no route matched"),
        "{line}"
    );
}

#[tokio::test]
async fn a_missing_cluster_is_503_nc_naming_it() {
    let ip = fresh_ip();
    let missing = "outbound|80|v9|backend.ns.svc.cluster.local";
    let mut config = one_service(ip, vec![route("r", vec![], to(missing))], vec![]);
    config.missing_clusters.insert(
        missing.into(),
        "subset v9 of backend.ns.svc.cluster.local is not defined".into(),
    );
    let p = TestProxy::with_config(ip, config).await;
    let r = get(p.outbound(), "http://backend/").await;
    assert_eq!(r.status, 503);
    assert!(
        r.body.contains(missing) && r.body.contains("subset v9"),
        "{}",
        r.body
    );
    let line = p.log_line("\"GET / ").await;
    assert!(
        line.contains(" 503 NC ") && line.contains("subset v9"),
        "{line}"
    );
}

#[tokio::test]
async fn regex_rewrites_and_redirect_ports() {
    let ip = fresh_ip();
    let app = backend("app", ip).await;
    let forward = RouteAction::Forward(Forward {
        destinations: vec![WeightedCluster {
            cluster: "app".into(),
            weight: 100,
        }],
        retries: None,
        rewrite: Some(Rewrite {
            uri_regex_rewrite: Some(RegexRewrite {
                pattern: r"^/users/(\d+)/(\w+)$".into(),
                substitution: r"/v2/\2/\1".into(),
            }),
            ..Rewrite::default()
        }),
    });
    let secure = RouteAction::Redirect(Redirect {
        uri: None,
        authority: None,
        scheme: Some("https".into()),
        port: None,
        status: 301,
    });
    let config = one_service(
        ip,
        vec![
            route("secure", vec![uri_prefix("/login")], secure),
            route("rx", vec![], forward),
        ],
        vec![cluster("app", Protocol::Http, vec![endpoint(app.addr)])],
    );
    let p = TestProxy::with_config(ip, config).await;
    let mut c = Client::connect(p.outbound()).await;
    let r = c.get("http://backend/users/42/orders?x=1").await;
    assert_eq!(r.header("x-seen-path"), "/v2/orders/42?x=1");
    // No match: the path goes as it is.
    assert_eq!(
        c.get("http://backend/users/me").await.header("x-seen-path"),
        "/users/me"
    );
    // A scheme change drops the old scheme's default port, as Envoy does.
    let r = c.get("http://backend:80/login?next=/").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), "https://backend/login?next=/");
    let r = c.get("http://backend/login").await;
    assert_eq!(r.header("location"), "https://backend/login");
}

#[tokio::test]
async fn delegated_rules_route_through_a_real_proxy() {
    // The model's delegation fixture, compiled for the frontend, its endpoints pointed
    // at local backends.
    let yaml = include_str!("../../../model/tests/fixtures/delegate/mesh.yaml");
    let loaded = skiff_api::load_str("delegate.yaml", yaml);
    let mesh = skiff_model::Mesh::build(&loaded.resources, skiff_model::MeshOptions::default());
    let mut config = mesh.compile("frontend.prod").expect("frontend proxy");
    let ip = fresh_ip();
    let v1 = backend("v1", ip).await;
    let v2 = backend("v2", ip).await;
    config.node.address = Some(ip);
    for c in &mut config.clusters {
        for e in &mut c.endpoints {
            e.address = if e.workload.starts_with("reviews-v2") {
                v2.addr
            } else {
                v1.addr
            };
            e.proxy_port = None;
            e.sidecar = false;
            e.mtls = false;
        }
    }
    let p = TestProxy::with_config(ip, config).await;
    let mut c = Client::connect(p.outbound()).await;
    assert_eq!(c.get("http://reviews/reviews/v2/1").await.body, "v2");
    assert_eq!(c.get("http://reviews/reviews/1").await.body, "v1");
    assert_eq!(c.get("http://reviews/other").await.body, "v1");
    assert!(
        p.log_line("/reviews/v2/1")
            .await
            .contains(" prod/root/0.0 ")
    );
    assert!(p.log_line("/reviews/1").await.contains(" prod/root/0.2 "));
    assert!(p.log_line("/other").await.contains(" prod/root/1 "));
}

/// A proxy config compiled by the model from one of its fixtures, for workload `id`,
/// with every endpoint pointed at the local backend named like its workload.
async fn compiled(
    fixture: &str,
    id: &str,
    ip: std::net::IpAddr,
    backends: &[&Backend],
) -> TestProxy {
    let loaded = skiff_api::load_str("fixture.yaml", fixture);
    let mesh = skiff_model::Mesh::build(&loaded.resources, skiff_model::MeshOptions::default());
    let mut config = mesh.compile(id).expect("proxy");
    config.node.address = Some(ip);
    for c in &mut config.clusters {
        for e in &mut c.endpoints {
            let b = backends
                .iter()
                .find(|b| e.workload.starts_with(b.name))
                .expect("a backend for every workload");
            e.address = b.addr;
            e.proxy_port = None;
            e.sidecar = false;
            e.mtls = false;
        }
    }
    TestProxy::with_config(ip, config).await
}

#[tokio::test]
async fn source_labels_and_rule_features_from_yaml_through_real_proxies() {
    let yaml = include_str!("../../../model/tests/fixtures/traffic/mesh.yaml");
    let ip = fresh_ip();
    let app = backend("backend", ip).await;
    let shadow = backend("shadow", ip).await;
    let frontend = compiled(yaml, "frontend.prod", ip, &[&app, &shadow]).await;
    let mut c = Client::connect(frontend.outbound()).await;
    let r = send(
        &mut c,
        Request::get("http://backend/page")
            .header("x-test-debug", "1")
            .header("origin", "https://shop.example"),
    )
    .await;
    assert_eq!(r.body, "backend");
    assert_eq!(r.header("x-seen-x-test-route"), "main");
    assert_eq!(r.header("x-seen-x-test-debug"), "");
    assert_eq!(r.header("x-served-by"), "skiff");
    assert_eq!(
        r.header("access-control-allow-origin"),
        "https://shop.example"
    );
    // The tester-only rule (sourceLabels app=tester) is not the frontend's.
    assert_eq!(r.status, 200);

    let ip = fresh_ip();
    let tester = compiled(yaml, "tester.prod", ip, &[&app, &shadow]).await;
    let r = send(
        &mut Client::connect(tester.outbound()).await,
        Request::post("http://backend/pkg.Svc/Call").header("content-type", "application/grpc"),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.header("grpc-status")), (200, "14"));
    assert!(tester.log_line("pkg.Svc").await.contains(" FI "));
}
