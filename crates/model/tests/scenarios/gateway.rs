//! The frontend gateway of the seeds: VirtualService `hosts: ["*"]` bound with
//! `gateways: [frontend-gateway]`, and a second gateway with namespaced server hosts.

use skiff_model::config::{Protocol, ProxyKind};

use super::*;

const FRONTEND: &str = "outbound|80||frontend.prod.svc.cluster.local";

#[test]
fn a_workload_selected_by_a_gateway_is_a_gateway_proxy_even_without_sidecar() {
    let mesh = mesh("gateway");
    assert!(mesh.proxies().any(|p| p == "ingressgateway.istio-system"));
    assert_eq!(
        mesh.proxy_kind("ingressgateway.istio-system"),
        Some(ProxyKind::Gateway)
    );
    assert_eq!(mesh.proxy_kind("frontend.prod"), Some(ProxyKind::Sidecar));
    assert!(problems(&mesh).is_empty(), "{:#?}", problems(&mesh));
}

#[test]
fn every_host_on_port_80_goes_to_the_frontend() {
    let mesh = mesh("gateway");
    let config = compile(&mesh, "ingressgateway.istio-system");
    assert_eq!(config.node.kind, ProxyKind::Gateway);
    assert!(config.outbound.is_empty() && config.inbound.is_empty());
    let port = config
        .gateway
        .iter()
        .find(|p| p.port == 80)
        .expect("port 80");
    assert_eq!(port.protocol, Protocol::Http);
    assert_eq!(port.gateways, ["prod/frontend-gateway"]);
    assert_eq!(port.virtual_hosts.len(), 1);
    let vh = &port.virtual_hosts[0];
    assert_eq!(vh.domains, ["*"]);
    assert_eq!(vh.routes.len(), 1);
    assert_eq!(vh.routes[0].name, "prod/frontend/0");
    assert_eq!(
        vh.routes[0].matches[0].uri,
        Some(skiff_model::config::StringMatch::Prefix("/".into()))
    );
    assert_eq!(forward(&vh.routes[0]), [(FRONTEND.to_string(), 100)]);
    let frontend = cluster(&config, FRONTEND);
    assert_eq!(endpoints(frontend), ["127.0.0.10:8080"]);
    assert_eq!(frontend.endpoints[0].proxy_port, Some(15006));
}

#[test]
fn server_hosts_narrow_wildcard_virtual_service_hosts_and_filter_namespaces() {
    let mesh = mesh("gateway");
    let config = compile(&mesh, "ingressgateway.istio-system");
    let port = config
        .gateway
        .iter()
        .find(|p| p.port == 8080)
        .expect("port 8080");
    assert_eq!(port.gateways, ["istio-system/api-gateway"]);
    // `*.example.com` meets `prod/api.example.com`; `dev/*.dev.example.com` admits only
    // VirtualServices of namespace dev.
    let names: Vec<&str> = port.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["api.example.com:8080"]);
    assert_eq!(
        port.virtual_hosts[0].domains,
        ["api.example.com", "api.example.com:8080"]
    );
    assert_eq!(
        forward(&port.virtual_hosts[0].routes[0]),
        [(FRONTEND.to_string(), 100)]
    );
}

#[test]
fn sidecars_do_not_get_gateway_routes() {
    let mesh = mesh("gateway");
    let config = compile(&mesh, "frontend.prod");
    assert!(config.gateway.is_empty());
    let vh = vhost(&config, 80, "frontend.prod.svc.cluster.local:80");
    assert_eq!(vh.routes[0].name, "default");
}
