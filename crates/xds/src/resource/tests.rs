use super::*;

#[test]
fn version_is_stable_and_content_addressed() {
    // Known FNV-1a 64 values: the version must not depend on the process or platform.
    assert_eq!(version_of(b""), "cbf29ce484222325");
    assert_eq!(version_of(b"a"), "af63dc4c8601ec8c");
    assert_eq!(version_of(b"foobar"), "85944171f73967e8");
    assert_ne!(version_of(b"{\"a\":1}"), version_of(b"{\"a\":2}"));
}

#[test]
fn body_round_trips() {
    let mut config = ProxyConfig::default();
    config.node.id = "backend-v1.prod".into();
    config.node.namespace = "prod".into();
    let body = encode_proxy_config(&config);
    assert_eq!(
        decode_proxy_config("backend-v1.prod", &body).unwrap(),
        config
    );
    assert_eq!(version_of(&body), version_of(&encode_proxy_config(&config)));
}

#[test]
fn garbage_body_is_a_decode_error_naming_the_resource() {
    let err = decode_proxy_config("x.y", b"{not json").unwrap_err();
    let message = err.to_string();
    assert!(message.contains("\"x.y\""), "{message}");
    assert!(message.contains(PROXY_CONFIG_TYPE_URL), "{message}");
}
