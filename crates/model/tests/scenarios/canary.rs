//! The canary of the seeds: a header rule to v2 first, then 90/10 between v1 and v2.

use std::time::Duration;

use skiff_model::config::{HeaderMatch, LbPolicy, Protocol, ProxyKind, RouteAction, StringMatch};

use super::*;

const V1: &str = "outbound|80|v1|backend.prod.svc.cluster.local";
const V2: &str = "outbound|80|v2|backend.prod.svc.cluster.local";

#[test]
fn every_workload_with_a_sidecar_is_a_proxy() {
    let mesh = mesh("canary");
    assert_eq!(
        mesh.proxies().collect::<Vec<_>>(),
        [
            "backend-v1.prod",
            "backend-v2.prod",
            "backend-v2b.prod",
            "frontend.prod"
        ]
    );
    assert_eq!(mesh.proxy_kind("frontend.prod"), Some(ProxyKind::Sidecar));
    assert!(mesh.compile("nobody.prod").is_none());
    assert!(problems(&mesh).is_empty(), "{:#?}", problems(&mesh));
}

#[test]
fn the_canary_header_rule_comes_first_then_the_weighted_split() {
    let mesh = mesh("canary");
    let config = compile(&mesh, "frontend.prod");
    let port = config.outbound.iter().find(|p| p.port == 80).unwrap();
    assert_eq!(port.protocol, Protocol::Http);
    let vh = vhost(&config, 80, "backend.prod.svc.cluster.local:80");
    for name in [
        "backend",
        "backend:80",
        "backend.prod",
        "backend.prod.svc.cluster.local:80",
    ] {
        assert!(
            vh.domains.iter().any(|d| d == name),
            "{name} in {:?}",
            vh.domains
        );
    }
    assert_eq!(vh.routes.len(), 2);

    let canary = &vh.routes[0];
    assert_eq!(canary.name, "prod/backend/0");
    assert_eq!(canary.matches.len(), 1);
    assert_eq!(
        canary.matches[0].headers,
        [HeaderMatch {
            name: "x-canary".into(),
            value: StringMatch::Exact("true".into())
        }]
    );
    assert_eq!(forward(canary), [(V2.to_string(), 100)]);

    let split = &vh.routes[1];
    assert!(split.matches.is_empty());
    assert_eq!(forward(split), [(V1.to_string(), 90), (V2.to_string(), 10)]);
    assert_eq!(split.timeout, Some(Duration::from_secs(30)));
    let RouteAction::Forward(f) = &split.action else {
        unreachable!()
    };
    let retries = f.retries.as_ref().unwrap();
    assert_eq!(retries.attempts, 3);
    assert_eq!(retries.per_try_timeout, Some(Duration::from_secs(10)));
    assert_eq!(
        retries.retry_on,
        [
            "5xx",
            "gateway-error",
            "reset",
            "connect-failure",
            "retriable-4xx"
        ]
    );
}

#[test]
fn subset_clusters_hold_the_right_workloads() {
    let mesh = mesh("canary");
    let config = compile(&mesh, "frontend.prod");
    let v1 = cluster(&config, V1);
    assert_eq!(endpoints(v1), ["127.0.0.11:8080"]);
    assert_eq!(v1.endpoints[0].workload, "backend-v1.prod");
    assert_eq!(v1.endpoints[0].proxy_port, Some(15006));
    assert_eq!(v1.endpoints[0].weight, 1);
    let v2 = cluster(&config, V2);
    assert_eq!(endpoints(v2), ["127.0.0.12:8080", "127.0.0.13:8080"]);
    for c in [v1, v2] {
        assert_eq!(c.lb, LbPolicy::RoundRobin);
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.protocol, Protocol::Http);
    }
    // Only referenced clusters: the two subsets, and the frontend's default cluster.
    let names: Vec<&str> = config.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [V1, V2, "outbound|80||frontend.prod.svc.cluster.local"]
    );
}

#[test]
fn a_service_without_virtual_service_gets_a_default_route_with_istio_retries() {
    let mesh = mesh("canary");
    let config = compile(&mesh, "backend-v1.prod");
    let vh = vhost(&config, 80, "frontend.prod.svc.cluster.local:80");
    assert_eq!(vh.routes.len(), 1);
    assert_eq!(vh.routes[0].name, "default");
    assert_eq!(
        forward(&vh.routes[0]),
        [(
            "outbound|80||frontend.prod.svc.cluster.local".to_string(),
            100
        )]
    );
    let RouteAction::Forward(f) = &vh.routes[0].action else {
        unreachable!()
    };
    let retries = f.retries.as_ref().unwrap();
    assert_eq!(retries.attempts, 2);
    assert!(retries.retry_on.contains(&"503".to_string()));
    let frontend = cluster(&config, "outbound|80||frontend.prod.svc.cluster.local");
    assert_eq!(frontend.lb, LbPolicy::LeastRequest);
    assert_eq!(frontend.connect_timeout, Duration::from_secs(10));
}

#[test]
fn inbound_ports_are_the_target_ports_services_use() {
    let mesh = mesh("canary");
    let config = compile(&mesh, "backend-v2.prod");
    assert_eq!(config.inbound.len(), 1);
    assert_eq!(config.inbound[0].target_port, 8080);
    assert_eq!(config.inbound[0].protocol, Protocol::Http);
    assert_eq!(
        config.inbound[0].services,
        ["backend.prod.svc.cluster.local:80"]
    );
    assert_eq!(config.node.id, "backend-v2.prod");
    assert_eq!(config.node.address, Some("127.0.0.12".parse().unwrap()));
    assert_eq!(
        config.node.spiffe_id,
        "spiffe://cluster.local/ns/prod/sa/default"
    );
    assert_eq!(
        config.node.labels.get("version").map(String::as_str),
        Some("v2")
    );
}

#[test]
fn same_input_gives_byte_identical_output() {
    let a = mesh("canary");
    let b = mesh("canary");
    for id in a.proxies() {
        let first = serde_json::to_vec(&compile(&a, id)).unwrap();
        let again = serde_json::to_vec(&compile(&a, id)).unwrap();
        let rebuilt = serde_json::to_vec(&compile(&b, id)).unwrap();
        assert_eq!(first, again, "{id}: compiling twice differs");
        assert_eq!(first, rebuilt, "{id}: rebuilding the mesh differs");
    }
}

#[test]
fn the_compiled_config_round_trips_through_json() {
    let mesh = mesh("canary");
    let config = compile(&mesh, "frontend.prod");
    let json = serde_json::to_string(&config).unwrap();
    let back: skiff_model::config::ProxyConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config);
}
