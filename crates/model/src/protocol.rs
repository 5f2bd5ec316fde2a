//! Protocol selection: what a port carries, from its `appProtocol`, its name prefix
//! (`<protocol>[-<suffix>]`), or an explicit `protocol` field, as Istio's protocol
//! selection rules read them.

use std::fmt;

use crate::config::Protocol;

/// A protocol as a port declares it. Richer than [`Protocol`], which is how the proxy
/// carries it: `mongo`, `mysql` and `redis` are opaque TCP for the proxy, `grpc-web`
/// travels like HTTP/2, and UDP is not proxied at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeclaredProtocol {
    /// `http`: HTTP/1.1 (Istio also reads `http_proxy` this way).
    Http,
    /// `http2`: HTTP/2 in clear text.
    Http2,
    /// `https`: TLS that a sidecar passes through (as `tls`); a gateway may terminate it.
    Https,
    /// `grpc`.
    Grpc,
    /// `grpc-web`: carried as HTTP/2.
    GrpcWeb,
    /// `tcp`: opaque bytes.
    Tcp,
    /// `tls`: TLS passed through, routed by SNI.
    Tls,
    /// `mongo`: opaque TCP (Istio's MongoDB filter is off by default).
    Mongo,
    /// `mysql`: opaque TCP (Istio's MySQL filter is off by default).
    Mysql,
    /// `redis`: opaque TCP (Istio's Redis filter is off by default).
    Redis,
    /// `udp`: not proxied.
    Udp,
    /// Nothing recognisable: the proxy detects HTTP from the first bytes.
    Unspecified,
}

/// Where a port's protocol came from; `skiff analyze` and `describe` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolSource {
    /// The Kubernetes `appProtocol` field (it wins over the name).
    AppProtocol,
    /// The port name's prefix, `<protocol>[-<suffix>]`.
    PortName,
    /// An explicit `protocol` field (ServiceEntry and Gateway ports).
    ProtocolField,
    /// The Kubernetes transport protocol (`protocol: UDP`).
    Transport,
    /// A well-known server-first port (SMTP 25, DNS 53, MySQL 3306, MongoDB 27017), where
    /// detecting the protocol from the client's first bytes cannot work, so it is TCP.
    WellKnownPort,
    /// Nothing: the protocol is detected at run time.
    None,
}

impl DeclaredProtocol {
    /// Parses a protocol name as Istio does, ignoring ASCII case. `None` when the name
    /// is not a protocol Istio knows.
    pub fn parse(name: &str) -> Option<Self> {
        let p = match name.to_ascii_lowercase().as_str() {
            "http" | "http_proxy" => Self::Http,
            "http2" => Self::Http2,
            "https" => Self::Https,
            "grpc" => Self::Grpc,
            "grpc-web" => Self::GrpcWeb,
            "tcp" => Self::Tcp,
            "tls" => Self::Tls,
            "mongo" => Self::Mongo,
            "mysql" => Self::Mysql,
            "redis" => Self::Redis,
            "udp" => Self::Udp,
            _ => return None,
        };
        Some(p)
    }

    /// How the proxy carries this protocol. `None` for UDP, which is not proxied.
    pub fn carried_as(self) -> Option<Protocol> {
        Some(match self {
            Self::Http => Protocol::Http,
            Self::Http2 | Self::GrpcWeb => Protocol::Http2,
            Self::Grpc => Protocol::Grpc,
            Self::Https => Protocol::Https,
            Self::Tls => Protocol::Tls,
            Self::Tcp | Self::Mongo | Self::Mysql | Self::Redis => Protocol::Tcp,
            Self::Unspecified => Protocol::Unspecified,
            Self::Udp => return None,
        })
    }

    /// True when skiff carries this protocol as something simpler than what was declared
    /// (`mongo`, `mysql`, `redis` as opaque TCP): worth telling the user.
    pub fn is_downgraded(self) -> bool {
        matches!(self, Self::Mongo | Self::Mysql | Self::Redis)
    }

    /// The protocol's name as users write it, lower-case.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Http2 => "http2",
            Self::Https => "https",
            Self::Grpc => "grpc",
            Self::GrpcWeb => "grpc-web",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Mongo => "mongo",
            Self::Mysql => "mysql",
            Self::Redis => "redis",
            Self::Udp => "udp",
            Self::Unspecified => "unspecified",
        }
    }
}

impl fmt::Display for DeclaredProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Server-first protocols on their usual ports: sniffing would wait for client bytes
/// that never come, so these ports are TCP when nothing else is declared.
const SERVER_FIRST_PORTS: [u16; 4] = [25, 53, 3306, 27017];

/// The protocol of a Kubernetes Service port.
///
/// `transport` is the port's `protocol` field (TCP, UDP, SCTP; TCP when absent). Then
/// `appProtocol` decides when set (including Kubernetes' `kubernetes.io/h2c`,
/// `kubernetes.io/ws`, `kubernetes.io/wss`); otherwise the name's prefix before the
/// first `-` (`grpc-web` as a whole); otherwise a well-known server-first port is TCP;
/// otherwise the protocol is detected at run time.
pub fn of_service_port(
    port: u16,
    name: Option<&str>,
    app_protocol: Option<&str>,
    transport: Option<&str>,
) -> (DeclaredProtocol, ProtocolSource) {
    if transport.is_some_and(|t| t.eq_ignore_ascii_case("udp")) {
        return (DeclaredProtocol::Udp, ProtocolSource::Transport);
    }
    let (text, source) = match app_protocol {
        Some(app) => {
            let known = match app {
                "kubernetes.io/h2c" => Some(DeclaredProtocol::Http2),
                "kubernetes.io/ws" => Some(DeclaredProtocol::Http),
                "kubernetes.io/wss" => Some(DeclaredProtocol::Https),
                _ => None,
            };
            if let Some(p) = known {
                return (p, ProtocolSource::AppProtocol);
            }
            (app, ProtocolSource::AppProtocol)
        }
        None => (name.unwrap_or(""), ProtocolSource::PortName),
    };
    if let Some(p) = from_prefix(text) {
        return (p, source);
    }
    if SERVER_FIRST_PORTS.contains(&port) {
        return (DeclaredProtocol::Tcp, ProtocolSource::WellKnownPort);
    }
    (DeclaredProtocol::Unspecified, ProtocolSource::None)
}

/// The protocol of a port with an explicit `protocol` field (ServiceEntry, Gateway).
/// An empty or unknown value leaves the protocol to run-time detection.
pub fn of_protocol_field(protocol: Option<&str>) -> (DeclaredProtocol, ProtocolSource) {
    match protocol.and_then(DeclaredProtocol::parse) {
        Some(p) => (p, ProtocolSource::ProtocolField),
        None => (DeclaredProtocol::Unspecified, ProtocolSource::None),
    }
}

/// `<protocol>[-<suffix>]`: the protocol named by a port name (or `appProtocol`).
fn from_prefix(name: &str) -> Option<DeclaredProtocol> {
    if name
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("grpc-web"))
    {
        return Some(DeclaredProtocol::GrpcWeb);
    }
    let prefix = name.split('-').next().unwrap_or(name);
    DeclaredProtocol::parse(prefix)
}

#[cfg(test)]
mod tests;
