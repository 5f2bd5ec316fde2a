//! VirtualService HTTP features compiled into the caller's config: header rules, mirrors,
//! CORS, retry back-off, gRPC aborts, scheme matches and `sourceLabels`.

use skiff_model::config::{
    CorsPolicy, DestinationHeaders, HeaderOps, HeaderRules, Mirror, RouteAction, StringMatch,
};

use super::*;

#[test]
fn nothing_used_here_is_reported_as_not_enforced() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traffic");
    let loaded = skiff_api::load(&[dir]).unwrap();
    let warned: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.message.contains("not enforced"))
        .map(|d| d.to_string())
        .collect();
    assert!(warned.is_empty(), "{warned:#?}");
}

#[test]
fn header_rules_mirrors_and_cors_reach_the_caller_by_route_name() {
    let mesh = mesh("traffic");
    let config = compile(&mesh, "frontend.prod");
    let p = config
        .http_policies
        .get("prod/backend/main")
        .expect("policy of the main rule");
    assert_eq!(
        p.headers,
        HeaderRules {
            request: HeaderOps {
                set: vec![("x-test-route".into(), "main".into())],
                add: vec![],
                remove: vec!["x-test-debug".into()],
            },
            response: HeaderOps {
                set: vec![],
                add: vec![("x-served-by".into(), "skiff".into())],
                remove: vec![],
            },
        }
    );
    assert_eq!(
        p.destination_headers,
        vec![DestinationHeaders {
            index: 0,
            headers: HeaderRules {
                request: HeaderOps {
                    add: vec![("x-subset".into(), "v1".into())],
                    ..HeaderOps::default()
                },
                response: HeaderOps::default(),
            },
        }]
    );
    let shadow = "outbound|80||shadow.prod.svc.cluster.local";
    assert_eq!(
        p.mirrors,
        [Mirror {
            cluster: shadow.into(),
            per_million: 255_000
        }]
    );
    assert_eq!(
        config.http_policies["prod/backend/copies"].mirrors,
        [
            Mirror {
                cluster: shadow.into(),
                per_million: 400_000
            },
            // Without a percentage, every request is copied.
            Mirror {
                cluster: shadow.into(),
                per_million: 1_000_000
            },
        ]
    );
    assert!(config.clusters.iter().any(|c| c.name == shadow));
    assert_eq!(
        p.cors,
        Some(CorsPolicy {
            allow_origins: vec![
                StringMatch::Exact("https://shop.example".into()),
                StringMatch::Regex("https://.*\\.example".into()),
            ],
            allow_methods: Some("GET,POST".into()),
            allow_headers: Some("x-token".into()),
            expose_headers: Some("x-served-by".into()),
            max_age_seconds: Some(86_400),
            allow_credentials: true,
            ignore_unmatched_preflights: true,
        })
    );
    let main = vhost(&config, 80, "backend.prod.svc.cluster.local:80")
        .routes
        .iter()
        .find(|r| r.name == "prod/backend/main")
        .unwrap();
    let RouteAction::Forward(f) = &main.action else {
        panic!("main forwards")
    };
    let retries = f.retries.as_ref().unwrap();
    assert_eq!(retries.backoff, Some(std::time::Duration::from_millis(10)));
    assert_eq!(retries.retry_on, ["5xx", "409"]);
}

#[test]
fn source_labels_decide_per_proxy_and_grpc_aborts_compile() {
    let mesh = mesh("traffic");
    let frontend = compile(&mesh, "frontend.prod");
    let names: Vec<&str> = vhost(&frontend, 80, "backend.prod.svc.cluster.local:80")
        .routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "prod/backend/copies",
            "prod/backend/moved",
            "prod/backend/rx",
            "prod/backend/main"
        ],
        "the tester rule is not the frontend's"
    );
    assert!(frontend.faults.is_empty());

    let tester = compile(&mesh, "tester.prod");
    let routes = &vhost(&tester, 80, "backend.prod.svc.cluster.local:80").routes;
    assert_eq!(routes[0].name, "prod/backend/testers");
    assert_eq!(
        routes[0].matches[0].scheme,
        Some(StringMatch::Exact("http".into()))
    );
    let abort = tester.faults["prod/backend/testers"].abort.clone().unwrap();
    assert_eq!(
        (abort.http_status, abort.grpc_status, abort.per_million),
        (200, Some(14), 1_000_000)
    );
}

#[test]
fn derive_port_from_request_and_regex_rewrites_compile() {
    let mesh = mesh("traffic");
    let config = compile(&mesh, "frontend.prod");
    let routes = &vhost(&config, 80, "backend.prod.svc.cluster.local:80").routes;
    let moved = routes
        .iter()
        .find(|r| r.name == "prod/backend/moved")
        .unwrap();
    let RouteAction::Redirect(rd) = &moved.action else {
        panic!("a redirect")
    };
    // FROM_REQUEST_PORT: the port the route serves, filled in per port.
    assert_eq!(
        (rd.authority.as_deref(), rd.port),
        (Some("new.example"), Some(80))
    );
    let rx = routes.iter().find(|r| r.name == "prod/backend/rx").unwrap();
    let RouteAction::Forward(f) = &rx.action else {
        panic!("a forward")
    };
    let regex = f
        .rewrite
        .as_ref()
        .unwrap()
        .uri_regex_rewrite
        .clone()
        .unwrap();
    assert_eq!(
        (regex.pattern.as_str(), regex.substitution.as_str()),
        ("^/users/([0-9]+)$", "/v2/users/\\1")
    );
}
