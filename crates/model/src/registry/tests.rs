use crate::diagnostic::Code;
use crate::testing::{mesh, messages};

use super::*;

const SERVICE_AND_WORKLOADS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: a}
spec:
  selector: {app: api}
  ports:
  - {name: http, port: 80, targetPort: web}
  - {name: tcp-admin, port: 9000}
  - {name: dns, port: 53, protocol: UDP}
---
apiVersion: v1
kind: Pod
metadata: {name: api-pod, namespace: a, labels: {app: api}}
spec:
  containers:
  - name: api
    ports:
    - {name: web, containerPort: 8080}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api-vm, namespace: a}
spec:
  address: 10.0.0.5
  labels: {app: api}
  ports: {web: 8081, tcp-admin: 9001}
  weight: 3
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api-elsewhere, namespace: b}
spec:
  address: 10.0.0.6
  labels: {app: api}
"#;

#[test]
fn a_service_selects_workloads_of_its_own_namespace_only() {
    let mesh = mesh(SERVICE_AND_WORKLOADS);
    let r = mesh.registry();
    let id = r.lookup("api.a.svc.cluster.local", "a").unwrap();
    let service = &r.services()[id];
    let names: Vec<&str> = service
        .endpoints
        .iter()
        .map(|&w| r.workload_id(w))
        .collect();
    assert_eq!(names, ["api-pod.a", "api-vm.a"]);
}

#[test]
fn ports_keep_protocols_and_drop_udp() {
    let mesh = mesh(SERVICE_AND_WORKLOADS);
    let r = mesh.registry();
    let service = &r.services()[r.lookup("api.a.svc.cluster.local", "a").unwrap()];
    let ports: Vec<(u16, Protocol)> = service.ports.iter().map(|p| (p.port, p.protocol)).collect();
    assert_eq!(ports, [(80, Protocol::Http), (9000, Protocol::Tcp)]);
    assert_eq!(messages(&mesh, Code::ProtocolNotProxied).len(), 1);
}

#[test]
fn target_ports_resolve_by_container_name_or_workload_entry_port_map() {
    let mesh = mesh(SERVICE_AND_WORKLOADS);
    let r = mesh.registry();
    let service = &r.services()[r.lookup("api.a.svc.cluster.local", "a").unwrap()];
    let pod = &r.workloads()[r.workload_by_id("api-pod.a").unwrap()];
    let vm = &r.workloads()[r.workload_by_id("api-vm.a").unwrap()];
    assert_eq!(pod.target_port(&service.ports[0]), Some(8080));
    assert_eq!(vm.target_port(&service.ports[0]), Some(8081));
    // A WorkloadEntry's port map is keyed by service port name.
    assert_eq!(vm.target_port(&service.ports[1]), Some(9001));
    assert_eq!(pod.target_port(&service.ports[1]), Some(9000));
    assert_eq!(vm.weight, 3);
    assert_eq!(pod.address, None);
}

#[test]
fn a_missing_named_target_port_is_reported() {
    let mesh = mesh(
        r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: a}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80, targetPort: web}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm, namespace: a}
spec: {address: 10.0.0.5, labels: {app: api}}
"#,
    );
    assert_eq!(
        messages(&mesh, Code::UnresolvedTargetPort),
        [
            "target port `web` of service api.a port 80 is not a named port of vm.a; those workloads are not endpoints of this port"
        ]
    );
}

#[test]
fn a_service_whose_selector_matches_nothing_is_reported() {
    let mesh = mesh(
        r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: a}
spec:
  selector: {app: apii}
  ports: [{name: http, port: 80}]
"#,
    );
    assert_eq!(
        messages(&mesh, Code::ServiceWithoutEndpoints),
        ["service api.a selects no workloads: none in namespace a has labels app=apii"]
    );
}

#[test]
fn hosts_resolve_istio_style_then_kubernetes_style() {
    let mesh = mesh(SERVICE_AND_WORKLOADS);
    let r = mesh.registry();
    assert_eq!(
        r.resolve_host("api", "a"),
        ("api.a.svc.cluster.local".to_string(), false)
    );
    assert_eq!(
        r.resolve_host("api.a", "b"),
        ("api.a.svc.cluster.local".to_string(), true)
    );
    assert_eq!(
        r.resolve_host("api.a.svc", "b"),
        ("api.a.svc.cluster.local".to_string(), true)
    );
    // Not a known service: taken literally, as Istio does.
    assert_eq!(r.resolve_host("web.a", "b"), ("web.a".to_string(), false));
    assert_eq!(
        r.resolve_host("*.example.com", "b"),
        ("*.example.com".to_string(), false)
    );
}

#[test]
fn service_entries_declare_one_service_per_host_with_inline_endpoints() {
    let mesh = mesh(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: egress}
spec:
  hosts: [api.example.com, "*.cdn.example.com"]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports:
  - {number: 443, name: https, protocol: HTTPS}
  endpoints:
  - {address: 192.0.2.10}
  - {address: 192.0.2.11, ports: {https: 8443}}
  exportTo: ["."]
"#,
    );
    let r = mesh.registry();
    assert_eq!(r.services().len(), 2);
    let api = &r.services()[r.lookup("api.example.com", "egress").unwrap()];
    assert_eq!(api.ports[0].protocol, Protocol::Https);
    let targets: Vec<Option<u16>> = api
        .endpoints
        .iter()
        .map(|&w| r.workloads()[w].target_port(&api.ports[0]))
        .collect();
    assert_eq!(targets, [Some(443), Some(8443)]);
    assert!(api.endpoints.iter().all(|&w| !r.workloads()[w].sidecar));
    assert_eq!(r.wildcard_services().len(), 1);
    // exportTo ".": other namespaces do not see it.
    assert!(api.visibility.includes("egress"));
    assert!(!api.visibility.includes("prod"));
    assert_eq!(r.lookup("api.example.com", "prod"), None);
    // Inline endpoints are not proxies.
    assert_eq!(mesh.proxies().count(), 0);
}

#[test]
fn dns_resolution_names_endpoints_or_each_host_for_the_proxy_to_resolve() {
    let mesh = mesh(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hosts, namespace: egress}
spec:
  hosts: [a.example.com, b.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: named, namespace: egress}
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  endpoints: [{address: backend.internal.}, {address: 192.0.2.7}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: first, namespace: egress}
spec:
  hosts: [first.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS_ROUND_ROBIN
  endpoints: [{address: lb.internal}]
"#,
    );
    let r = mesh.registry();
    let dns_of = |host: &str| -> Vec<Option<(String, bool)>> {
        let svc = &r.services()[r.lookup(host, "egress").unwrap()];
        svc.endpoints
            .iter()
            .map(|&w| {
                let w = &r.workloads()[w];
                w.dns.as_ref().map(|d| (d.name.clone(), d.all))
            })
            .collect()
    };
    // Each host resolves its own name, every address (STRICT_DNS).
    assert_eq!(
        dns_of("a.example.com"),
        [Some(("a.example.com".into(), true))]
    );
    assert_eq!(
        dns_of("b.example.com"),
        [Some(("b.example.com".into(), true))]
    );
    // Named endpoints are resolved, addresses kept.
    assert_eq!(
        dns_of("api.example.com"),
        [Some(("backend.internal".into(), true)), None]
    );
    // DNS_ROUND_ROBIN: the first address only.
    assert_eq!(
        dns_of("first.example.com"),
        [Some(("lb.internal".into(), false))]
    );
    assert!(messages(&mesh, Code::WorkloadWithoutAddress).is_empty());
    assert!(messages(&mesh, Code::NotImplemented).is_empty());
}

#[test]
fn export_to_annotation_and_lookup_preference() {
    let mesh = mesh(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db-a, namespace: a}
spec:
  hosts: [db.example.com]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 192.0.2.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db-b, namespace: b}
spec:
  hosts: [db.example.com]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 192.0.2.2}]
---
apiVersion: v1
kind: Service
metadata:
  name: private
  namespace: a
  annotations: {networking.istio.io/exportTo: "., c"}
spec:
  ports: [{name: http, port: 80}]
"#,
    );
    let r = mesh.registry();
    let in_b = r.lookup("db.example.com", "b").unwrap();
    assert_eq!(r.services()[in_b].namespace, "b");
    let elsewhere = r.lookup("db.example.com", "z").unwrap();
    assert_eq!(r.services()[elsewhere].namespace, "a");
    let private = &r.services()[r.services_by_host("private.a.svc.cluster.local")[0]];
    assert!(private.visibility.includes("a") && private.visibility.includes("c"));
    assert!(!private.visibility.includes("b"));
    // No selector: a Kubernetes service without endpoints, and that is not a mistake.
    assert!(private.endpoints.is_empty());
    assert!(messages(&mesh, Code::ServiceWithoutEndpoints).is_empty());
}

#[test]
fn sidecar_opt_out_and_duplicate_workloads() {
    let mesh = mesh(
        r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: legacy
  namespace: a
  annotations: {sidecar.istio.io/inject: "false"}
spec: {address: 10.0.0.9, labels: {app: legacy}}
---
apiVersion: v1
kind: Pod
metadata: {name: legacy, namespace: a}
spec:
  containers: [{name: c}]
---
apiVersion: v1
kind: Pod
metadata: {name: host-net, namespace: a}
spec:
  hostNetwork: true
  containers: [{name: c}]
"#,
    );
    assert_eq!(
        mesh.proxies().count(),
        0,
        "{:?}",
        mesh.proxies().collect::<Vec<_>>()
    );
    assert_eq!(messages(&mesh, Code::DuplicateWorkload).len(), 1);
}

#[test]
fn label_index_selects_like_a_scan() {
    let mut index = LabelIndex::default();
    let workloads: Vec<(&str, Labels)> = vec![
        (
            "a",
            Labels::from([("app".into(), "x".into()), ("v".into(), "1".into())]),
        ),
        (
            "a",
            Labels::from([("app".into(), "x".into()), ("v".into(), "2".into())]),
        ),
        (
            "b",
            Labels::from([("app".into(), "x".into()), ("v".into(), "1".into())]),
        ),
        ("a", Labels::new()),
    ];
    for (id, (ns, labels)) in workloads.iter().enumerate() {
        index.insert(id, ns, labels);
    }
    let labels_of = |id: usize| &workloads[id].1;
    let app_x_v1 = Labels::from([("app".into(), "x".into()), ("v".into(), "1".into())]);
    assert_eq!(index.select("a", &app_x_v1, labels_of), [0]);
    assert_eq!(index.select_everywhere(&app_x_v1, labels_of), [0, 2]);
    assert_eq!(index.select("a", &Labels::new(), labels_of), [0, 1, 3]);
    assert_eq!(index.select("z", &app_x_v1, labels_of), Vec::<usize>::new());
}
