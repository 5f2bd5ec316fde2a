use super::*;

const GATEWAY: &str = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: prod}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*']
";

const GATEWAY_WORKLOAD: &str = "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: my-gateway, namespace: edge}
spec:
  address: 127.0.0.9
  labels: {istio: ingressgateway}
";

fn set(text: &str) -> ResourceSet {
    let loaded = load_str("test.yaml", text);
    assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.diagnostics);
    loaded.resources
}

#[test]
fn adds_gateway_workload_when_no_workload_has_the_labels() {
    let out = with_builtin_gateway(set(GATEWAY), "127.0.0.1".parse().unwrap());
    let added: Vec<_> = out.workload_entries().collect();
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].name(), BUILTIN_GATEWAY_NAME);
    assert_eq!(added[0].namespace(), BUILTIN_GATEWAY_NAMESPACE);
    assert_eq!(added[0].spec.address.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        added[0].spec.labels.get("istio").map(String::as_str),
        Some("ingressgateway")
    );
}

#[test]
fn leaves_configuration_alone_when_a_workload_is_selected() {
    let text = format!("{GATEWAY}---\n{GATEWAY_WORKLOAD}");
    let out = with_builtin_gateway(set(&text), "127.0.0.1".parse().unwrap());
    let names: Vec<_> = out
        .workload_entries()
        .map(|w| w.name().to_owned())
        .collect();
    assert_eq!(names, ["my-gateway"]);
}
