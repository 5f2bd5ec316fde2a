//! The proxy's one error type. Config errors are the reasons an update is rejected (the
//! text of a NACK); data-path errors know the response flag they show in the access log.

use std::net::SocketAddr;
use std::time::Duration;

/// Everything that can go wrong in the proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A route names a cluster that the config does not define.
    #[error("route {route}: destination cluster {cluster:?} is not among the config's clusters")]
    UnknownCluster {
        /// The route's name.
        route: String,
        /// The missing cluster.
        cluster: String,
    },
    /// A regular expression in a match does not compile.
    #[error("route {route}: regex {pattern:?} does not compile: {reason}")]
    InvalidRegex {
        /// The route's name.
        route: String,
        /// The pattern as written.
        pattern: String,
        /// What the regex compiler said.
        reason: String,
    },
    /// Any other invalid value in a config update.
    #[error("{place}: {reason}")]
    InvalidConfig {
        /// Where in the config (a route, cluster or port).
        place: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A listener could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's answer.
        source: std::io::Error,
    },
    /// A config file could not be read or parsed.
    #[error("config file {path}: {reason}")]
    ConfigFile {
        /// The file.
        path: String,
        /// Why it was not usable.
        reason: String,
    },
    /// The control plane address is not usable.
    #[error("control plane: {0}")]
    Control(String),
    /// The mesh identity agent could not get a certificate, or its inputs (trust
    /// bundle, bootstrap token, control plane address) are unusable; the message says
    /// which, in words an operator can act on.
    #[error("{0}")]
    Identity(String),
    /// The bytes at the start of an inbound connection are not a valid transport header.
    #[error("transport header: {0}")]
    TransportHeader(String),
    /// The upstream endpoint refused the connection or could not be reached.
    #[error("upstream connect error to {addr}: {source}")]
    Connect {
        /// The address dialled.
        addr: SocketAddr,
        /// The operating system's answer.
        source: std::io::Error,
    },
    /// The TLS handshake with an upstream failed: its certificate is from an unknown
    /// root, expired, or names another identity than the endpoint's.
    #[error("upstream TLS handshake with {addr} failed: {reason}")]
    Tls {
        /// The address dialled.
        addr: SocketAddr,
        /// What was wrong, in words.
        reason: String,
    },
    /// The upstream endpoint did not accept the connection within the cluster's connect
    /// timeout.
    #[error("upstream connect to {addr} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The address dialled.
        addr: SocketAddr,
        /// The cluster's connect timeout.
        timeout: Duration,
    },
    /// The upstream connection failed after it was established (reset, protocol error,
    /// closed before the response).
    #[error("upstream {addr} reset or closed the connection: {source}")]
    UpstreamReset {
        /// The endpoint.
        addr: SocketAddr,
        /// The HTTP layer's error.
        source: hyper::Error,
    },
    /// The route's timeout (or the retry policy's per-try timeout) expired.
    #[error("upstream request timeout after {0:?}")]
    Timeout(Duration),
    /// No byte of the request or its response moved for the stream idle timeout.
    #[error("stream idle timeout: no request or response bytes for {0:?}")]
    StreamIdle(Duration),
    /// A `connectionPool` limit of the cluster refused the request (circuit breaking).
    #[error("upstream overflow: cluster {cluster} is at its {limit} limit")]
    Overflow {
        /// The cluster.
        cluster: String,
        /// The DestinationRule field whose limit was reached.
        limit: &'static str,
    },
    /// A cluster has no endpoints.
    #[error("cluster {0} has no healthy upstream")]
    NoHealthyUpstream(String),
    /// I/O on a downstream connection.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The downstream's request body broke off while the proxy read it.
    #[error("downstream request body: {0}")]
    DownstreamBody(String),
}

impl Error {
    /// The access-log response flag that this error causes, if it ends a request.
    pub fn response_flag(&self) -> ResponseFlag {
        match self {
            Error::Connect { .. } | Error::ConnectTimeout { .. } | Error::Tls { .. } => {
                ResponseFlag::UpstreamConnectFailure
            }
            Error::UpstreamReset { .. } => ResponseFlag::UpstreamConnectionTermination,
            Error::Timeout(_) => ResponseFlag::UpstreamTimeout,
            Error::StreamIdle(_) => ResponseFlag::StreamIdleTimeout,
            Error::NoHealthyUpstream(_) => ResponseFlag::NoHealthyUpstream,
            Error::Overflow { .. } => ResponseFlag::UpstreamOverflow,
            Error::Io(_) | Error::DownstreamBody(_) => {
                ResponseFlag::DownstreamConnectionTermination
            }
            _ => ResponseFlag::None,
        }
    }

    pub(crate) fn config(place: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::InvalidConfig {
            place: place.into(),
            reason: reason.into(),
        }
    }
}

/// Why a request ended the way it did, as Envoy's access log spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFlag {
    /// Nothing unusual: `-`.
    None,
    /// `NR`: no route matched the request (404).
    NoRoute,
    /// `UH`: the chosen cluster has no endpoints (503).
    NoHealthyUpstream,
    /// `UF`: connecting to the upstream failed (503).
    UpstreamConnectFailure,
    /// `UC`: the upstream connection was reset or closed before the response (503).
    UpstreamConnectionTermination,
    /// `UT`: the route timeout expired (504).
    UpstreamTimeout,
    /// `UO`: a circuit breaker (`connectionPool` limit) refused the request (503).
    UpstreamOverflow,
    /// `URX`: the retry policy's attempts were used up.
    UpstreamRetryLimitExceeded,
    /// `DC`: the downstream closed the connection before the response completed.
    DownstreamConnectionTermination,
    /// `DI`: the request was delayed by fault injection.
    DelayInjected,
    /// `FI`: the request was aborted by fault injection.
    FaultInjected,
    /// `DPE`: the downstream spoke something the proxy could not parse (e.g. a bad
    /// transport header).
    DownstreamProtocolError,
    /// `NC`: the route names a cluster that does not exist (an unknown host or an
    /// undefined subset) (503).
    NoClusterFound,
    /// `SI`: the stream saw no activity for the stream idle timeout (408 when the
    /// response had not begun; else the stream was reset).
    StreamIdleTimeout,
    /// `DT`: a connection was closed at its maximum duration
    /// (`tcp.maxConnectionDuration` on an opaque TCP connection).
    DurationTimeout,
}

impl ResponseFlag {
    /// The short code.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseFlag::None => "-",
            ResponseFlag::NoRoute => "NR",
            ResponseFlag::NoHealthyUpstream => "UH",
            ResponseFlag::UpstreamConnectFailure => "UF",
            ResponseFlag::UpstreamConnectionTermination => "UC",
            ResponseFlag::UpstreamTimeout => "UT",
            ResponseFlag::UpstreamOverflow => "UO",
            ResponseFlag::UpstreamRetryLimitExceeded => "URX",
            ResponseFlag::DownstreamConnectionTermination => "DC",
            ResponseFlag::DelayInjected => "DI",
            ResponseFlag::FaultInjected => "FI",
            ResponseFlag::DownstreamProtocolError => "DPE",
            ResponseFlag::NoClusterFound => "NC",
            ResponseFlag::StreamIdleTimeout => "SI",
            ResponseFlag::DurationTimeout => "DT",
        }
    }
}

impl std::fmt::Display for ResponseFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
