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

#[test]
fn telemetry_settings_round_trip() {
    use skiff_model::config::{
        AccessLogConfig, AccessLogProvider, MeshAccessLog, MetricOverride, TagChange, TracingConfig,
    };
    let mut config = ProxyConfig::default();
    config.telemetry.applied = vec!["prod/backend".into()];
    config.telemetry.server.metrics.overrides = vec![MetricOverride {
        metric: "REQUEST_COUNT".into(),
        disabled: true,
        tags: vec![TagChange {
            name: "request_protocol".into(),
            value: None,
        }],
    }];
    config.telemetry.client.access_log = Some(AccessLogConfig {
        providers: vec![AccessLogProvider {
            name: "envoy".into(),
            disabled: false,
            filter: Some("response.code >= 500".into()),
        }],
    });
    config.telemetry.client.tracing = Some(TracingConfig {
        provider: Some("zipkin".into()),
        random_sampling_percentage: Some(1.0),
        ..TracingConfig::default()
    });
    config.mesh_access_log = Some(MeshAccessLog {
        file: "/dev/stdout".into(),
        json: true,
    });
    let body = encode_proxy_config(&config);
    assert_eq!(decode_proxy_config("p", &body).unwrap(), config);
    // A config without Telemetry says nothing about it on the wire.
    let plain = encode_proxy_config(&ProxyConfig::default());
    assert!(!String::from_utf8_lossy(&plain).contains("telemetry"));
}
