use http::{HeaderMap, HeaderValue, Method};
use skiff_model::config::*;

use crate::config::Snapshot;
use crate::config::tests::{cluster, config, forward, route, vhost};
use crate::route::{RequestView, Selection, split_authority};

struct Req {
    method: Method,
    path: &'static str,
    query: Option<&'static str>,
    authority: &'static str,
    headers: HeaderMap,
}

fn req(authority: &'static str, path: &'static str) -> Req {
    Req {
        method: Method::GET,
        path,
        query: None,
        authority,
        headers: HeaderMap::new(),
    }
}

impl Req {
    fn view(&self) -> RequestView<'_> {
        RequestView {
            scheme: "http",
            method: &self.method,
            path: self.path,
            query: self.query,
            authority: self.authority,
            port: 80,
            headers: &self.headers,
        }
    }
    fn header(mut self, k: &'static str, v: &'static str) -> Self {
        self.headers.append(k, HeaderValue::from_static(v));
        self
    }
}

/// Routes `r` and names the route that matched, `NR` or `NVH`.
fn pick(s: &Snapshot, r: &Req) -> String {
    match s.outbound_port(80).unwrap().http.select(&r.view()) {
        Selection::Route(sel) => sel.route.name.to_string(),
        Selection::NoRoute(_) => "NR".to_owned(),
        Selection::NoVirtualHost => "NVH".to_owned(),
    }
}

fn m() -> RouteMatch {
    RouteMatch::default()
}

#[test]
fn domains_exact_then_longest_wildcard_then_any() {
    let r = |n: &str| route(n, vec![], forward("c"));
    let s = Snapshot::compile(
        "v",
        config(
            vec![
                vhost(
                    "exact",
                    &["api.example.com", "backend", "backend:80"],
                    vec![r("exact")],
                ),
                vhost("short", &["*.com"], vec![r("short")]),
                vhost("long", &["*.example.com"], vec![r("long")]),
                vhost("any", &["*"], vec![r("any")]),
            ],
            vec![cluster("c", &[])],
        ),
    )
    .unwrap();
    assert_eq!(pick(&s, &req("api.example.com", "/")), "exact");
    assert_eq!(pick(&s, &req("API.Example.COM:80", "/")), "exact");
    assert_eq!(pick(&s, &req("backend:80", "/")), "exact");
    assert_eq!(pick(&s, &req("Backend", "/")), "exact");
    assert_eq!(pick(&s, &req("www.example.com", "/")), "long");
    assert_eq!(pick(&s, &req("a.b.example.com:8080", "/")), "long");
    assert_eq!(pick(&s, &req("example.com", "/")), "short");
    assert_eq!(pick(&s, &req("other.org", "/")), "any");
    assert_eq!(pick(&s, &req("[::1]:80", "/")), "any");
}

#[test]
fn no_virtual_host_and_no_route() {
    let s = Snapshot::compile(
        "v",
        config(
            vec![vhost(
                "a",
                &["a"],
                vec![route(
                    "only-get",
                    vec![RouteMatch {
                        method: Some(StringMatch::Exact("GET".into())),
                        ..m()
                    }],
                    forward("c"),
                )],
            )],
            vec![cluster("c", &[])],
        ),
    )
    .unwrap();
    assert_eq!(pick(&s, &req("b", "/")), "NVH");
    let mut post = req("a", "/");
    post.method = Method::POST;
    assert_eq!(pick(&s, &post), "NR");
    assert_eq!(pick(&s, &req("a", "/")), "only-get");
}

fn table(routes: Vec<Route>) -> Snapshot {
    Snapshot::compile(
        "v",
        config(vec![vhost("a", &["a"], routes)], vec![cluster("c", &[])]),
    )
    .unwrap()
}

#[test]
fn uri_matches() {
    let s = table(vec![
        route(
            "exact",
            vec![RouteMatch {
                uri: Some(StringMatch::Exact("/login".into())),
                ..m()
            }],
            forward("c"),
        ),
        route(
            "prefix-ci",
            vec![RouteMatch {
                uri: Some(StringMatch::Prefix("/API/".into())),
                ignore_uri_case: true,
                ..m()
            }],
            forward("c"),
        ),
        route(
            "regex",
            vec![RouteMatch {
                uri: Some(StringMatch::Regex("/v[0-9]+/.*".into())),
                ..m()
            }],
            forward("c"),
        ),
        route(
            "rest",
            vec![RouteMatch {
                uri: Some(StringMatch::Prefix("/".into())),
                ..m()
            }],
            forward("c"),
        ),
    ]);
    assert_eq!(pick(&s, &req("a", "/login")), "exact");
    assert_eq!(pick(&s, &req("a", "/login/x")), "rest");
    assert_eq!(pick(&s, &req("a", "/LOGIN")), "rest");
    assert_eq!(pick(&s, &req("a", "/api/users")), "prefix-ci");
    assert_eq!(pick(&s, &req("a", "/Api/users")), "prefix-ci");
    assert_eq!(pick(&s, &req("a", "/v2/users")), "regex");
    // The regex must match the whole path.
    assert_eq!(pick(&s, &req("a", "/x/v2/users")), "rest");
}

#[test]
fn header_rules_first_present_and_without() {
    let hdr = |name: &str, v: StringMatch| HeaderMatch {
        name: name.into(),
        value: v,
    };
    let s = table(vec![
        route(
            "canary",
            vec![RouteMatch {
                headers: vec![hdr("x-canary", StringMatch::Exact("true".into()))],
                ..m()
            }],
            forward("c"),
        ),
        route(
            "traced",
            vec![RouteMatch {
                headers: vec![hdr("x-trace", StringMatch::Present)],
                without_headers: vec![hdr("x-debug", StringMatch::Prefix("off".into()))],
                ..m()
            }],
            forward("c"),
        ),
        route(
            "either",
            vec![
                RouteMatch {
                    authority: Some(StringMatch::Prefix("a".into())),
                    query_params: vec![hdr("v", StringMatch::Exact("2".into()))],
                    ..m()
                },
                RouteMatch {
                    headers: vec![hdr("user", StringMatch::Regex("j.*".into()))],
                    ..m()
                },
            ],
            forward("c"),
        ),
        route("default", vec![], forward("c")),
    ]);
    assert_eq!(
        pick(&s, &req("a", "/").header("x-canary", "true")),
        "canary"
    );
    assert_eq!(
        pick(&s, &req("a", "/").header("x-canary", "TRUE")),
        "default"
    );
    assert_eq!(pick(&s, &req("a", "/").header("x-trace", "")), "traced");
    assert_eq!(
        pick(
            &s,
            &req("a", "/")
                .header("x-trace", "1")
                .header("x-debug", "off-now")
        ),
        "default"
    );
    assert_eq!(
        pick(
            &s,
            &req("a", "/").header("x-trace", "1").header("x-debug", "on")
        ),
        "traced"
    );
    assert_eq!(pick(&s, &req("a", "/").header("user", "jason")), "either");
    assert_eq!(pick(&s, &req("a", "/").header("user", "ajason")), "default");
    let mut q = req("a", "/");
    q.query = Some("a=1&v=2");
    assert_eq!(pick(&s, &q), "either");
    q.query = Some("v=20");
    assert_eq!(pick(&s, &q), "default");
    // Several values of one header are matched joined by commas.
    assert_eq!(
        pick(&s, &req("a", "/").header("user", "j").header("user", "k")),
        "either"
    );
}

#[test]
fn rewrite_spans() {
    let s = table(vec![
        route(
            "p",
            vec![RouteMatch {
                uri: Some(StringMatch::Prefix("/old".into())),
                ..m()
            }],
            forward("c"),
        ),
        route(
            "e",
            vec![RouteMatch {
                uri: Some(StringMatch::Exact("/exact".into())),
                ..m()
            }],
            forward("c"),
        ),
        route("any", vec![], forward("c")),
    ]);
    let t = &s.outbound_port(80).unwrap().http;
    let sel = |path: &'static str| match t.select(&req("a", path).view()) {
        Selection::Route(s) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(sel("/old/x").rewrite_path("/new", "/old/x"), "/new/x");
    assert_eq!(sel("/exact").rewrite_path("/other", "/exact"), "/other");
    assert_eq!(sel("/foo").rewrite_path("/bar/", "/foo"), "/bar/foo");
}

#[test]
fn authorities_split() {
    assert_eq!(split_authority("a", 80), ("a", 80));
    assert_eq!(split_authority("a:8080", 80), ("a", 8080));
    assert_eq!(split_authority("[::1]:9", 80), ("[::1]", 9));
    assert_eq!(split_authority("[::1]", 80), ("[::1]", 80));
}
