//! Each code: a fixture that triggers it and a near miss that must not.

use super::{Level, Message, analyze, codes};
use crate::MeshOptions;

/// A namespace `prod` with a Service `backend` (v1 and v2) and a workload `frontend`.
const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: prod}
spec:
  selector: {app: backend}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: backend-v1, namespace: prod}
spec: {address: 127.0.10.11, serviceAccount: backend, labels: {app: backend, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: backend-v2, namespace: prod}
spec: {address: 127.0.10.12, serviceAccount: backend, labels: {app: backend, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: frontend, namespace: prod}
spec: {address: 127.0.10.13, serviceAccount: frontend, labels: {app: frontend}}
"#;

const DR: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: backend, namespace: prod}
spec:
  host: backend
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"#;

/// A VirtualService of namespace prod for `backend` with these `http` rules.
fn vs(http: &str) -> String {
    format!(
        "\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: \
         backend, namespace: prod}}\nspec:\n  hosts: [backend]\n  http:\n{http}\n"
    )
}

const BOTH_SUBSETS: &str = "  - route:\n    - {destination: {host: backend, subset: v1}, weight: 90}\n    - {destination: {host: backend, subset: v2}, weight: 10}";

fn run(yaml: &str) -> Vec<Message> {
    let loaded = skiff_api::load_str("test.yaml", yaml);
    let errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "load errors:\n{}", errors.join("\n"));
    analyze(&loaded, MeshOptions::default())
}

fn with(yaml: &str, code: &str) -> Vec<Message> {
    run(yaml).into_iter().filter(|m| m.code == code).collect()
}

#[track_caller]
fn one(yaml: &str, code: &str) -> Message {
    let found = with(yaml, code);
    assert_eq!(found.len(), 1, "{code}: {found:#?}\nall: {:#?}", run(yaml));
    found.into_iter().next().unwrap()
}

#[track_caller]
fn none(yaml: &str, code: &str) {
    let found = with(yaml, code);
    assert!(found.is_empty(), "{code}: {found:#?}");
}

#[test]
fn the_base_fixture_is_clean() {
    let all = run(&format!("{BASE}{DR}{}", vs(BOTH_SUBSETS)));
    assert!(all.is_empty(), "{all:#?}");
}

#[test]
fn ist0101_referenced_host_not_found() {
    let yaml = format!(
        "{BASE}{}",
        vs("  - route:\n    - destination: {host: backedn}")
    );
    let m = one(&yaml, "IST0101");
    assert_eq!(m.level, Level::Error);
    assert_eq!(m.name, "ReferencedResourceNotFound");
    assert_eq!(
        m.message,
        "Referenced host not found: \"backedn.prod.svc.cluster.local\""
    );
    assert!(m.fix.as_deref().unwrap().contains("503"), "{m:?}");
    let r = m.resource.as_ref().unwrap();
    assert_eq!(
        (r.kind.as_str(), r.namespace.as_str()),
        ("VirtualService", "prod")
    );
    assert!(
        m.line()
            .starts_with("Error [IST0101] (VirtualService prod/backend test.yaml:")
    );
    none(
        &format!(
            "{BASE}{}",
            vs("  - route:\n    - destination: {host: backend}")
        ),
        "IST0101",
    );
}

/// A VirtualService's routes are used by the proxies of the namespaces it is exported
/// to: a destination those cannot see is IST0101, as Istio's DestinationHostAnalyzer
/// resolves it through the VirtualService's `exportTo`.
#[test]
fn ist0101_destination_not_visible_where_the_virtual_service_is_exported() {
    let private = BASE.replace(
        "metadata: {name: backend, namespace: prod}\nspec:\n  selector",
        "metadata: {name: backend, namespace: prod, annotations: {networking.istio.io/exportTo: \".\"}}\nspec:\n  selector",
    );
    assert_ne!(private, BASE);
    let route = vs("  - route:\n    - destination: {host: backend}");
    let exported = route.replace(
        "  hosts: [backend]",
        "  exportTo: [dev]\n  hosts: [backend]",
    );
    let m = one(&format!("{private}{exported}"), "IST0101");
    assert_eq!(
        m.message,
        "Referenced host not found: \"backend.prod.svc.cluster.local\""
    );
    assert!(
        m.fix.as_deref().unwrap().contains("exported to (dev)"),
        "{m:?}"
    );
    // Near misses: exported to its own namespace too, or the service visible everywhere.
    let also_here = route.replace(
        "  hosts: [backend]",
        "  exportTo: [dev, .]\n  hosts: [backend]",
    );
    none(&format!("{private}{also_here}"), "IST0101");
    none(&format!("{BASE}{exported}"), "IST0101");
}

#[test]
fn ist0101_subset_no_destination_rule_defines() {
    let yaml = format!("{BASE}{}", vs(BOTH_SUBSETS));
    let found = with(&yaml, "IST0101");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].message.contains("host+subset in destinationrule"));
    none(&format!("{BASE}{DR}{}", vs(BOTH_SUBSETS)), "IST0101");
}

#[test]
fn ist0118_port_not_named_by_protocol() {
    let unnamed = BASE.replace("name: http, port: 80", "name: web, port: 80");
    let m = one(&unnamed, "IST0118");
    assert_eq!(m.level, Level::Info);
    assert_eq!(
        m.message,
        "Port name web (port: 80, targetPort: 8080) doesn't follow the naming convention of Istio port."
    );
    assert!(m.fix.as_deref().unwrap().contains("http-web"));
    none(BASE, "IST0118");
    let app_protocol = BASE.replace(
        "name: http, port: 80",
        "name: web, appProtocol: http, port: 80",
    );
    none(&app_protocol, "IST0118");
}

#[test]
fn ist0173_subset_labels_select_no_workload() {
    let yaml = format!("{BASE}{}", DR.replace("version: v2", "version: v3"));
    let m = one(&yaml, "IST0173");
    assert!(
        m.message
            .starts_with("The Subset v2 defined in the DestinationRule"),
        "{m:?}"
    );
    none(&format!("{BASE}{DR}"), "IST0173");
}

#[test]
fn ist0174_destination_rule_host_matches_no_service() {
    let yaml = format!("{BASE}{}", DR.replace("host: backend", "host: backedn"));
    one(&yaml, "IST0174");
    none(&format!("{BASE}{DR}"), "IST0174");
}

#[test]
fn ist0130_ist0131_unreachable_rules() {
    let rules = "  - route:\n    - destination: {host: backend}\n  - match: [{uri: {prefix: /a}}]\n    route:\n    - destination: {host: backend}";
    let m = one(&format!("{BASE}{}", vs(rules)), "IST0130");
    assert_eq!(
        m.message,
        "VirtualService rule #1 not used (route without matches defined before)."
    );
    let dup = "  - match: [{uri: {prefix: /a}}]\n    route:\n    - destination: {host: backend}\n  - match: [{uri: {prefix: /a}}, {uri: {prefix: /b}}]\n    route:\n    - destination: {host: backend}";
    let m = one(&format!("{BASE}{}", vs(dup)), "IST0131");
    assert_eq!(m.level, Level::Info);
    none(&format!("{BASE}{}", vs(dup)), "IST0130");
    let overlap = "  - match: [{uri: {prefix: /a}}]\n    route:\n    - destination: {host: backend}\n  - match: [{uri: {prefix: /ab}}]\n    route:\n    - destination: {host: backend}";
    one(&format!("{BASE}{}", vs(overlap)), "IST0131");
    let longer_first = "  - match: [{uri: {prefix: /ab}}]\n    route:\n    - destination: {host: backend}\n  - match: [{uri: {prefix: /a}}]\n    route:\n    - destination: {host: backend}";
    none(&format!("{BASE}{}", vs(longer_first)), "IST0131");
}

#[test]
fn ist0109_conflicting_mesh_virtual_services() {
    let other = vs("  - route:\n    - destination: {host: backend}")
        .replace("name: backend, namespace", "name: backend-2, namespace");
    let yaml = format!(
        "{BASE}{}{other}",
        vs("  - route:\n    - destination: {host: backend}")
    );
    let found = with(&yaml, "IST0109");
    assert_eq!(found.len(), 2, "{found:#?}");
    none(
        &format!(
            "{BASE}{}",
            vs("  - route:\n    - destination: {host: backend}")
        ),
        "IST0109",
    );
}

#[test]
fn ist0127_authorization_policy_selects_nothing() {
    let ap = "\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: prod}\nspec:\n  selector: {matchLabels: {app: backedn}}\n  rules: [{}]\n";
    one(&format!("{BASE}{ap}"), "IST0127");
    none(
        &format!("{BASE}{}", ap.replace("backedn", "backend")),
        "IST0127",
    );
}

#[test]
fn skf0002_strict_mtls_with_a_client_without_sidecar() {
    let strict = "\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: prod}\nspec: {mtls: {mode: STRICT}}\n";
    let legacy = "\n---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: legacy, namespace: old, annotations: {sidecar.istio.io/inject: \"false\"}}\nspec: {address: 127.0.10.20, labels: {app: legacy}}\n";
    let m = one(&format!("{BASE}{strict}{legacy}"), "SKF0002");
    assert!(m.message.contains("legacy.old"), "{m:?}");
    assert!(m.fix.as_deref().unwrap().contains("PERMISSIVE"));
    none(&format!("{BASE}{strict}"), "SKF0002");
    none(
        &format!("{BASE}{}{legacy}", strict.replace("STRICT", "PERMISSIVE")),
        "SKF0002",
    );
}

const ALLOW_BACKEND: &str = "\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: backend-allow, namespace: prod}\nspec:\n  selector: {matchLabels: {app: backend}}\n  rules: [{from: [{source: {principals: [cluster.local/ns/prod/sa/frontend]}}]}]\n";
const DENY_ALL: &str = "\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all, namespace: prod}\nspec: {}\n";

#[test]
fn skf0003_allow_policies_without_a_deny_all_baseline() {
    let m = one(&format!("{BASE}{ALLOW_BACKEND}"), "SKF0003");
    assert!(m.message.contains("frontend.prod"), "{m:?}");
    none(&format!("{BASE}{ALLOW_BACKEND}{DENY_ALL}"), "SKF0003");
}

#[test]
fn skf0004_deny_all_with_nothing_allowed() {
    let m = one(&format!("{BASE}{DENY_ALL}"), "SKF0004");
    assert!(m.message.contains("backend-v1.prod"), "{m:?}");
    let allow_all = "\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: frontend-allow, namespace: prod}\nspec:\n  selector: {matchLabels: {app: frontend}}\n  rules: [{to: [{operation: {methods: [GET]}}]}]\n";
    none(
        &format!("{BASE}{DENY_ALL}{ALLOW_BACKEND}{allow_all}"),
        "SKF0004",
    );
}

#[test]
fn skf0005_destination_rule_subset_no_route_uses() {
    let only_v1 = "  - route:\n    - destination: {host: backend, subset: v1}";
    let m = one(&format!("{BASE}{DR}{}", vs(only_v1)), "SKF0005");
    assert!(m.message.starts_with("subset v2 of backend.prod"), "{m:?}");
    none(&format!("{BASE}{DR}{}", vs(BOTH_SUBSETS)), "SKF0005");
}

const GATEWAY: &str = "\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: web, namespace: prod}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [shop.example.com]}]\n";

#[test]
fn skf0006_virtual_service_misses_its_gateway() {
    let shop = "\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: shop, namespace: prod}\nspec:\n  hosts: [shop.example.com]\n  http: [{route: [{destination: {host: backend}}]}]\n";
    let m = one(&format!("{BASE}{GATEWAY}{shop}"), "SKF0006");
    assert!(m.fix.as_deref().unwrap().contains("prod/web"), "{m:?}");
    let bound = shop.replace("  hosts: [shop", "  gateways: [web]\n  hosts: [shop");
    none(&format!("{BASE}{GATEWAY}{bound}"), "SKF0006");
    // A gateway-only VirtualService that splits traffic to a mesh service: `mesh` missing.
    let split = vs(BOTH_SUBSETS).replace(
        "  hosts: [backend]",
        "  gateways: [web]\n  hosts: [backend]",
    );
    let m = one(&format!("{BASE}{DR}{GATEWAY}{split}"), "SKF0006");
    assert!(m.message.contains("lacks `mesh`"), "{m:?}");
    let meshed = split.replace("gateways: [web]", "gateways: [web, mesh]");
    none(&format!("{BASE}{DR}{GATEWAY}{meshed}"), "SKF0006");
}

#[test]
fn ist0165_internal_gateway_and_ist0132_for_a_missing_one() {
    let shop = |gateway: &str| {
        format!(
            "\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: shop, namespace: prod}}\nspec:\n  gateways: [\"{gateway}\"]\n  hosts: [shop.example.com]\n  http: [{{route: [{{destination: {{host: backend}}}}]}}]\n"
        )
    };
    // Istio's generated name for a Gateway API listener: IST0165, and nothing else about
    // it but the validation error (`~` is not in a DNS label, as Istio's validation says:
    // analyze reads the rejected resource too).
    let internal = format!(
        "{BASE}{GATEWAY}{}",
        shop("istio-ingress/gateway~istio-autogenerated-k8s-gateway~http")
    );
    let all = analyze(
        &skiff_api::load_str("test.yaml", &internal),
        MeshOptions::default(),
    );
    let codes: Vec<&str> = all.iter().map(|m| m.code).collect();
    assert!(codes.contains(&"IST0106"), "{all:#?}");
    assert!(
        !codes.contains(&"IST0101") && !codes.contains(&"IST0132"),
        "{all:#?}"
    );
    let m = all.iter().find(|m| m.code == "IST0165").expect("IST0165");
    assert_eq!(m.level, Level::Warning);
    assert!(m.message.contains("prod/shop"), "{m:#?}");
    // A name that only looks like one is an ordinary missing gateway: IST0101, and, as
    // Istio's GatewayAnalyzer gives it, IST0132.
    let missing = format!(
        "{BASE}{GATEWAY}{}",
        shop("istio-ingress/gateway-autogenerated")
    );
    none(&missing, "IST0165");
    one(&missing, "IST0101");
    let m = one(&missing, "IST0132");
    assert!(
        m.message.contains("istio-ingress/gateway-autogenerated"),
        "{m:?}"
    );
    // The gateway that exists and serves the host: neither.
    let bound = format!("{BASE}{GATEWAY}{}", shop("web"));
    none(&bound, "IST0132");
    none(&bound, "IST0165");
}

#[test]
fn skf0007_virtual_service_host_matches_no_service() {
    let yaml = format!(
        "{BASE}{}",
        vs("  - route:\n    - destination: {host: backend}")
            .replace("hosts: [backend]", "hosts: [backedn]")
    );
    one(&yaml, "SKF0007");
    none(
        &format!(
            "{BASE}{}",
            vs("  - route:\n    - destination: {host: backend}")
        ),
        "SKF0007",
    );
}

#[test]
fn skf0008_reference_across_namespaces_that_does_not_resolve() {
    let dev = vs("  - route:\n    - destination: {host: backend}")
        .replace("namespace: prod}", "namespace: dev}");
    let m = one(&format!("{BASE}{dev}"), "SKF0008");
    assert!(
        m.fix
            .as_deref()
            .unwrap()
            .contains("backend.prod.svc.cluster.local"),
        "{m:?}"
    );
    let fqdn = dev.replace("{host: backend}", "{host: backend.prod.svc.cluster.local}");
    none(&format!("{BASE}{fqdn}"), "SKF0008");
    let dr_dev = DR.replace("namespace: prod}", "namespace: dev}");
    one(&format!("{BASE}{dr_dev}"), "SKF0008");
    none(&format!("{BASE}{DR}"), "SKF0008");
}

#[test]
fn skf0009_fault_left_in_place() {
    let fault = "  - fault: {abort: {httpStatus: 503, percentage: {value: 10}}}\n    route:\n    - destination: {host: backend}";
    let m = one(&format!("{BASE}{}", vs(fault)), "SKF0009");
    assert!(m.message.contains("aborts"), "{m:?}");
    none(
        &format!(
            "{BASE}{}",
            vs("  - route:\n    - destination: {host: backend}")
        ),
        "SKF0009",
    );
}

#[test]
fn skf0010_workload_without_sidecar_in_a_mesh_namespace() {
    let no_sidecar = BASE.replace(
        "metadata: {name: frontend, namespace: prod}",
        "metadata: {name: frontend, namespace: prod, annotations: {sidecar.istio.io/inject: \"false\"}}",
    );
    let m = one(&no_sidecar, "SKF0010");
    assert!(m.message.contains("frontend.prod"), "{m:?}");
    none(BASE, "SKF0010");
    // Outside the mesh: a namespace without injection where nothing has a sidecar.
    let outside = "\n---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: db, namespace: legacy, annotations: {sidecar.istio.io/inject: \"false\"}}\nspec: {address: 127.0.10.30, labels: {app: db}}\n";
    none(&format!("{BASE}{outside}"), "SKF0010");
}

#[test]
fn every_code_is_documented_once() {
    let doc = include_str!("../../../../docs/analyze.md");
    for c in codes::ALL {
        assert!(
            doc.contains(&format!("`{}`", c.code)),
            "{} is not in docs/analyze.md",
            c.code
        );
        assert!(doc.contains(c.name), "{} is not in docs/analyze.md", c.name);
    }
    let mut seen = std::collections::BTreeSet::new();
    assert!(
        codes::ALL.iter().all(|c| seen.insert(c.code)),
        "a code is used twice"
    );
}

#[test]
fn templates_fill_in_order() {
    assert_eq!(
        codes::fill("Referenced %s not found: %q", &["host".into(), "a".into()]),
        "Referenced host not found: \"a\""
    );
}

const SE_TCP: &str = "\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: db, namespace: prod}\nspec:\n  hosts: [db.example.com]\n  ports: [{number: 5432, name: tcp, protocol: TCP}]\n  resolution: DNS\n";

#[test]
fn ist0134_service_entry_tcp_port_without_addresses() {
    let m = one(&format!("{BASE}{SE_TCP}"), "IST0134");
    assert_eq!(
        m.message,
        "ServiceEntry addresses are required for this protocol."
    );
    let with_address = SE_TCP.replace(
        "  resolution: DNS",
        "  addresses: [10.0.0.5]\n  resolution: DNS",
    );
    none(&format!("{BASE}{with_address}"), "IST0134");
    none(
        &format!(
            "{BASE}{}",
            SE_TCP.replace("name: tcp, protocol: TCP", "name: tls, protocol: TLS")
        ),
        "IST0134",
    );
}

#[test]
fn ist0177_service_entries_disagree_on_a_ports_protocol() {
    let other = SE_TCP
        .replace("name: db,", "name: db-2,")
        .replace("name: tcp, protocol: TCP", "name: http, protocol: HTTP");
    let found = with(&format!("{BASE}{SE_TCP}{other}"), "IST0177");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].message.contains("(HTTP, TCP)"), "{found:#?}");
    let same = SE_TCP.replace("name: db,", "name: db-2,");
    none(&format!("{BASE}{SE_TCP}{same}"), "IST0177");
}

fn sidecar(name: &str, selector: Option<&str>) -> String {
    let sel = selector.map_or(String::new(), |s| {
        format!("  workloadSelector: {{labels: {{{s}}}}}\n")
    });
    format!(
        "\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: {name}, namespace: prod}}\nspec:\n{sel}  egress: [{{hosts: [\"./*\"]}}]\n"
    )
}

#[test]
fn ist0110_ist0111_sidecars_that_conflict() {
    let two_defaults = format!("{BASE}{}{}", sidecar("a", None), sidecar("b", None));
    let found = with(&two_defaults, "IST0111");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(
        found[0].message,
        "The Sidecars [a b] in namespace \"prod\" have no workload selector, which can lead to undefined behavior."
    );
    none(&format!("{BASE}{}", sidecar("a", None)), "IST0111");
    let overlap = format!(
        "{BASE}{}{}",
        sidecar("a", Some("app: backend")),
        sidecar("b", Some("version: v1"))
    );
    assert_eq!(with(&overlap, "IST0110").len(), 2);
    let apart = format!(
        "{BASE}{}{}",
        sidecar("a", Some("app: backend")),
        sidecar("b", Some("app: frontend"))
    );
    none(&apart, "IST0110");
    let nothing = format!("{BASE}{}", sidecar("a", Some("app: backedn")));
    assert_eq!(
        one(&nothing, "IST0101").message,
        "Referenced selector not found: \"app=backedn\""
    );
}

fn telemetry(name: &str, selector: Option<&str>) -> String {
    let sel = selector.map_or(String::new(), |s| {
        format!("  selector: {{matchLabels: {{{s}}}}}\n")
    });
    format!(
        "\n---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: {name}, namespace: prod}}\nspec:\n{sel}  tracing: [{{randomSamplingPercentage: 10}}]\n"
    )
}

#[test]
fn ist0159_ist0160_telemetries_that_conflict() {
    let two_defaults = format!("{BASE}{}{}", telemetry("a", None), telemetry("b", None));
    assert_eq!(with(&two_defaults, "IST0160").len(), 2);
    none(&format!("{BASE}{}", telemetry("a", None)), "IST0160");
    let overlap = format!(
        "{BASE}{}{}",
        telemetry("a", Some("app: backend")),
        telemetry("b", Some("version: v2"))
    );
    assert_eq!(with(&overlap, "IST0159").len(), 2);
    let apart = format!(
        "{BASE}{}{}",
        telemetry("a", Some("app: backend")),
        telemetry("b", Some("app: frontend"))
    );
    none(&apart, "IST0159");
}

#[test]
fn ist0162_gateway_port_not_on_the_gateways_service() {
    let gw = |port: u32| {
        format!(
            "\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: web, namespace: prod}}\nspec:\n  selector: {{app: edge}}\n  servers: [{{port: {{number: {port}, name: http, protocol: HTTP}}, hosts: [\"*\"]}}]\n"
        )
    };
    let edge = "\n---\napiVersion: v1\nkind: Service\nmetadata: {name: edge, namespace: prod}\nspec:\n  selector: {app: edge}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: edge, namespace: prod}\nspec: {address: 127.0.10.40, labels: {app: edge}}\n";
    let m = one(&format!("{BASE}{edge}{}", gw(9090)), "IST0162");
    assert!(
        m.message.contains("(port 9090)") && m.message.contains("app=edge"),
        "{m:?}"
    );
    none(&format!("{BASE}{edge}{}", gw(8080)), "IST0162");
    none(&format!("{BASE}{edge}{}", gw(80)), "IST0162");
    // Istio's default ingress gateway (istio: ingressgateway) serves 80 and 443.
    none(&format!("{BASE}{GATEWAY}"), "IST0162");
    one(
        &format!("{BASE}{}", GATEWAY.replace("number: 80", "number: 8081")),
        "IST0162",
    );
}

#[test]
fn ist0128_ist0129_tls_origination_without_ca_certificates() {
    let dr = |tls: &str| {
        format!(
            "\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: ext, namespace: prod}}\nspec:\n  host: backend\n  trafficPolicy:\n{tls}"
        )
    };
    let m = one(
        &format!("{BASE}{}", dr("    tls: {mode: SIMPLE}\n")),
        "IST0128",
    );
    assert_eq!(
        m.message,
        "DestinationRule prod/ext in namespace prod has TLS mode set to SIMPLE but no caCertificates are set to validate server identity for host: backend"
    );
    none(
        &format!(
            "{BASE}{}",
            dr("    tls: {mode: SIMPLE, caCertificates: /etc/ca.pem}\n")
        ),
        "IST0128",
    );
    none(
        &format!("{BASE}{}", dr("    tls: {mode: ISTIO_MUTUAL}\n")),
        "IST0128",
    );
    let port = "    portLevelSettings:\n    - port: {number: 443}\n      tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}\n";
    let m = one(&format!("{BASE}{}", dr(port)), "IST0129");
    assert!(
        m.message.ends_with("for host: backend at port number:443"),
        "{m:?}"
    );
}

#[test]
fn rejected_resources_are_analyzed_and_stay_rejected() {
    // A Service port with `protocol: HTTP` fails validation; analysis still sees the
    // Service (no IST0101 for the route to it), and gives the validation error.
    let yaml = format!(
        "{}{}",
        BASE.replace(
            "ports: [{name: http, port: 80, targetPort: 8080}]",
            "ports: [{name: http, port: 80, targetPort: 8080, protocol: HTTP}]"
        ),
        vs("  - route:\n    - destination: {host: backend}")
    );
    let loaded = skiff_api::load_str("test.yaml", &yaml);
    assert!(
        loaded.resources.services().next().is_none(),
        "the invalid Service must stay out of the mesh"
    );
    assert_eq!(loaded.rejected.len(), 1);
    let all = analyze(&loaded, MeshOptions::default());
    assert!(all.iter().any(|m| m.code == "IST0106"), "{all:#?}");
    assert!(!all.iter().any(|m| m.code == "IST0101"), "{all:#?}");
    // Near miss: without the Service at all, the route's host is not found.
    let gone = skiff_api::load_str(
        "test.yaml",
        &format!(
            "{}{}",
            BASE.replace("kind: Service\n", "kind: ServiceEntryX\n"),
            vs("  - route:\n    - destination: {host: backend}")
        ),
    );
    let all = analyze(&gone, MeshOptions::default());
    assert!(all.iter().any(|m| m.code == "IST0101"), "{all:#?}");
}

#[test]
fn a_pod_without_spec_is_analyzed_by_its_labels() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: prod, labels: {app: a}}\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s, namespace: prod}\nspec:\n  workloadSelector: {labels: {app: a}}\n  egress: [{hosts: [\"./*\"]}]\n";
    let loaded = skiff_api::load_str("test.yaml", yaml);
    assert!(loaded.resources.pods().next().is_none());
    let all = analyze(&loaded, MeshOptions::default());
    assert!(
        all.iter()
            .any(|m| m.code == "IST0106" && m.message.contains("`spec`")),
        "{all:#?}"
    );
    assert!(!all.iter().any(|m| m.code == "IST0101"), "{all:#?}");
    let other = yaml.replacen("labels: {app: a}}", "labels: {app: b}}", 1);
    let all = analyze(
        &skiff_api::load_str("test.yaml", &other),
        MeshOptions::default(),
    );
    assert!(all.iter().any(|m| m.code == "IST0101"), "{all:#?}");
}

#[test]
fn ist0101_host_port_and_ist0112_port_required() {
    let yaml = format!(
        "{BASE}{}",
        vs("  - route:\n    - destination: {host: backend, port: {number: 999}}")
    );
    let m = one(&yaml, "IST0101");
    assert_eq!(
        m.message,
        "Referenced host:port not found: \"backend.prod.svc.cluster.local:999\""
    );
    none(
        &format!(
            "{BASE}{}",
            vs("  - route:\n    - destination: {host: backend, port: {number: 80}}")
        ),
        "IST0101",
    );
    let two_ports = BASE.replace(
        "ports: [{name: http, port: 80, targetPort: 8080}]",
        "ports: [{name: http, port: 80, targetPort: 8080}, {name: http-admin, port: 9000}]",
    );
    let route = vs("  - route:\n    - destination: {host: backend}");
    let m = one(&format!("{two_ports}{route}"), "IST0112");
    assert_eq!(m.level, Level::Error);
    none(
        &format!(
            "{two_ports}{}",
            vs("  - route:\n    - destination: {host: backend, port: {number: 80}}")
        ),
        "IST0112",
    );
}

#[test]
fn ist0101_mirror_host_not_found() {
    let yaml = format!(
        "{BASE}{}",
        vs("  - route:\n    - destination: {host: backend}\n    mirror: {host: shadow}")
    );
    let m = one(&yaml, "IST0101");
    assert_eq!(
        m.message,
        "Referenced mirror host not found: \"shadow.prod.svc.cluster.local\""
    );
    none(
        &format!(
            "{BASE}{}",
            vs("  - route:\n    - destination: {host: backend}\n    mirror: {host: backend}")
        ),
        "IST0101",
    );
}

fn gateway(name: &str, selector: &str, port: u32, host: &str) -> String {
    format!(
        "\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: prod}}\nspec:\n  selector: {{{selector}}}\n  servers:\n  - port: {{number: {port}, name: http-{name}, protocol: HTTP}}\n    hosts: [\"{host}\"]\n"
    )
}

#[test]
fn ist0145_conflicting_gateways() {
    let yaml = format!(
        "{BASE}{}{}",
        gateway("a", "istio: ingressgateway", 80, "shop.example.com"),
        gateway("b", "istio: ingressgateway", 80, "shop.example.com")
    );
    let found = with(&yaml, "IST0145");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(found[0].level, Level::Error);
    assert_eq!(
        found[0].message,
        "Conflict with gateways prod/b (workload selector istio=ingressgateway, port 80, hosts shop.example.com)."
    );
    let other_port = format!(
        "{BASE}{}{}",
        gateway("a", "istio: ingressgateway", 80, "shop.example.com"),
        gateway("b", "istio: ingressgateway", 8080, "shop.example.com")
    );
    none(&other_port, "IST0145");
    let other_host = format!(
        "{BASE}{}{}",
        gateway("a", "istio: ingressgateway", 80, "shop.example.com"),
        gateway("b", "istio: ingressgateway", 80, "api.example.com")
    );
    none(&other_host, "IST0145");
}

const POD: &str = "\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: NAME, namespace: prod, labels: {app: NAME}}\nspec:\n  containers:\n  - {name: app, image: app}\n";

/// A pod rejected for a container without a name (as in Istio's analyzer inputs) is
/// still a workload to analysis: a Sidecar selecting it is not "selecting nothing".
#[test]
fn a_rejected_pod_still_counts_for_selectors() {
    let sidecar = "\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: web, namespace: prod}\nspec:\n  workloadSelector: {labels: {app: web}}\n  egress: [{hosts: [\"./*\"]}]\n";
    let pod = POD
        .replace("NAME", "web")
        .replace("{name: app, image: app}", "{image: app}");
    let yaml = format!("{BASE}{pod}{sidecar}");
    let all = analyze(
        &skiff_api::load_str("test.yaml", &yaml),
        MeshOptions::default(),
    );
    let rejected = all
        .iter()
        .find(|m| m.code == "IST0106")
        .unwrap_or_else(|| panic!("{all:#?}"));
    assert!(
        rejected.message.contains("container name cannot be empty"),
        "{rejected:?}"
    );
    assert!(!all.iter().any(|m| m.code == "IST0101"), "{all:#?}");
    // Near miss: no pod with those labels at all.
    let yaml = format!("{BASE}{sidecar}");
    let all = analyze(
        &skiff_api::load_str("test.yaml", &yaml),
        MeshOptions::default(),
    );
    assert!(all.iter().any(|m| m.code == "IST0101"), "{all:#?}");
}

#[test]
fn ist0102_ist0123_namespace_injection_labels() {
    let bare = BASE.replace(", labels: {istio-injection: enabled}", "");
    let m = one(&bare, "IST0102");
    assert_eq!(m.level, Level::Info);
    assert!(m.message.starts_with("The namespace is not enabled for Istio injection. Run 'kubectl label namespace prod istio-injection=enabled'"), "{m:?}");
    // A Namespace has no namespace of its own: named as Istio names it.
    assert!(
        m.line()
            .starts_with("Info [IST0102] (Namespace prod test.yaml:"),
        "{}",
        m.line()
    );
    none(BASE, "IST0102");
    none(
        &BASE.replace("istio-injection: enabled", "istio-injection: disabled"),
        "IST0102",
    );
    let both = BASE.replace(
        "labels: {istio-injection: enabled}",
        "labels: {istio-injection: enabled, istio.io/rev: canary}",
    );
    let m = one(&both, "IST0123");
    assert_eq!(
        m.message,
        "The namespace has more than one type of injection labels [istio-injection=enabled istio.io/rev=canary], which may lead to undefined behavior. Make sure only one injection label exists."
    );
    none(BASE, "IST0123");
}

#[test]
fn ist0103_pod_missing_proxy_in_a_clusters_stored_pods() {
    let injected = POD.replace("NAME", "injected").replace(
        "  - {name: app, image: app}\n",
        "  - {name: app, image: app}\n  - {name: istio-proxy, image: proxyv2}\n",
    );
    let plain = POD.replace("NAME", "plain");
    let m = one(&format!("{BASE}{injected}{plain}"), "IST0103");
    assert_eq!(
        m.message,
        "The pod prod/plain is missing the Istio proxy. This can often be resolved by restarting or redeploying the workload."
    );
    // Files written for skiff (no Pod carries an injected proxy): skiff adds the sidecar.
    none(&format!("{BASE}{plain}"), "IST0103");
    let off = plain.replace(
        "labels: {app: plain}",
        "labels: {app: plain}, annotations: {sidecar.istio.io/inject: \"false\"}",
    );
    none(&format!("{BASE}{injected}{off}"), "IST0103");
}

#[test]
fn skf0030_init_container_before_the_sidecar() {
    let with_init = POD.replace("NAME", "p").replace(
        "  containers:\n",
        "  initContainers:\n  - {name: migrate, image: migrate}\n  containers:\n",
    );
    let m = one(&format!("{BASE}{with_init}"), "SKF0030");
    assert_eq!(m.level, Level::Warning);
    assert!(m.message.contains("init container migrate"), "{m:?}");
    assert!(m.fix.as_deref().unwrap().contains("nativeSidecar"), "{m:?}");
    let native = with_init.replace(
        "labels: {app: p}}",
        "labels: {app: p}, annotations: {sidecar.istio.io/nativeSidecar: \"true\"}}",
    );
    none(&format!("{BASE}{native}"), "SKF0030");
    let as_proxy = with_init.replace(
        "{name: migrate, image: migrate}",
        "{name: migrate, image: migrate, securityContext: {runAsUser: 1337}}",
    );
    none(&format!("{BASE}{as_proxy}"), "SKF0030");
    let unmeshed = BASE.replace("istio-injection: enabled", "istio-injection: disabled");
    none(&format!("{unmeshed}{with_init}"), "SKF0030");
}

const JOB: &str = "\n---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: report, namespace: prod}\nspec:\n  template:\n    metadata: {labels: {app: report}}\n    spec:\n      restartPolicy: Never\n      containers:\n      - {name: report, image: report, command: [\"sh\", \"-c\", \"make-report\"]}\n";

#[test]
fn skf0032_job_whose_sidecar_never_exits() {
    let m = one(&format!("{BASE}{JOB}"), "SKF0032");
    assert!(m.message.contains("Job prod/report"), "{m:?}");
    let quits = JOB.replace(
        "make-report",
        "make-report && curl -sf -XPOST http://localhost:15020/quitquitquit",
    );
    none(&format!("{BASE}{quits}"), "SKF0032");
    let cron = format!(
        "\n---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: nightly, namespace: prod}}\nspec:\n  schedule: \"0 3 * * *\"\n  jobTemplate:\n    spec:\n{}",
        JOB.split_once("spec:\n")
            .unwrap()
            .1
            .lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    );
    assert!(
        one(&format!("{BASE}{cron}"), "SKF0032")
            .message
            .contains("CronJob prod/nightly")
    );
    let unmeshed = BASE.replace("istio-injection: enabled", "istio-injection: disabled");
    none(&format!("{unmeshed}{JOB}"), "SKF0032");
}

#[test]
fn skf0031_sidecar_resource_budget() {
    let pod = |ann: &str| {
        POD.replace("NAME", "p").replace(
            "labels: {app: p}}",
            &format!("labels: {{app: p}}, annotations: {{{ann}}}}}"),
        )
    };
    let over = pod("sidecar.istio.io/proxyMemory: 2Gi");
    let m = one(&format!("{BASE}{over}"), "SKF0031");
    assert!(m.message.contains("default limit (1Gi)"), "{m:?}");
    let fine = pod("sidecar.istio.io/proxyMemory: 256Mi, sidecar.istio.io/proxyCPU: 200m");
    none(&format!("{BASE}{fine}"), "SKF0031");
    let raised = pod("sidecar.istio.io/proxyMemory: 2Gi, sidecar.istio.io/proxyMemoryLimit: 3Gi");
    none(&format!("{BASE}{raised}"), "SKF0031");
    let unreadable = pod("sidecar.istio.io/proxyCPU: lots");
    assert!(
        one(&format!("{BASE}{unreadable}"), "SKF0031")
            .message
            .contains("not a Kubernetes quantity")
    );
    let tiny = pod("sidecar.istio.io/proxyMemoryLimit: 8Mi");
    assert!(
        one(&format!("{BASE}{tiny}"), "SKF0031")
            .message
            .contains("too little")
    );
    let cores = pod("sidecar.istio.io/proxyCPU: \"100\", sidecar.istio.io/proxyCPULimit: \"200\"");
    let found = with(&format!("{BASE}{cores}"), "SKF0031");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found.iter().all(|m| m.message.contains("unit mistake")));
}

const DEPLOYMENT: &str = "\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: details, namespace: prod}\nspec:\n  selector: {matchLabels: {app: details}}\n  template:\n    metadata: {labels: {app: details}}\n    spec:\n      containers:\n      - {name: details, image: details, ports: [{containerPort: 9080}]}\n";

fn service(name: &str, port: u32, target: u32, protocol: &str) -> String {
    format!(
        "\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: prod}}\nspec:\n  selector: {{app: details}}\n  ports: [{{name: tcp-{name}, port: {port}, targetPort: {target}, protocol: {protocol}}}]\n"
    )
}

#[test]
fn ist0116_ist0137_services_of_a_deployment_disagree() {
    let protocols = format!(
        "{BASE}{DEPLOYMENT}{}{}",
        service("a", 9080, 9080, "TCP"),
        service("b", 9080, 9080, "UDP")
    );
    let m = one(&protocols, "IST0116");
    assert_eq!(
        m.message,
        "This deployment details is associated with multiple services using port 9080 but different protocols: [prod/a prod/b]"
    );
    let ports = format!(
        "{BASE}{DEPLOYMENT}{}{}",
        service("a", 9080, 9080, "TCP"),
        service("b", 9090, 9080, "TCP")
    );
    let m = one(&ports, "IST0137");
    assert_eq!(
        m.message,
        "This deployment details is associated with multiple services [prod/a prod/b] using targetPort \"9080\" but different ports: [9080 9090]."
    );
    let agree = format!(
        "{BASE}{DEPLOYMENT}{}{}",
        service("a", 9080, 9080, "TCP"),
        service("b", 9080, 9080, "TCP")
    );
    none(&agree, "IST0116");
    none(&agree, "IST0137");
    // Not in the mesh: Istio's analyzer leaves it alone.
    let outside = protocols.replace("istio-injection: enabled", "istio-injection: disabled");
    none(&outside, "IST0116");
}

#[test]
fn ist0149_jwt_claim_route_without_request_authentication() {
    let routes = format!(
        "{BASE}{}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: shop, namespace: prod}}\nspec:\n  hosts: [shop.example.com]\n  gateways: [a]\n  http:\n  - match:\n    - headers: {{\"@request.auth.claims.group\": {{exact: admin}}}}\n    route:\n    - destination: {{host: backend}}\n",
        gateway("a", "istio: ingressgateway", 80, "shop.example.com")
    );
    let m = one(&routes, "IST0149");
    assert_eq!(m.level, Level::Error);
    assert!(
        m.message.starts_with("The virtual service uses the JWT claim based routing (key: @request.auth.claims.group) but found no request authentication for the gateway (prod/a) pod (istio-ingressgateway)."),
        "{m:?}"
    );
    let authn = "\n---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: istio-system}\nspec:\n  selector: {matchLabels: {istio: ingressgateway}}\n  jwtRules: [{issuer: \"https://issuer.example.com\", jwksUri: \"https://issuer.example.com/jwks\"}]\n";
    none(&format!("{routes}{authn}"), "IST0149");
    let plain_header = routes.replace("@request.auth.claims.group", "x-group");
    none(&plain_header, "IST0149");
}
