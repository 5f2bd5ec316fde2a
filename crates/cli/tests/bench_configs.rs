//! The static proxy configs the benchmark runs `skiff proxy` with must stay valid
//! `ProxyConfig` documents, and agree with the addresses `bench/run` uses.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use skiff_model::config::{ProxyConfig, RouteAction};

fn load(name: &str) -> ProxyConfig {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../bench/conf")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn client_side_config_routes_backend_bench_to_the_server_proxy() {
    let client = load("skiff-client.json");
    assert_eq!(
        client.node.address,
        Some("127.0.77.1".parse::<IpAddr>().unwrap())
    );
    let port = &client.outbound[0];
    assert_eq!(port.port, 80);
    let vhost = &port.virtual_hosts[0];
    assert!(vhost.domains.iter().any(|d| d == "backend.bench"));
    let RouteAction::Forward(forward) = &vhost.routes[0].action else {
        panic!("the bench route must forward");
    };
    let cluster = client
        .clusters
        .iter()
        .find(|c| c.name == forward.destinations[0].cluster)
        .expect("the route's cluster exists");
    let endpoint = &cluster.endpoints[0];
    assert_eq!(
        endpoint.address,
        "127.0.77.2:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(endpoint.proxy_port, Some(15006));
}

#[test]
fn server_side_config_serves_the_backend_port() {
    let server = load("skiff-server.json");
    assert_eq!(
        server.node.address,
        Some("127.0.77.2".parse::<IpAddr>().unwrap())
    );
    assert_eq!(server.inbound[0].target_port, 8080);
    assert!(server.inbound[0].protocol.is_http());
}

/// The `skiff-mtls` target's configs are the plain ones with mutual TLS turned on
/// (and the identities of bench/lib/certs.sh), so the two rows measure the same path.
#[test]
fn mtls_configs_are_the_plain_ones_with_mutual_tls() {
    use skiff_model::config::MtlsMode;

    let mut client = load("skiff-client-mtls.json");
    assert_eq!(
        client.node.spiffe_id,
        "spiffe://cluster.local/ns/bench/sa/bench-client"
    );
    let endpoint = &mut client.clusters[0].endpoints[0];
    assert!(endpoint.mtls && endpoint.sidecar);
    assert_eq!(
        endpoint.spiffe_id,
        "spiffe://cluster.local/ns/bench/sa/backend"
    );
    let plain = load("skiff-client.json");
    endpoint.mtls = false;
    endpoint.sidecar = plain.clusters[0].endpoints[0].sidecar;
    endpoint.spiffe_id = plain.clusters[0].endpoints[0].spiffe_id.clone();
    client.node = plain.node.clone();
    assert_eq!(client, plain);

    let mut server = load("skiff-server-mtls.json");
    assert_eq!(
        server.node.spiffe_id,
        "spiffe://cluster.local/ns/bench/sa/backend"
    );
    assert_eq!(server.inbound[0].mtls, MtlsMode::Strict);
    let plain = load("skiff-server.json");
    assert_ne!(plain.inbound[0].mtls, MtlsMode::Strict);
    server.inbound[0].mtls = plain.inbound[0].mtls;
    server.node = plain.node.clone();
    assert_eq!(server, plain);
}
