//! Compile and validation tests, and config builders the other unit tests share.

use super::*;
use skiff_model::config::*;

pub(crate) fn cluster(name: &str, endpoints: &[&str]) -> Cluster {
    Cluster {
        name: name.to_owned(),
        service: "svc".to_owned(),
        port: 80,
        subset: None,
        protocol: Protocol::Http,
        lb: LbPolicy::RoundRobin,
        endpoints: endpoints
            .iter()
            .map(|a| Endpoint {
                address: a.parse().unwrap(),
                proxy_port: None,
                workload: "w.ns".to_owned(),
                weight: 1,
                spiffe_id: String::new(),
                sidecar: false,
                mtls: false,
                locality: String::new(),
                priority: 0,
                dns: None,
            })
            .collect(),
        connect_timeout: Duration::from_secs(1),
        tls: Default::default(),
        traffic: Default::default(),
    }
}

pub(crate) fn forward(cluster: &str) -> RouteAction {
    RouteAction::Forward(Forward {
        destinations: vec![WeightedCluster {
            cluster: cluster.to_owned(),
            weight: 100,
        }],
        retries: None,
        rewrite: None,
    })
}

pub(crate) fn route(name: &str, matches: Vec<RouteMatch>, action: RouteAction) -> Route {
    Route {
        name: name.to_owned(),
        matches,
        action,
        timeout: None,
    }
}

pub(crate) fn vhost(name: &str, domains: &[&str], routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name: name.to_owned(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes,
    }
}

pub(crate) fn config(vhosts: Vec<VirtualHost>, clusters: Vec<Cluster>) -> ProxyConfig {
    ProxyConfig {
        node: Node {
            id: "client.ns".to_owned(),
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

fn simple() -> ProxyConfig {
    config(
        vec![vhost(
            "a",
            &["a"],
            vec![route("default", vec![], forward("c"))],
        )],
        vec![cluster("c", &["127.0.0.1:1"])],
    )
}

fn err(c: ProxyConfig) -> String {
    Snapshot::compile("v", c).unwrap_err().to_string()
}

#[test]
fn compiles_a_simple_config() {
    let s = Snapshot::compile("v1", simple()).unwrap();
    assert_eq!(s.version(), "v1");
    assert!(s.outbound_port(80).is_some());
    assert!(s.outbound_port(81).is_none());
    assert!(s.warnings().is_empty(), "{:?}", s.warnings());
}

#[test]
fn unknown_cluster_is_rejected() {
    let mut c = simple();
    c.clusters.clear();
    assert!(err(c).contains("destination cluster \"c\""));
}

#[test]
fn bad_regex_is_rejected() {
    let mut c = simple();
    c.outbound[0].virtual_hosts[0].routes[0].matches = vec![RouteMatch {
        uri: Some(StringMatch::Regex("/(unclosed".to_owned())),
        ..RouteMatch::default()
    }];
    let e = err(c);
    assert!(e.contains("regex \"/(unclosed\" does not compile"), "{e}");
}

#[test]
fn oversized_regex_is_rejected() {
    let mut c = simple();
    c.outbound[0].virtual_hosts[0].routes[0].matches = vec![RouteMatch {
        uri: Some(StringMatch::Regex(r"/\w{100}".to_owned())),
        ..RouteMatch::default()
    }];
    let e = err(c);
    assert!(e.contains("size limit"), "{e}");
}

#[test]
fn bad_header_name_and_statuses_are_rejected() {
    let mut c = simple();
    c.outbound[0].virtual_hosts[0].routes[0].matches = vec![RouteMatch {
        headers: vec![HeaderMatch {
            name: "bad header".to_owned(),
            value: StringMatch::Present,
        }],
        ..RouteMatch::default()
    }];
    assert!(err(c).contains("header name"));

    let mut c = simple();
    c.outbound[0].virtual_hosts[0].routes[0].action = RouteAction::Redirect(Redirect {
        uri: None,
        authority: None,
        scheme: None,
        port: None,
        status: 200,
    });
    assert!(err(c).contains("not a 3xx"));

    let mut c = simple();
    c.outbound[0].virtual_hosts[0].routes[0].action = RouteAction::DirectResponse {
        status: 1000,
        body: None,
    };
    assert!(err(c).contains("not valid"));
}

#[test]
fn duplicates_are_rejected() {
    let mut c = simple();
    c.outbound[0]
        .virtual_hosts
        .push(vhost("b", &["A"], vec![route("r", vec![], forward("c"))]));
    assert!(err(c).contains("more than one virtual host"));

    let mut c = simple();
    c.clusters.push(cluster("c", &[]));
    assert!(err(c).contains("defined twice"));

    let mut c = simple();
    c.outbound.push(c.outbound[0].clone());
    assert!(err(c).contains("listed twice"));
}

#[test]
fn zero_weights_are_rejected() {
    let mut c = simple();
    if let RouteAction::Forward(f) = &mut c.outbound[0].virtual_hosts[0].routes[0].action {
        f.destinations[0].weight = 0;
    }
    assert!(err(c).contains("weight above 0"));
}

#[test]
fn unimplemented_things_warn() {
    let mut c = simple();
    c.node.kind = ProxyKind::Gateway;
    c.gateway.push(GatewayPort {
        tcp: vec![],
        tls: vec![],
        port: 443,
        protocol: Protocol::Https,
        gateways: vec!["ns/gw".to_owned()],
        virtual_hosts: vec![],
    });
    if let RouteAction::Forward(f) = &mut c.outbound[0].virtual_hosts[0].routes[0].action {
        f.retries = Some(RetryPolicy {
            attempts: 2,
            per_try_timeout: None,
            retry_on: vec!["5xx,made-up".to_owned()],
            backoff: None,
        });
    }
    c.clusters.push(cluster("empty", &[]));
    let s = Snapshot::compile("v", c).unwrap();
    let w = s.warnings().join("\n");
    assert!(w.contains("no TCP or TLS route is bound to it"), "{w}");
    assert!(w.contains("\"made-up\" is not implemented"), "{w}");
    assert!(w.contains("cluster empty has no endpoints"), "{w}");
    assert_eq!(s.served_gateway_ports().count(), 0);
}

#[test]
fn endpoint_state_survives_a_rebuild() {
    let registry = EndpointRegistry::default();
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let keys = crate::authn::JwksCache::new();
    let inputs = super::BuildInputs {
        registry: &registry,
        mesh: None,
        keys: &keys,
        credentials: None,
    };
    let a = Snapshot::build("1".into(), simple(), ip, &inputs).unwrap();
    let b = Snapshot::build("2".into(), simple(), ip, &inputs).unwrap();
    let ea = a.clusters[0].pick().unwrap();
    let eb = b.clusters[0].pick().unwrap();
    assert!(Arc::ptr_eq(ea, eb));
    drop((a, b));
    registry.prune();
}

#[test]
fn weighted_pick_follows_weights() {
    let mut c = simple();
    c.clusters.push(cluster("d", &["127.0.0.1:2"]));
    if let RouteAction::Forward(f) = &mut c.outbound[0].virtual_hosts[0].routes[0].action {
        f.destinations = vec![
            WeightedCluster {
                cluster: "c".into(),
                weight: 75,
            },
            WeightedCluster {
                cluster: "d".into(),
                weight: 25,
            },
        ];
    }
    let s = Snapshot::compile("v", c).unwrap();
    let table = &s.outbound_port(80).unwrap().http;
    let ActionRt::Forward(f) = &table.vhosts[0].routes[0].action else {
        panic!()
    };
    let mut counts = [0u32; 2];
    for _ in 0..4000 {
        counts[f.destinations.pick()] += 1;
    }
    // Binomial(4000, 0.25): mean 1000, sd ~27; 6 sd either side.
    assert!((840..1160).contains(&counts[1]), "{counts:?}");
}

#[test]
fn faults_attach_by_route_name_and_are_validated() {
    let fault = |status: u16, share: u32| Fault {
        delay: Some(FaultDelay {
            fixed_delay: Duration::from_millis(5),
            per_million: share,
        }),
        abort: Some(FaultAbort {
            grpc_status: None,
            http_status: status,
            per_million: share,
        }),
    };
    let mut c = simple();
    c.faults.insert("default".into(), fault(503, 500_000));
    c.faults.insert("ns/vs/9".into(), fault(503, 1));
    let s = Snapshot::compile("v", c).unwrap();
    let route = &s.outbound_port(80).unwrap().http.vhosts[0].routes[0];
    let f = route.fault.as_ref().unwrap();
    assert_eq!(f.abort.unwrap().1, 500_000);
    assert!(
        s.warnings().iter().any(|w| w.contains("ns/vs/9")),
        "{:?}",
        s.warnings()
    );

    let mut c = simple();
    c.faults.insert("default".into(), fault(503, 2_000_000));
    assert!(err(c).contains("over 1000000"));
    let mut c = simple();
    c.faults.insert("default".into(), fault(99, 1));
    assert!(err(c).contains("not in 200..=599"));
}
