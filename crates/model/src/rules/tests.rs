use proptest::prelude::*;

use crate::config::{LbPolicy, MtlsMode};
use crate::diagnostic::Code;
use crate::registry::Labels;
use crate::testing::{mesh, messages};

use super::virtual_service::{normalise_weights, resolve_gateway};
use super::*;

#[test]
fn weights_are_scaled_to_one_hundred() {
    assert_eq!(normalise_weights(&[90, 10]), [90, 10]);
    assert_eq!(normalise_weights(&[1, 1, 1]), [34, 33, 33]);
    assert_eq!(normalise_weights(&[3, 1]), [75, 25]);
    assert_eq!(normalise_weights(&[0, 0]), [50, 50]);
    assert_eq!(normalise_weights(&[100, 0]), [100, 0]);
    assert_eq!(normalise_weights(&[]), Vec::<u32>::new());
}

proptest! {
    #[test]
    fn normalised_weights_sum_to_100_and_keep_their_order(raw in proptest::collection::vec(0u32..1000, 1..8)) {
        let out = normalise_weights(&raw);
        prop_assert_eq!(out.iter().sum::<u32>(), 100);
        for i in 0..raw.len() {
            for j in 0..raw.len() {
                if raw[i] > raw[j] {
                    prop_assert!(out[i] >= out[j], "{:?} -> {:?}", raw, out);
                }
            }
        }
    }
}

#[test]
fn gateway_references_resolve_in_the_virtual_service_namespace() {
    assert_eq!(resolve_gateway("mesh", "prod"), "mesh");
    assert_eq!(
        resolve_gateway("frontend-gateway", "prod"),
        "prod/frontend-gateway"
    );
    assert_eq!(
        resolve_gateway("istio-system/ingress", "prod"),
        "istio-system/ingress"
    );
    assert_eq!(
        resolve_gateway("ingress.istio-system.svc.cluster.local", "prod"),
        "istio-system/ingress"
    );
}

#[test]
fn server_hosts_restrict_namespaces() {
    let any = ServerHost::parse("*", "gw");
    assert!(any.admits("anything"));
    let own = ServerHost::parse("./api.example.com", "gw");
    assert_eq!(own.namespace.as_deref(), Some("gw"));
    assert_eq!(own.host, "api.example.com");
    assert!(!own.admits("prod"));
    let prod = ServerHost::parse("prod/*", "gw");
    assert!(prod.admits("prod") && !prod.admits("dev"));
    assert!(ServerHost::parse("*/x.com", "gw").admits("dev"));
}

const DESTINATION_RULES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: svc}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: from-service-ns, namespace: svc}
spec:
  host: api
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    portLevelSettings:
    - port: {number: 80}
      loadBalancer: {simple: ROUND_ROBIN}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      connectionPool: {tcp: {connectTimeout: 2s}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: from-client-ns, namespace: client}
spec:
  host: api.svc.svc.cluster.local
  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mesh-default, namespace: istio-system}
spec:
  host: "*.svc.cluster.local"
  trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}
"#;

#[test]
fn destination_rules_are_chosen_by_namespace_precedence() {
    let mesh = mesh(DESTINATION_RULES);
    let rules = mesh.rules();
    let host = "api.svc.svc.cluster.local";
    let pick = |ns: &str| {
        rules
            .destination_rule(host, ns, &Labels::new(), "svc")
            .map(|d| d.resource.name.clone())
    };
    assert_eq!(pick("client").as_deref(), Some("from-client-ns"));
    assert_eq!(pick("svc").as_deref(), Some("from-service-ns"));
    assert_eq!(pick("other").as_deref(), Some("from-service-ns"));
    let only_root = rules.destination_rule(
        "x.other.svc.cluster.local",
        "other",
        &Labels::new(),
        "other",
    );
    assert_eq!(
        only_root.map(|d| d.resource.name.as_str()),
        Some("mesh-default")
    );
    // PASSTHROUGH is implemented: no warning for it.
    assert_eq!(
        messages(&mesh, Code::NotImplemented)
            .iter()
            .filter(|m| m.contains("PASSTHROUGH"))
            .count(),
        0
    );
}

#[test]
fn policies_layer_subset_over_port_over_rule() {
    let mesh = mesh(DESTINATION_RULES);
    let dr = mesh
        .rules()
        .destination_rule("api.svc.svc.cluster.local", "svc", &Labels::new(), "svc")
        .unwrap();
    let plain = dr.policy_for(80, None);
    assert_eq!(plain.lb(), Some(LbPolicy::RoundRobin));
    assert_eq!(dr.policy_for(81, None).lb(), Some(LbPolicy::Random));
    let v1 = dr.policy_for(80, dr.subset("v1"));
    assert_eq!(v1.lb(), Some(LbPolicy::RoundRobin));
    assert_eq!(
        v1.connect_timeout(),
        Some(std::time::Duration::from_secs(2))
    );
}

#[test]
fn exact_virtual_service_hosts_win_over_wildcards() {
    let mesh = mesh(
        r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: a}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: all-of-a, namespace: a}
spec:
  hosts: ["*.a.svc.cluster.local"]
  http: [{route: [{destination: {host: api}}], timeout: 1s}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: just-api, namespace: z}
spec:
  hosts: [api.a.svc.cluster.local]
  exportTo: [z]
  http: [{route: [{destination: {host: api.a.svc.cluster.local}}]}]
"#,
    );
    let rules = mesh.rules();
    let host = "api.a.svc.cluster.local";
    assert_eq!(
        rules.mesh_virtual_service(host, "z").unwrap().name,
        "just-api"
    );
    // Not exported to namespace a: the wildcard one applies there.
    assert_eq!(
        rules.mesh_virtual_service(host, "a").unwrap().name,
        "all-of-a"
    );
    assert!(
        rules
            .mesh_virtual_service("other.b.svc.cluster.local", "a")
            .is_none()
    );
}

#[test]
fn retries_follow_istio_defaults() {
    let mesh = mesh(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: a}
spec:
  hosts: [api]
  http:
  - route: [{destination: {host: api}}]
  - route: [{destination: {host: api}}]
    retries: {attempts: 0}
  - route: [{destination: {host: api}}]
    retries: {attempts: 5}
  - route: [{destination: {host: api}}]
    retries: {attempts: 1, retryOn: "503,reset"}
"#,
    );
    let vs = &mesh.rules().virtual_services()[0];
    let retries: Vec<Option<(u32, Vec<String>)>> = vs
        .http
        .iter()
        .map(|r| match &r.action {
            RuleAction::Forward { retries, .. } => {
                retries.as_ref().map(|p| (p.attempts, p.retry_on.clone()))
            }
            _ => unreachable!(),
        })
        .collect();
    let default_on = virtual_service::default_retries().retry_on;
    assert_eq!(retries[0], Some((2, default_on.clone())));
    assert_eq!(retries[1], None);
    assert_eq!(retries[2], Some((5, default_on)));
    assert_eq!(
        retries[3],
        Some((1, vec!["503".to_string(), "reset".to_string()]))
    );
}

#[test]
fn redirects_and_direct_responses_translate() {
    let mesh = mesh(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: a}
spec:
  hosts: [api]
  http:
  - name: old-path
    match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: example.com, redirectCode: 308}
  - match: [{uri: {exact: /ping}}]
    directResponse: {status: 200, body: {string: pong}}
  - directResponse: {status: 503, body: {bytes: "bm8gd2F5"}}
"#,
    );
    let vs = &mesh.rules().virtual_services()[0];
    assert_eq!(vs.http[0].name, "a/r/old-path");
    match &vs.http[0].action {
        RuleAction::Redirect(r) => {
            assert_eq!(
                (r.uri.as_deref(), r.authority.as_deref(), r.status),
                (Some("/new"), Some("example.com"), 308)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(vs.http[1].name, "a/r/1");
    assert_eq!(
        vs.http[1].action,
        RuleAction::DirectResponse {
            status: 200,
            body: Some("pong".into())
        }
    );
    assert_eq!(
        vs.http[2].action,
        RuleAction::DirectResponse {
            status: 503,
            body: Some("no way".into())
        }
    );
}

#[test]
fn peer_authentication_precedence() {
    let mesh = mesh(
        r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ignored, namespace: istio-system}
spec:
  selector: {matchLabels: {app: db}}
  mtls: {mode: DISABLE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: data}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: second, namespace: data}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: db, namespace: data}
spec:
  selector: {matchLabels: {app: db}}
  portLevelMtls: {5432: {mode: DISABLE}, 9000: {mode: UNSET}}
"#,
    );
    let policies = mesh.rules().policies();
    let db = Labels::from([("app".to_string(), "db".to_string())]);
    let p = policies.for_workload("data", &db);
    assert_eq!(p.mtls.mode, MtlsMode::Strict);
    assert_eq!(p.mtls.from, ["data/db", "data/default"]);
    assert_eq!(p.mtls.ports.get(&5432), Some(&MtlsMode::Disable));
    assert_eq!(p.mtls.ports.get(&9000), Some(&MtlsMode::Strict));
    let other = policies.for_workload("web", &db);
    assert_eq!(other.mtls.mode, MtlsMode::Permissive);
    assert_eq!(other.mtls.from, ["istio-system/default"]);
    let conflicts = messages(&mesh, Code::ConflictingPolicies);
    assert_eq!(conflicts.len(), 2, "{conflicts:#?}");
    assert!(
        conflicts
            .iter()
            .any(|m| m.contains("root namespace is ignored"))
    );
}
