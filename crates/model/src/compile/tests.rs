use crate::config::{Protocol, ProxyConfig, RouteAction};
use crate::testing::mesh;

use super::outbound::port_protocol;

fn clusters(config: &ProxyConfig) -> Vec<&str> {
    config.clusters.iter().map(|c| c.name.as_str()).collect()
}

fn route_clusters(config: &ProxyConfig, port: u16, vhost: &str) -> Vec<Vec<(String, u32)>> {
    let p = config.outbound.iter().find(|p| p.port == port).unwrap();
    let vh = p.virtual_hosts.iter().find(|v| v.name == vhost).unwrap();
    vh.routes
        .iter()
        .map(|r| match &r.action {
            RouteAction::Forward(f) => f
                .destinations
                .iter()
                .map(|d| (d.cluster.clone(), d.weight))
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn shared_ports_pick_one_protocol() {
    use Protocol::*;
    assert_eq!(port_protocol(&[Http, Http]), Http);
    assert_eq!(port_protocol(&[Http, Tcp]), Http);
    assert_eq!(port_protocol(&[Tcp, Grpc]), Grpc);
    assert_eq!(port_protocol(&[Http, Http2]), Http);
    assert_eq!(port_protocol(&[Http, Unspecified]), Unspecified);
    assert_eq!(port_protocol(&[Tcp, Tls]), Tcp);
    assert_eq!(port_protocol(&[Tcp, Unspecified]), Unspecified);
}

const MESH: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: a}
spec:
  selector: {app: api}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: http-admin, port: 9000}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: b}
spec:
  selector: {app: db}
  ports: [{name: tcp-pg, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: cache, namespace: b}
spec:
  selector: {app: cache}
  ports: [{port: 6379}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api-1, namespace: a}
spec: {address: 10.0.0.1, labels: {app: api}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-1, namespace: b}
spec: {address: 10.0.0.2, labels: {app: db}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: cache-1
  namespace: b
  annotations: {sidecar.istio.io/inject: "false"}
spec: {address: 10.0.0.3, labels: {app: cache}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client, namespace: b}
spec: {address: 10.0.0.4, labels: {app: client, team: red}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: a}
spec:
  hosts: [api]
  http:
  - name: red-team
    match: [{sourceLabels: {team: red}}]
    route: [{destination: {host: api, port: {number: 9000}}}]
  - name: admin-port
    match: [{port: 9000, uri: {prefix: /admin}}]
    directResponse: {status: 403}
  - name: rest
    route: [{destination: {host: api}}]
"#;

#[test]
fn tcp_and_detected_ports_get_tcp_routes_with_domains() {
    let mesh = mesh(MESH);
    let config = mesh.compile("client.b").unwrap();
    let pg = config.outbound.iter().find(|p| p.port == 5432).unwrap();
    assert_eq!(pg.protocol, Protocol::Tcp);
    assert!(pg.virtual_hosts.is_empty());
    assert_eq!(pg.tcp.len(), 1);
    assert_eq!(
        pg.tcp[0].destinations[0].cluster,
        "outbound|5432||db.b.svc.cluster.local"
    );
    assert!(
        pg.tcp[0].domains.iter().any(|d| d == "db:5432"),
        "{:?}",
        pg.tcp[0].domains
    );
    // An unnamed port: both HTTP (if detected) and TCP routes.
    let redis = config.outbound.iter().find(|p| p.port == 6379).unwrap();
    assert_eq!(redis.protocol, Protocol::Unspecified);
    assert_eq!(redis.virtual_hosts.len(), 1);
    assert_eq!(redis.tcp.len(), 1);
    // The cache has no sidecar: the caller connects to it directly.
    let cache = config
        .clusters
        .iter()
        .find(|c| c.name == "outbound|6379||cache.b.svc.cluster.local")
        .unwrap();
    assert_eq!(cache.endpoints[0].proxy_port, None);
    let db = config
        .clusters
        .iter()
        .find(|c| c.name == "outbound|5432||db.b.svc.cluster.local")
        .unwrap();
    assert_eq!(db.endpoints[0].proxy_port, Some(15006));
}

#[test]
fn source_labels_and_ports_select_rules_per_proxy_and_port() {
    let mesh = mesh(MESH);
    let api80 = "api.a.svc.cluster.local:80";
    let api9000 = "api.a.svc.cluster.local:9000";
    // The red-team client gets the red-team rule first; its destination names port 9000.
    let red = mesh.compile("client.b").unwrap();
    assert_eq!(
        route_clusters(&red, 80, api80),
        [
            vec![("outbound|9000||api.a.svc.cluster.local".to_string(), 100)],
            vec![("outbound|80||api.a.svc.cluster.local".to_string(), 100)],
        ]
    );
    // Other proxies skip it; the admin rule exists only on port 9000, and the
    // destination without a port goes to the request's port there.
    let other = mesh.compile("db-1.b").unwrap();
    assert_eq!(
        route_clusters(&other, 80, api80),
        [vec![(
            "outbound|80||api.a.svc.cluster.local".to_string(),
            100
        )]]
    );
    let on_9000 = route_clusters(&other, 9000, api9000);
    assert_eq!(
        on_9000,
        [
            vec![],
            vec![("outbound|9000||api.a.svc.cluster.local".to_string(), 100)]
        ]
    );
    let names: Vec<&str> = other
        .outbound
        .iter()
        .find(|p| p.port == 9000)
        .unwrap()
        .virtual_hosts[0]
        .routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["a/api/admin-port", "a/api/rest"]);
}

#[test]
fn the_short_name_is_a_domain_only_in_the_same_namespace() {
    let mesh = mesh(MESH);
    let from_b = mesh.compile("client.b").unwrap();
    let db = from_b.outbound.iter().find(|p| p.port == 5432).unwrap();
    assert!(db.tcp[0].domains.contains(&"db".to_string()));
    let from_a = mesh.compile("api-1.a").unwrap();
    let db = from_a.outbound.iter().find(|p| p.port == 5432).unwrap();
    assert!(!db.tcp[0].domains.contains(&"db".to_string()));
    assert!(db.tcp[0].domains.contains(&"db.b".to_string()));
}

#[test]
fn a_sidecar_resource_narrows_the_services_and_clusters() {
    let scoped = format!(
        "{MESH}---\n{}",
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: b}
spec:
  egress:
  - port: {number: 80}
    hosts: ["a/*"]
  - hosts: ["./db.b.svc.cluster.local"]
"#
    );
    let mesh = mesh(&scoped);
    let config = mesh.compile("client.b").unwrap();
    let ports: Vec<u16> = config.outbound.iter().map(|p| p.port).collect();
    assert_eq!(ports, [80, 5432]);
    assert_eq!(
        clusters(&config),
        [
            "outbound|5432||db.b.svc.cluster.local",
            "outbound|80||api.a.svc.cluster.local",
            "outbound|9000||api.a.svc.cluster.local",
        ]
    );
    // Namespace a has no Sidecar: it sees everything.
    let unscoped = mesh.compile("api-1.a").unwrap();
    assert_eq!(unscoped.outbound.len(), 4);
}

#[test]
fn gateway_routes_of_two_virtual_services_for_one_host_are_combined() {
    let mesh = mesh(
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: edge}
spec:
  selector: {istio: ingress}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*.example.com"]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ingress, namespace: edge}
spec: {address: 10.0.0.9, labels: {istio: ingress}}
---
apiVersion: v1
kind: Service
metadata: {name: ingress, namespace: edge}
spec:
  selector: {istio: ingress}
  ports: [{name: http, port: 80}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: caller, namespace: edge}
spec: {address: 10.0.0.8, labels: {app: caller}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: one, namespace: edge}
spec:
  hosts: [www.example.com]
  gateways: [gw]
  http: [{match: [{uri: {prefix: /a}}], directResponse: {status: 200}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: two, namespace: edge}
spec:
  hosts: [www.example.com, other.org]
  gateways: [edge/gw]
  http: [{directResponse: {status: 404}}]
"#,
    );
    let config = mesh.compile("ingress.edge").unwrap();
    assert_eq!(config.gateway.len(), 1);
    let vhosts = &config.gateway[0].virtual_hosts;
    assert_eq!(vhosts.len(), 1, "other.org is not served by the gateway");
    let names: Vec<&str> = vhosts[0].routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["edge/one/0", "edge/two/0"]);
    assert!(config.clusters.is_empty());
    // A gateway has no inbound sidecar listener: callers reach it directly.
    let caller = mesh.compile("caller.edge").unwrap();
    let ingress = caller
        .clusters
        .iter()
        .find(|c| c.name == "outbound|80||ingress.edge.svc.cluster.local")
        .unwrap();
    assert_eq!(ingress.endpoints[0].address.to_string(), "10.0.0.9:80");
    assert_eq!(ingress.endpoints[0].proxy_port, None);
    let mismatch = crate::testing::messages(&mesh, crate::diagnostic::Code::GatewayHostMismatch);
    assert!(mismatch.is_empty(), "{mismatch:?}");
}

const FAULTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: a}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api-1, namespace: a}
spec: {address: 10.0.0.1, labels: {app: api}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: a}
spec:
  hosts: [api]
  http:
  - name: slow
    match: [{headers: {x-slow: {exact: "1"}}}]
    fault:
      delay: {fixedDelay: 1.5s, percentage: {value: 12.5}}
      abort: {httpStatus: 503}
    route: [{destination: {host: api}}]
  - name: slow
    match: [{uri: {prefix: /legacy}}]
    fault:
      delay: {fixedDelay: 2s, percent: 30}
    route: [{destination: {host: api}}]
  - fault:
      abort: {httpStatus: 418, percentage: {value: 100}}
    route: [{destination: {host: api}}]
"#;

#[test]
fn faults_are_keyed_by_unique_route_names_with_istio_percentages() {
    use std::time::Duration;

    use crate::config::{Fault, FaultAbort, FaultDelay};

    let mesh = mesh(FAULTS);
    let config = mesh.compile("api-1.a").unwrap();
    let names: Vec<&str> = config.outbound[0].virtual_hosts[0]
        .routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["a/api/slow", "a/api/slow#1", "a/api/2"]);
    let faults: Vec<(&str, &Fault)> = config.faults.iter().map(|(k, v)| (k.as_str(), v)).collect();
    assert_eq!(
        faults,
        [
            (
                "a/api/2",
                &Fault {
                    delay: None,
                    abort: Some(FaultAbort {
                        grpc_status: None,
                        http_status: 418,
                        per_million: 1_000_000
                    }),
                }
            ),
            (
                "a/api/slow",
                // An abort without a percentage aborts nothing, as in Istio.
                &Fault {
                    delay: Some(FaultDelay {
                        fixed_delay: Duration::from_millis(1500),
                        per_million: 125_000
                    }),
                    abort: None,
                }
            ),
            (
                "a/api/slow#1",
                // The deprecated integer `percent`.
                &Fault {
                    delay: Some(FaultDelay {
                        fixed_delay: Duration::from_secs(2),
                        per_million: 300_000
                    }),
                    abort: None,
                }
            ),
        ]
    );
    let dup: Vec<_> = mesh
        .diagnostics()
        .iter()
        .filter(|f| f.code == crate::diagnostic::Code::DuplicateRouteName)
        .collect();
    assert_eq!(dup.len(), 1, "{dup:?}");
    assert_eq!(dup[0].field.as_deref(), Some("spec.http[1].name"));
}

const LOCALITIES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: a}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: near, namespace: a}
spec: {address: 10.0.0.1, labels: {app: api}, locality: r1/z1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: zone, namespace: a}
spec: {address: 10.0.0.2, labels: {app: api}, locality: r1/z2}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: far, namespace: a}
spec:
  address: 10.0.0.3
  labels: {app: api, topology.kubernetes.io/region: r2, topology.kubernetes.io/zone: z1}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client, namespace: a}
spec: {address: 10.0.0.9, labels: {app: client}, locality: r1/z1}
"#;

/// `(workload, locality, priority)` of the endpoints of `api`'s cluster for `client`.
fn api_endpoints(dr: &str) -> (Vec<(String, String, u32)>, bool) {
    let mesh = mesh(&format!("{LOCALITIES}---\n{dr}"));
    let config = mesh.compile("client.a").unwrap();
    assert_eq!(config.node.locality, "r1/z1");
    let c = config
        .clusters
        .iter()
        .find(|c| c.name == "outbound|80||api.a.svc.cluster.local")
        .unwrap();
    let eps = c
        .endpoints
        .iter()
        .map(|e| (e.workload.clone(), e.locality.clone(), e.priority))
        .collect();
    (eps, c.traffic.locality_weighted.is_some())
}

#[test]
fn endpoints_get_locality_priorities_only_under_outlier_detection() {
    let with = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: a}
spec:
  host: api
  trafficPolicy: {outlierDetection: {consecutive5xxErrors: 1}}
"#;
    let (eps, weighted) = api_endpoints(with);
    let want = |p: [u32; 3]| {
        vec![
            ("near.a".to_string(), "r1/z1".to_string(), p[0]),
            ("zone.a".to_string(), "r1/z2".to_string(), p[1]),
            ("far.a".to_string(), "r2/z1".to_string(), p[2]),
        ]
    };
    assert_eq!(eps, want([0, 1, 2]));
    assert!(!weighted);
    let without = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: a}
spec:
  host: api
  trafficPolicy: {loadBalancer: {localityLbSetting: {failover: [{from: r1, to: r2}]}}}
"#;
    assert_eq!(api_endpoints(without).0, want([0, 0, 0]));
    let off = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: a}
spec:
  host: api
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1}
    loadBalancer: {localityLbSetting: {enabled: false}}
"#;
    assert_eq!(api_endpoints(off).0, want([0, 0, 0]));
    let distribute = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: a}
spec:
  host: api
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute: [{from: "r1/*", to: {"r1/z2": 70, "r2/*": 30}}]
"#;
    let (eps, weighted) = api_endpoints(distribute);
    assert!(weighted);
    assert_eq!(
        eps,
        vec![
            ("zone.a".to_string(), "r1/z2".to_string(), 0),
            ("far.a".to_string(), "r2/z1".to_string(), 0),
        ]
    );
}

#[test]
fn the_mesh_locality_setting_applies_where_no_rule_sets_one() {
    let of = |setting: &str, dr: &str| {
        let yaml = format!("{LOCALITIES}---\n{dr}");
        let loaded = skiff_api::load_str("test.yaml", &yaml);
        let (mesh_config, _) = skiff_api::mesh_config::parse(setting).unwrap();
        let options = crate::MeshOptions {
            locality_lb: mesh_config
                .locality_lb_setting
                .unwrap_or_else(crate::locality::mesh_default),
            ..crate::MeshOptions::default()
        };
        let mesh = crate::Mesh::build(&loaded.resources, options);
        let config = mesh.compile("client.a").unwrap();
        let c = config
            .clusters
            .iter()
            .find(|c| c.name == "outbound|80||api.a.svc.cluster.local")
            .unwrap()
            .clone();
        let eps: Vec<(String, u32)> = c
            .endpoints
            .iter()
            .map(|e| (e.workload.clone(), e.priority))
            .collect();
        (eps, c.traffic.locality_weighted.is_some())
    };
    let outlier = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: a}
spec:
  host: api
  trafficPolicy: {outlierDetection: {consecutive5xxErrors: 1}}
"#;
    let prioritized = vec![
        ("near.a".to_string(), 0),
        ("zone.a".to_string(), 1),
        ("far.a".to_string(), 2),
    ];
    // Not written: Istio's default, on.
    assert_eq!(of("", outlier).0, prioritized);
    // Turned off for the mesh: no priorities, though the rule has outlier detection.
    let off = "localityLbSetting: {enabled: false}\n";
    assert!(of(off, outlier).0.iter().all(|(_, p)| *p == 0));
    // A rule's own setting wins over the mesh's.
    let rule_on = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: a}
spec:
  host: api
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1}
    loadBalancer: {localityLbSetting: {enabled: true}}
"#;
    assert_eq!(of(off, rule_on).0, prioritized);
    // The mesh's distribute, with no DestinationRule at all.
    let distribute =
        "localityLbSetting:\n  distribute:\n  - from: r1/*\n    to: {r1/z2: 70, r2/*: 30}\n";
    let (eps, weighted) = of(distribute, "");
    assert!(weighted);
    assert_eq!(
        eps,
        vec![("zone.a".to_string(), 0), ("far.a".to_string(), 0)]
    );
}
