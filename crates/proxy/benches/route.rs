//! The routing lookup on the hot path: virtual host by authority, then the first
//! matching route, on a config shaped like a mid-size mesh (200 services, each with its
//! Kubernetes short and long names, some with VirtualService rules).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use skiff_model::config::*;
use skiff_proxy::config::Snapshot;
use skiff_proxy::route::{RequestView, Selection};

fn forward(cluster: &str) -> RouteAction {
    RouteAction::Forward(Forward {
        destinations: vec![
            WeightedCluster {
                cluster: cluster.to_owned(),
                weight: 90,
            },
            WeightedCluster {
                cluster: cluster.to_owned(),
                weight: 10,
            },
        ],
        retries: None,
        rewrite: None,
    })
}

fn mesh(services: usize) -> ProxyConfig {
    let mut vhosts = Vec::new();
    let mut clusters = Vec::new();
    for i in 0..services {
        let name = format!("svc{i}");
        let fqdn = format!("{name}.prod.svc.cluster.local");
        let cluster = format!("outbound|80||{fqdn}");
        let mut domains = Vec::new();
        for d in [
            name.clone(),
            format!("{name}.prod"),
            format!("{name}.prod.svc"),
            fqdn.clone(),
        ] {
            domains.push(format!("{d}:80"));
            domains.push(d);
        }
        let header = |v: &str| HeaderMatch {
            name: "x-user".into(),
            value: StringMatch::Exact(v.into()),
        };
        let routes = if i % 4 == 0 {
            vec![
                Route {
                    name: format!("prod/{name}/0"),
                    matches: vec![RouteMatch {
                        headers: vec![header("jason")],
                        ..Default::default()
                    }],
                    action: forward(&cluster),
                    timeout: None,
                },
                Route {
                    name: format!("prod/{name}/1"),
                    matches: vec![
                        RouteMatch {
                            uri: Some(StringMatch::Prefix("/api/v2".into())),
                            ..Default::default()
                        },
                        RouteMatch {
                            uri: Some(StringMatch::Regex("/v[0-9]+/items/[0-9]+".into())),
                            ..Default::default()
                        },
                    ],
                    action: forward(&cluster),
                    timeout: Some(Duration::from_secs(5)),
                },
                Route {
                    name: format!("prod/{name}/2"),
                    matches: vec![RouteMatch {
                        method: Some(StringMatch::Exact("POST".into())),
                        ..Default::default()
                    }],
                    action: forward(&cluster),
                    timeout: None,
                },
                Route {
                    name: "default".into(),
                    matches: vec![],
                    action: forward(&cluster),
                    timeout: None,
                },
            ]
        } else {
            vec![Route {
                name: "default".into(),
                matches: vec![],
                action: forward(&cluster),
                timeout: None,
            }]
        };
        vhosts.push(VirtualHost {
            name: format!("{fqdn}:80"),
            domains,
            routes,
        });
        clusters.push(Cluster {
            name: cluster,
            service: fqdn,
            port: 80,
            subset: None,
            protocol: Protocol::Http,
            lb: LbPolicy::LeastRequest,
            endpoints: vec![Endpoint {
                address: format!("10.0.{}.{}:8080", i / 250, i % 250 + 1)
                    .parse()
                    .unwrap(),
                proxy_port: Some(15006),
                workload: format!("{name}-v1.prod"),
                weight: 1,
                spiffe_id: String::new(),
                sidecar: true,
                mtls: false,
                locality: String::new(),
                priority: 0,
                dns: None,
            }],
            connect_timeout: Duration::from_secs(10),
            tls: Default::default(),
            traffic: Default::default(),
        });
    }
    vhosts.push(VirtualHost {
        name: "wildcard".into(),
        domains: vec!["*.example.com".into()],
        routes: vec![Route {
            name: "ext".into(),
            matches: vec![],
            action: forward("outbound|80||svc0.prod.svc.cluster.local"),
            timeout: None,
        }],
    });
    ProxyConfig {
        node: Node {
            id: "bench.prod".into(),
            ..Node::default()
        },
        outbound: vec![OutboundPort {
            port: 80,
            protocol: Protocol::Http,
            virtual_hosts: vhosts,
            tcp: vec![],
        }],
        inbound: vec![],
        gateway: vec![],
        clusters,
        ..ProxyConfig::default()
    }
}

fn route_name(s: &Snapshot, req: &RequestView<'_>) -> usize {
    match s.outbound_port(req.port).unwrap().http.select(req) {
        Selection::Route(r) => r.route.name.len(),
        _ => 0,
    }
}

fn bench(c: &mut Criterion) {
    let snapshot = Snapshot::compile("bench", mesh(200)).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("user-agent", HeaderValue::from_static("curl/8"));
    headers.insert("accept", HeaderValue::from_static("*/*"));
    let get = Method::GET;
    let view = |authority, path| RequestView {
        scheme: "http",
        method: &get,
        path,
        query: None,
        authority,
        port: 80,
        headers: &headers,
    };
    let mut g = c.benchmark_group("route");
    g.bench_function("short name, default route", |b| {
        b.iter(|| route_name(&snapshot, black_box(&view("svc7", "/"))))
    });
    g.bench_function("fqdn with port, default route", |b| {
        b.iter(|| {
            route_name(
                &snapshot,
                black_box(&view("svc7.prod.svc.cluster.local:80", "/")),
            )
        })
    });
    g.bench_function("mixed case name", |b| {
        b.iter(|| route_name(&snapshot, black_box(&view("Svc7.Prod", "/"))))
    });
    g.bench_function("wildcard", |b| {
        b.iter(|| route_name(&snapshot, black_box(&view("www.example.com", "/"))))
    });
    g.bench_function("header rule miss, prefix hit", |b| {
        b.iter(|| route_name(&snapshot, black_box(&view("svc8", "/api/v2/users"))))
    });
    g.bench_function("regex hit", |b| {
        b.iter(|| route_name(&snapshot, black_box(&view("svc8", "/v3/items/42"))))
    });
    g.bench_function("fall through to default", |b| {
        b.iter(|| route_name(&snapshot, black_box(&view("svc8", "/other/path"))))
    });
    g.finish();
    c.bench_function("compile 200 services", |b| {
        b.iter(|| Snapshot::compile("v", black_box(mesh(200))).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
