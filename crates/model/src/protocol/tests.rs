use super::*;

fn declared(port: u16, name: &str) -> DeclaredProtocol {
    of_service_port(port, Some(name), None, None).0
}

#[test]
fn port_name_prefixes() {
    assert_eq!(declared(80, "http"), DeclaredProtocol::Http);
    assert_eq!(declared(80, "http-web"), DeclaredProtocol::Http);
    assert_eq!(declared(80, "HTTP-web"), DeclaredProtocol::Http);
    assert_eq!(declared(80, "http2-api"), DeclaredProtocol::Http2);
    assert_eq!(declared(80, "grpc"), DeclaredProtocol::Grpc);
    assert_eq!(declared(80, "grpc-backend"), DeclaredProtocol::Grpc);
    assert_eq!(declared(80, "grpc-web"), DeclaredProtocol::GrpcWeb);
    assert_eq!(declared(80, "grpc-web-x"), DeclaredProtocol::GrpcWeb);
    assert_eq!(declared(80, "tcp-db"), DeclaredProtocol::Tcp);
    assert_eq!(declared(443, "https-secure"), DeclaredProtocol::Https);
    assert_eq!(declared(443, "tls"), DeclaredProtocol::Tls);
    assert_eq!(declared(6379, "redis"), DeclaredProtocol::Redis);
    assert_eq!(declared(27017, "mongo-main"), DeclaredProtocol::Mongo);
    assert_eq!(declared(3306, "mysql"), DeclaredProtocol::Mysql);
}

#[test]
fn names_without_a_known_prefix_are_detected_at_run_time() {
    assert_eq!(declared(80, "web"), DeclaredProtocol::Unspecified);
    assert_eq!(declared(80, "httpx"), DeclaredProtocol::Unspecified);
    assert_eq!(declared(80, "api-http"), DeclaredProtocol::Unspecified);
    assert_eq!(
        of_service_port(80, None, None, None),
        (DeclaredProtocol::Unspecified, ProtocolSource::None)
    );
}

#[test]
fn server_first_ports_default_to_tcp() {
    assert_eq!(
        of_service_port(3306, Some("db"), None, None),
        (DeclaredProtocol::Tcp, ProtocolSource::WellKnownPort)
    );
    assert_eq!(declared(27017, ""), DeclaredProtocol::Tcp);
    assert_eq!(declared(3307, ""), DeclaredProtocol::Unspecified);
}

#[test]
fn app_protocol_wins_over_the_name() {
    assert_eq!(
        of_service_port(80, Some("tcp-x"), Some("http"), None),
        (DeclaredProtocol::Http, ProtocolSource::AppProtocol)
    );
    assert_eq!(
        of_service_port(80, Some("http"), Some("kubernetes.io/h2c"), None).0,
        DeclaredProtocol::Http2
    );
    assert_eq!(
        of_service_port(80, Some("http"), Some("kubernetes.io/wss"), None).0,
        DeclaredProtocol::Https
    );
    // An appProtocol skiff does not know replaces the name all the same.
    assert_eq!(
        of_service_port(80, Some("http"), Some("example.com/custom"), None).0,
        DeclaredProtocol::Unspecified
    );
}

#[test]
fn udp_ports_are_not_proxied() {
    let (p, source) = of_service_port(53, Some("dns"), None, Some("UDP"));
    assert_eq!(
        (p, source),
        (DeclaredProtocol::Udp, ProtocolSource::Transport)
    );
    assert_eq!(p.carried_as(), None);
}

#[test]
fn how_declared_protocols_are_carried() {
    assert_eq!(
        DeclaredProtocol::GrpcWeb.carried_as(),
        Some(Protocol::Http2)
    );
    assert_eq!(DeclaredProtocol::Redis.carried_as(), Some(Protocol::Tcp));
    assert!(DeclaredProtocol::Redis.is_downgraded());
    assert!(!DeclaredProtocol::Tcp.is_downgraded());
    assert_eq!(DeclaredProtocol::Https.carried_as(), Some(Protocol::Https));
    assert_eq!(of_protocol_field(Some("HTTP")).0, DeclaredProtocol::Http);
    assert_eq!(
        of_protocol_field(Some("GRPC-WEB")).0,
        DeclaredProtocol::GrpcWeb
    );
    assert_eq!(of_protocol_field(None).0, DeclaredProtocol::Unspecified);
}
