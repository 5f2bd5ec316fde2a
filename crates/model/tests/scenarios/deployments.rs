//! The seed handbook's Deployments as written: replicas become proxies, but without
//! addresses they are no endpoints, and the model says so.

use skiff_model::config::Protocol;

use super::*;

#[test]
fn replicas_are_proxies_named_after_the_deployment() {
    let mesh = mesh("deployments");
    assert_eq!(
        mesh.proxies().collect::<Vec<_>>(),
        ["backend-v1-0.prod", "backend-v1-1.prod"]
    );
    let config = compile(&mesh, "backend-v1-1.prod");
    assert_eq!(config.node.address, None);
    assert_eq!(
        config.node.labels.get("version").map(String::as_str),
        Some("v1")
    );
    assert_eq!(config.inbound[0].target_port, 8080);
    // An unnamed port: the proxy detects the protocol.
    assert_eq!(config.inbound[0].protocol, Protocol::Unspecified);
    let c = cluster(&config, "outbound|80||backend.prod.svc.cluster.local");
    assert!(c.endpoints.is_empty());
}

#[test]
fn missing_addresses_and_empty_subsets_are_reported() {
    let mesh = mesh("deployments");
    let no_address = findings(&mesh, Code::WorkloadWithoutAddress);
    assert_eq!(no_address.len(), 1, "{no_address:#?}");
    assert_eq!(no_address[0].severity, Severity::Info);
    assert!(
        no_address[0]
            .message
            .contains("backend-v1-0.prod, backend-v1-1.prod"),
        "{}",
        no_address[0].message
    );
    let subsets: Vec<&str> = findings(&mesh, Code::SubsetWithoutEndpoints)
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(
        subsets,
        [
            "subset v1 of backend.prod selects no endpoints: its workloads (backend-v1-0.prod, backend-v1-1.prod) have no address",
            "subset v2 of backend.prod selects no endpoints: no workload has labels version=v2",
        ]
    );
}
