//! Route matching, weights, subsets, redirects, direct responses and rewrites, through a
//! real proxy to real backends.

use http::Request;
use http_body_util::Full;
use skiff_model::config::*;

use crate::support::*;

#[tokio::test]
async fn routes_by_uri_header_and_method() {
    let ip = fresh_ip();
    let v1 = backend("v1", ip).await;
    let v2 = backend("v2", ip).await;
    let v3 = backend("v3", ip).await;
    let hdr = |n: &str, v: &str| HeaderMatch {
        name: n.into(),
        value: StringMatch::Exact(v.into()),
    };
    let config = one_service(
        ip,
        vec![
            route(
                "canary",
                vec![RouteMatch {
                    headers: vec![hdr("x-canary", "true")],
                    ..Default::default()
                }],
                to("v3"),
            ),
            route("api", vec![uri_prefix("/api")], to("v2")),
            route(
                "posts",
                vec![RouteMatch {
                    method: Some(StringMatch::Exact("POST".into())),
                    ..Default::default()
                }],
                to("v3"),
            ),
            route("default", vec![], to("v1")),
        ],
        vec![
            cluster("v1", Protocol::Http, vec![endpoint(v1.addr)]),
            cluster("v2", Protocol::Http, vec![endpoint(v2.addr)]),
            cluster("v3", Protocol::Http, vec![endpoint(v3.addr)]),
        ],
    );
    let p = TestProxy::with_config(ip, config).await;
    let mut c = Client::connect(p.outbound()).await;
    assert_eq!(c.get("http://backend/").await.body, "v1");
    assert_eq!(c.get("http://backend/api/users").await.body, "v2");
    assert_eq!(c.get("http://backend:80/api").await.body, "v2");
    // The header rule comes first and wins over the path rule.
    let r = c
        .send(
            Request::get("http://backend/api")
                .header("x-canary", "true")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.body, "v3");
    let r = c
        .send(
            Request::post("http://backend/x")
                .body(Full::from("hi"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.body, "v3:hi");
    // Origin-form with a Host header works the same.
    let r = c
        .send(
            Request::get("/api")
                .header("host", "backend")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.body, "v2");
    // Istio's request headers are added; hop-by-hop ones are not forwarded.
    let r = c
        .send(
            Request::get("http://backend/")
                .header("proxy-connection", "keep-alive")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.header("x-seen-x-request-id").len(), 36);
    assert_eq!(r.header("x-seen-x-forwarded-proto"), "http");
    assert_eq!(r.header("x-seen-proxy-connection"), "");
    assert_eq!(
        r.header("x-seen-x-forwarded-for"),
        "",
        "sidecars do not add x-forwarded-for"
    );
    assert_eq!(r.header("x-seen-path"), "/");
    assert_eq!(r.header("x-seen-host"), "backend");

    let line = p.log_line("/api/users").await;
    assert!(
        line.contains("\"GET /api/users HTTP/1.1\" 200 - "),
        "{line}"
    );
    assert!(
        line.contains(&format!("\"{}\" \"backend\" api v2", v2.addr)),
        "{line}"
    );
}

#[tokio::test]
async fn no_route_is_404_nr() {
    let ip = fresh_ip();
    let v1 = backend("v1", ip).await;
    let config = one_service(
        ip,
        vec![route("only-api", vec![uri_prefix("/api")], to("v1"))],
        vec![cluster("v1", Protocol::Http, vec![endpoint(v1.addr)])],
    );
    let p = TestProxy::with_config(ip, config).await;
    let mut c = Client::connect(p.outbound()).await;
    assert_eq!(c.get("http://backend/other").await.status, 404);
    // Hosts and ports outside the registry: REGISTRY_ONLY (the zero value of a
    // hand-written config) answers 502 as Istio's block_all route does.
    assert_eq!(c.get("http://unknown/api").await.status, 502);
    assert_eq!(c.get("http://backend:81/api").await.status, 502);
    assert!(p.log_line("/other").await.contains(" 404 NR "));
    assert_eq!(v1.hits.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn weighted_split_90_10() {
    let ip = fresh_ip();
    let a = backend("a", ip).await;
    let b = backend("b", ip).await;
    let config = one_service(
        ip,
        vec![route("split", vec![], weighted(&[("a", 90), ("b", 10)]))],
        vec![
            cluster("a", Protocol::Http, vec![endpoint(a.addr)]),
            cluster("b", Protocol::Http, vec![endpoint(b.addr)]),
        ],
    );
    let p = TestProxy::start_with(ip, |o| o.access_log = skiff_proxy::AccessLogTarget::Off).await;
    p.proxy.apply("1", config).unwrap();
    let mut c = Client::connect(p.outbound()).await;
    let n = 2000;
    let mut to_b = 0;
    for _ in 0..n {
        if c.get("http://backend/").await.body == "b" {
            to_b += 1;
        }
    }
    // Binomial(2000, 0.1): mean 200, standard deviation 13.4; allow 6 either side.
    assert!((120..=280).contains(&to_b), "b got {to_b} of {n}");
}

#[tokio::test]
async fn subsets_select_their_endpoints() {
    let ip = fresh_ip();
    let v1a = backend("v1a", ip).await;
    let v1b = backend("v1b", ip).await;
    let v2 = backend("v2", ip).await;
    let mut sub_v1 = cluster(
        "outbound|80|v1|backend.ns.svc.cluster.local",
        Protocol::Http,
        vec![endpoint(v1a.addr), endpoint(v1b.addr)],
    );
    sub_v1.subset = Some("v1".into());
    let mut sub_v2 = cluster(
        "outbound|80|v2|backend.ns.svc.cluster.local",
        Protocol::Http,
        vec![endpoint(v2.addr)],
    );
    sub_v2.subset = Some("v2".into());
    let all = cluster(
        "outbound|80||backend.ns.svc.cluster.local",
        Protocol::Http,
        vec![endpoint(v1a.addr), endpoint(v1b.addr), endpoint(v2.addr)],
    );
    let config = one_service(
        ip,
        vec![
            route(
                "v2",
                vec![uri_prefix("/v2")],
                to("outbound|80|v2|backend.ns.svc.cluster.local"),
            ),
            route(
                "v1",
                vec![],
                to("outbound|80|v1|backend.ns.svc.cluster.local"),
            ),
        ],
        vec![all, sub_v1, sub_v2],
    );
    let p = TestProxy::with_config(ip, config).await;
    let mut c = Client::connect(p.outbound()).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        seen.insert(c.get("http://backend/").await.body);
    }
    // Round robin over the v1 subset only.
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["v1a", "v1b"]);
    for _ in 0..5 {
        assert_eq!(c.get("http://backend/v2/x").await.body, "v2");
    }
}

#[tokio::test]
async fn redirect_direct_response_and_rewrite() {
    let ip = fresh_ip();
    let v1 = backend("v1", ip).await;
    let config = one_service(
        ip,
        vec![
            route(
                "moved",
                vec![uri_prefix("/old")],
                RouteAction::Redirect(Redirect {
                    uri: Some("/new".into()),
                    authority: Some("other.example".into()),
                    scheme: Some("https".into()),
                    port: None,
                    status: 308,
                }),
            ),
            route(
                "teapot",
                vec![uri_prefix("/tea")],
                RouteAction::DirectResponse {
                    status: 418,
                    body: Some("short and stout".into()),
                },
            ),
            route(
                "rewrite",
                vec![uri_prefix("/legacy/")],
                RouteAction::Forward(Forward {
                    destinations: vec![WeightedCluster {
                        cluster: "v1".into(),
                        weight: 100,
                    }],
                    retries: None,
                    rewrite: Some(Rewrite {
                        uri: Some("/v2/".into()),
                        authority: Some("backend.internal".into()),
                        ..Rewrite::default()
                    }),
                }),
            ),
        ],
        vec![cluster("v1", Protocol::Http, vec![endpoint(v1.addr)])],
    );
    let p = TestProxy::with_config(ip, config).await;
    let mut c = Client::connect(p.outbound()).await;
    let r = c.get("http://backend/old/page?x=1").await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), "https://other.example/new?x=1");
    let r = c.get("http://backend/tea").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (418, "short and stout")
    );
    let r = c.get("http://backend/legacy/items?id=3").await;
    assert_eq!(r.header("x-seen-path"), "/v2/items?id=3");
    assert_eq!(r.header("x-seen-host"), "backend.internal");
    assert!(p.log_line("/tea").await.contains(" 418 - "));
}

#[tokio::test]
async fn gateway_port_with_offset() {
    let ip = fresh_ip();
    let app = backend("web", ip).await;
    let mut config = sidecar(
        ip,
        vec![],
        vec![cluster("web", Protocol::Http, vec![endpoint(app.addr)])],
    );
    config.node.kind = ProxyKind::Gateway;
    config.gateway = vec![GatewayPort {
        tcp: vec![],
        tls: vec![],
        port: 80,
        protocol: Protocol::Http,
        gateways: vec!["ns/gw".into()],
        virtual_hosts: vec![vhost(
            &["shop.example.com"],
            vec![route("web", vec![], to("web"))],
        )],
    }];
    let p = TestProxy::start_with(ip, |o| o.gateway_port_offset = 8000).await;
    p.proxy.apply("1", config).unwrap();
    let addr = p.proxy.gateway_addr(80).unwrap();
    assert_eq!(addr.port(), 8080);
    assert!(
        p.proxy.outbound_addr().is_none(),
        "a gateway has no sidecar listeners"
    );
    let mut c = Client::connect(addr).await;
    let r = c
        .send(
            Request::get("/")
                .header("host", "Shop.Example.com:8080")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.body, "web");
    // At the edge the client's address is appended to x-forwarded-for.
    let client_ip = c.local.ip();
    assert_eq!(r.header("x-seen-x-forwarded-for"), client_ip.to_string());
    let r = c
        .send(
            Request::get("/")
                .header("host", "shop.example.com")
                .header("x-forwarded-for", "203.0.113.9")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(
        r.header("x-seen-x-forwarded-for"),
        format!("203.0.113.9, {client_ip}")
    );
    let r = c
        .send(
            Request::get("/")
                .header("host", "other")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 404);
}
