use skiff_model::config::ProxyConfig;

use super::*;
use crate::proto::Node;

fn first(id: &str, type_url: &str, names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node {
            id: id.to_owned(),
            metadata: Default::default(),
        }),
        type_url: type_url.to_owned(),
        resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
        ..Default::default()
    }
}

#[test]
fn first_request_must_name_the_node_the_type_and_only_itself() {
    assert_eq!(
        check_first(&first("a.prod", PROXY_CONFIG_TYPE_URL, &["a.prod"])).unwrap(),
        "a.prod"
    );
    assert_eq!(
        check_first(&first("a.prod", PROXY_CONFIG_TYPE_URL, &[])).unwrap(),
        "a.prod"
    );
    let no_node = check_first(&first(" ", PROXY_CONFIG_TYPE_URL, &[])).unwrap_err();
    assert_eq!(no_node.code(), tonic::Code::InvalidArgument);
    let wrong_type = check_first(&first("a.prod", "type.example/Other", &[])).unwrap_err();
    assert!(wrong_type.message().contains("unknown resource type"));
    let other = check_first(&first("a.prod", PROXY_CONFIG_TYPE_URL, &["b.prod"])).unwrap_err();
    assert!(
        other.message().contains("its own config"),
        "{}",
        other.message()
    );
}

#[test]
fn unknown_proxy_message_lists_a_bounded_number_of_known_ids() {
    let snapshot = PushSnapshot::new(
        1,
        (0..25).map(|i| {
            let mut c = ProxyConfig::default();
            c.node.id = format!("w{i:02}.prod");
            c
        }),
    );
    let status = unknown_proxy("ghost.dev", &snapshot);
    assert_eq!(status.code(), tonic::Code::NotFound);
    let m = status.message();
    assert!(
        m.contains("no workload named \"ghost\" in namespace \"dev\""),
        "{m}"
    );
    assert!(m.contains("w00.prod, w01.prod"), "{m}");
    assert!(m.ends_with("and 15 more"), "{m}");
    let empty = unknown_proxy("x", &PushSnapshot::default());
    assert!(
        empty.message().ends_with("known proxies: none"),
        "{}",
        empty.message()
    );
}
