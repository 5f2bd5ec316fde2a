use crate::config::{OutboundPort, ProxyConfig, TcpRoute};
use crate::testing::mesh;

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: b}
spec:
  selector: {app: db}
  ports: [{name: tcp-pg, port: 5432}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: b}
spec:
  host: db
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: b}
spec:
  hosts: [api.example.com, web.example.org]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-1, namespace: b}
spec: {address: 10.0.0.2, labels: {app: db, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-2, namespace: b}
spec: {address: 10.0.0.3, labels: {app: db, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: red, namespace: b}
spec: {address: 10.0.0.4, labels: {app: client, team: red}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: blue, namespace: b}
spec: {address: 10.0.0.5, labels: {app: client, team: blue}}
"#;

fn port(config: &ProxyConfig, port: u16) -> &OutboundPort {
    config.outbound.iter().find(|p| p.port == port).unwrap()
}

fn summary(routes: &[TcpRoute]) -> Vec<(String, Vec<(String, u32)>)> {
    routes
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                r.destinations
                    .iter()
                    .map(|d| (d.cluster.clone(), d.weight))
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn tcp_rules_apply_per_source_with_subnets_at_runtime_and_the_service_last() {
    let yaml = format!(
        "{SERVICES}---\n{}",
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: b}
spec:
  hosts: [db]
  tcp:
  - match: [{sourceLabels: {team: red}}]
    route:
    - {destination: {host: db, subset: v2}}
  - match: [{destinationSubnets: [10.9.0.0/16]}, {port: 9999}]
    route:
    - {destination: {host: db, subset: v1}, weight: 75}
    - {destination: {host: db, subset: v2}, weight: 25}
"#
    );
    let mesh = mesh(&yaml);
    // Red: the first rule takes everything; nothing after it.
    let red = mesh.compile("red.b").unwrap();
    let pg = port(&red, 5432);
    assert_eq!(
        summary(&pg.tcp),
        vec![(
            "b/db/tcp/0".to_string(),
            vec![("outbound|5432|v2|db.b.svc.cluster.local".to_string(), 100)]
        )]
    );
    assert!(pg.tcp[0].matches.is_empty());
    assert!(pg.tcp[0].domains.iter().any(|d| d == "db:5432"));
    // Blue: the subnet alternative at runtime (the port 9999 one never applies on 5432),
    // then the service itself.
    let blue = mesh.compile("blue.b").unwrap();
    let pg = port(&blue, 5432);
    assert_eq!(
        summary(&pg.tcp),
        vec![
            (
                "b/db/tcp/1".to_string(),
                vec![
                    ("outbound|5432|v1|db.b.svc.cluster.local".to_string(), 75),
                    ("outbound|5432|v2|db.b.svc.cluster.local".to_string(), 25)
                ]
            ),
            (
                "db.b.svc.cluster.local:5432".to_string(),
                vec![("outbound|5432||db.b.svc.cluster.local".to_string(), 100)]
            ),
        ]
    );
    assert_eq!(pg.tcp[0].matches.len(), 1);
    assert_eq!(pg.tcp[0].matches[0].destination_subnets, ["10.9.0.0/16"]);
    let v2 = blue
        .clusters
        .iter()
        .find(|c| c.name == "outbound|5432|v2|db.b.svc.cluster.local")
        .unwrap();
    assert_eq!(v2.endpoints.len(), 1, "the subset's endpoints");
}

#[test]
fn tls_rules_match_by_sni_and_replace_the_service_route() {
    let yaml = format!(
        "{SERVICES}---\n{}",
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ext, namespace: b}
spec:
  hosts: [api.example.com]
  tls:
  - match: [{sniHosts: [API.example.com], sourceLabels: {team: red}}]
    route: [{destination: {host: api.example.com}}]
  - match: [{sniHosts: [api.example.com]}]
    route: [{destination: {host: web.example.org}}]
"#
    );
    let mesh = mesh(&yaml);
    let red = mesh.compile("red.b").unwrap();
    let tls = &port(&red, 443).tcp;
    // The second alternative has the same runtime match as the first: unreachable, left out.
    assert_eq!(tls.len(), 2, "{:?}", summary(tls));
    assert_eq!(tls[0].name, "b/ext/tls/0");
    assert_eq!(tls[0].matches[0].sni_hosts, ["api.example.com"]);
    // web.example.org has no VirtualService: its own route, by name.
    assert!(tls[1].matches.is_empty());
    assert!(tls[1].domains.iter().any(|d| d == "web.example.org"));
    let blue = mesh.compile("blue.b").unwrap();
    let tls = &port(&blue, 443).tcp;
    assert_eq!(tls[0].name, "b/ext/tls/1");
    assert_eq!(
        tls[0].destinations[0].cluster,
        "outbound|443||web.example.org"
    );
}

#[test]
fn gateway_passthrough_narrows_sni_to_the_server_hosts_and_tcp_servers_take_tcp_rules() {
    let yaml = format!(
        "{SERVICES}---\n{}",
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: b}
spec:
  selector: {istio: ingress}
  servers:
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ["*.example.com"]
    tls: {mode: PASSTHROUGH}
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ingress, namespace: b}
spec: {address: 10.0.0.9, labels: {istio: ingress}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge, namespace: b}
spec:
  hosts: ["*"]
  gateways: [gw]
  tls:
  - match: [{sniHosts: ["*"], port: 443}]
    route: [{destination: {host: api.example.com, port: {number: 443}}}]
  tcp:
  - match: [{port: 31400}]
    route: [{destination: {host: db, port: {number: 5432}}}]
"#
    );
    let mesh = mesh(&yaml);
    let (config, findings) = (mesh.compile("ingress.b").unwrap(), mesh.diagnostics());
    let tls = config.gateway.iter().find(|p| p.port == 443).unwrap();
    assert_eq!(tls.tcp.len(), 1);
    assert_eq!(tls.tcp[0].matches[0].sni_hosts, ["*.example.com"]);
    assert!(tls.tcp[0].domains.is_empty());
    let tcp = config.gateway.iter().find(|p| p.port == 31400).unwrap();
    assert_eq!(
        summary(&tcp.tcp),
        vec![(
            "b/edge/tcp/0".to_string(),
            vec![("outbound|5432||db.b.svc.cluster.local".to_string(), 100)]
        )]
    );
    assert!(
        !findings.iter().any(|f| f.message.contains("not routed")),
        "{findings:?}"
    );
}

#[test]
fn gateway_tls_termination_and_https_redirect() {
    use crate::config::{RouteAction, ServerTlsMode};
    let yaml = format!(
        "{SERVICES}---\n{}",
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: b}
spec:
  selector: {istio: ingress}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [shop.example.com]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [b/shop.example.com]
    tls: {mode: MUTUAL, credentialName: shop-cred, minProtocolVersion: TLSV1_3}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ingress, namespace: b}
spec: {address: 10.0.0.9, labels: {istio: ingress}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: b}
spec:
  hosts: [shop.example.com]
  gateways: [gw]
  http: [{route: [{destination: {host: db}}]}]
"#
    );
    let mesh = mesh(&yaml);
    let config = mesh.compile("ingress.b").unwrap();
    let http = config.gateway.iter().find(|p| p.port == 80).unwrap();
    assert_eq!(http.virtual_hosts.len(), 1);
    let route = &http.virtual_hosts[0].routes[..];
    assert_eq!(route.len(), 1, "every request is redirected");
    match &route[0].action {
        RouteAction::Redirect(r) => {
            assert_eq!((r.scheme.as_deref(), r.status), (Some("https"), 301));
        }
        other => panic!("{other:?}"),
    }
    let https = config.gateway.iter().find(|p| p.port == 443).unwrap();
    assert_eq!(https.tls.len(), 1);
    let tls = &https.tls[0];
    assert_eq!(tls.hosts, ["shop.example.com"]);
    assert_eq!(tls.mode, ServerTlsMode::Mutual);
    assert_eq!(tls.credential_name.as_deref(), Some("shop-cred"));
    assert_eq!(tls.min_protocol_version.as_deref(), Some("TLSV1_3"));
    assert_eq!(https.virtual_hosts.len(), 1, "the VirtualService's routes");
    assert!(
        !mesh
            .diagnostics()
            .iter()
            .any(|d| d.message.contains("not routed")),
        "{:?}",
        mesh.diagnostics()
    );
}

#[test]
fn outbound_traffic_policy_is_allow_any_unless_a_sidecar_says_registry_only() {
    use crate::config::OutboundTrafficPolicy;
    let mesh_default = mesh(SERVICES);
    let red = mesh_default.compile("red.b").unwrap();
    assert_eq!(red.outbound_traffic_policy, OutboundTrafficPolicy::AllowAny);
    let yaml = format!(
        "{SERVICES}---\n{}",
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: b}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"#
    );
    let locked = mesh(&yaml);
    let red = locked.compile("red.b").unwrap();
    assert_eq!(
        red.outbound_traffic_policy,
        OutboundTrafficPolicy::RegistryOnly
    );
    assert!(
        !locked
            .diagnostics()
            .iter()
            .any(|d| d.message.contains("outboundTrafficPolicy")),
        "{:?}",
        locked.diagnostics()
    );
}
