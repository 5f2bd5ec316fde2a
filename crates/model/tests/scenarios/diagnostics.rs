//! The mistakes the model finds, each pointing at the file, line and field.

use super::*;

fn one(mesh: &Mesh, code: Code) -> &Diagnostic {
    let found = findings(mesh, code);
    assert_eq!(found.len(), 1, "{code:?}: {found:#?}");
    found[0]
}

#[test]
fn a_subset_without_endpoints() {
    let mesh = mesh("diagnostics");
    let d = one(&mesh, Code::SubsetWithoutEndpoints);
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(
        d.message,
        "subset v2 of backend.prod selects no endpoints: no workload has labels version=v2"
    );
    assert_eq!(d.field.as_deref(), Some("spec.subsets[1].labels"));
    let at = d.location.as_ref().unwrap();
    assert!(
        at.file.ends_with("diagnostics/mistakes.yaml"),
        "{}",
        at.file
    );
    assert_eq!((at.line, at.column), (38, 5));
}

#[test]
fn routes_to_unknown_subsets_hosts_and_ports() {
    let mesh = mesh("diagnostics");
    let subset = one(&mesh, Code::UnknownSubset);
    assert_eq!(subset.severity, Severity::Error);
    assert_eq!(
        subset.field.as_deref(),
        Some("spec.http[0].route[0].destination.subset")
    );
    assert!(subset.message.starts_with("subset v3 of backend.prod is not defined: DestinationRule prod/backend defines no subset named v3"), "{}", subset.message);
    let text = subset.to_string();
    assert!(text.contains("mistakes.yaml:53:9:"), "{text}");
    assert!(text.contains(": error: VirtualService prod/backend: spec.http[0].route[0].destination.subset: subset v3"), "{text}");

    let host = one(&mesh, Code::UnknownHost);
    assert!(
        host.message
            .starts_with("destination host backnd.prod.svc.cluster.local is not a service"),
        "{}",
        host.message
    );
    let port = one(&mesh, Code::UnknownPort);
    assert_eq!(
        port.message,
        "backend.prod has no port 81 (its ports: [80])"
    );
}

#[test]
fn two_virtual_services_for_one_host() {
    let mesh = mesh("diagnostics");
    let d = one(&mesh, Code::ConflictingVirtualServices);
    assert_eq!(d.severity, Severity::Error);
    assert_eq!(d.resource.as_ref().unwrap().name, "backend-again");
    assert!(
        d.message
            .contains("also routed by VirtualService prod/backend"),
        "{}",
        d.message
    );
    // The first one wins for the sidecars.
    let config = compile(&mesh, "backend-v1.prod");
    let vh = vhost(&config, 80, "backend.prod.svc.cluster.local:80");
    assert_eq!(vh.routes[0].name, "prod/backend/0");
}

#[test]
fn unknown_gateways_and_hosts_that_name_no_service() {
    let mesh = mesh("diagnostics");
    let gw = one(&mesh, Code::UnknownGateway);
    assert_eq!(
        gw.message,
        "gateway prod/public-gateway does not exist; no proxy serves these routes for it"
    );
    assert_eq!(gw.field.as_deref(), Some("spec.gateways[0]"));
    let host = one(&mesh, Code::VirtualServiceHostWithoutService);
    assert_eq!(host.resource.as_ref().unwrap().name, "typo-host");
    assert!(
        host.message
            .starts_with("host my-app.prod.svc.cluster.local matches no service")
    );
}

#[test]
fn http_routes_on_a_port_without_protocol() {
    let mesh = mesh("diagnostics");
    let found = findings(&mesh, Code::PortWithoutProtocol);
    assert!(!found.is_empty());
    assert!(found.iter().all(|d| d.severity == Severity::Info));
    assert!(
        found[0]
            .message
            .contains("port 80 of backend.prod has no protocol prefix in its name (`web`)"),
        "{}",
        found[0].message
    );
}

#[test]
fn a_route_to_a_missing_subset_or_host_names_a_missing_cluster_with_why() {
    let mesh = mesh("diagnostics");
    let config = compile(&mesh, "backend-v1.prod");
    let subset = "outbound|80|v3|backend.prod.svc.cluster.local";
    let host = "outbound|80||backnd.prod.svc.cluster.local";
    assert_eq!(
        config.missing_clusters[subset],
        "subset v3 of backend.prod.svc.cluster.local is not defined: DestinationRule prod/backend defines no subset named v3"
    );
    assert_eq!(
        config.missing_clusters[host],
        "no service or ServiceEntry declares host backnd.prod.svc.cluster.local"
    );
    assert!(
        !config
            .clusters
            .iter()
            .any(|c| c.name == subset || c.name == host)
    );
}

#[test]
fn a_host_for_the_gateways_of_a_mesh_virtual_service_is_not_a_mistake() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gateway");
    let loaded = skiff_api::load(&[dir]).unwrap();
    let extra = skiff_api::load_str(
        "extra.yaml",
        r#"
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: both
  namespace: prod
spec:
  hosts: [frontend, www.example.com]
  gateways: [frontend-gateway, mesh]
  http:
  - route:
    - destination:
        host: frontend
"#,
    );
    let all = skiff_api::ResourceSet::new(
        loaded
            .resources
            .into_vec()
            .into_iter()
            .chain(extra.resources.into_vec())
            .collect(),
    );
    let mesh = Mesh::build(&all, MeshOptions::default());
    assert!(findings(&mesh, Code::VirtualServiceHostWithoutService).is_empty());
    let config = compile(&mesh, "frontend.prod");
    let vh = vhost(&config, 80, "frontend.prod.svc.cluster.local:80");
    assert_eq!(vh.routes[0].name, "prod/both/0");
}

/// Every seed page's examples (as the api crate keeps them) build into a mesh, and the
/// model catches the gateway mistake in seed 002: the VirtualService is for
/// `order-api.example.com` but the gateway serves `api.example.com`.
#[test]
fn the_seed_examples_build_and_their_mistakes_are_found() {
    let seeds =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/tests/fixtures/seeds");
    let mut dirs: Vec<_> = std::fs::read_dir(&seeds)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 5, "{dirs:?}");
    for dir in dirs {
        let loaded = skiff_api::load(&[&dir]).unwrap();
        let mesh = Mesh::build(&loaded.resources, MeshOptions::default());
        for id in mesh.proxies() {
            assert!(mesh.compile(id).is_some());
        }
        if dir.ends_with("002-service-mesh-istio") {
            let mismatch = findings(&mesh, Code::GatewayHostMismatch);
            assert_eq!(mismatch.len(), 1, "{mismatch:#?}");
            assert!(mismatch[0].message.contains("\"order-api.example.com\""));
        }
    }
}
