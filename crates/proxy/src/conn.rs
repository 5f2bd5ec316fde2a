//! The connection context: what the proxy knows about a downstream connection, made once
//! at accept and carried to every request on it and to its record.
//!
//! Policy, routing, the access log and (later) metrics read the context; none of them
//! derives it again. A connection whose destination is only learnt after accept (a
//! `CONNECT` tunnel, the transport header of an inbound connection) gets a context of its
//! own with [`Conn::to`].

use std::net::SocketAddr;
use std::sync::Arc;

use crate::app::ProxyInputs;
use crate::drain::DrainWatch;
use crate::limits::Abandoned;

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `:15001`, the app's own traffic to other services.
    Outbound,
    /// `:15006`, from peer proxies to this workload's app.
    Inbound,
    /// A gateway port, as written in the Gateway (before any offset).
    Gateway(u16),
}

impl Role {
    /// How the access log and traces name the listener's direction.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Outbound => "outbound",
            Role::Inbound => "inbound",
            Role::Gateway(_) => "gateway",
        }
    }
}

/// A destination named by the connection rather than by its requests: a `CONNECT`
/// tunnel's target, the original destination of a captured connection, or (inbound) the
/// app port a peer proxy asked for.
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    /// The name (or address) the client used; empty for inbound.
    pub(crate) host: Arc<str>,
    /// The destination port.
    pub(crate) port: u16,
}

/// What a TLS handshake with the downstream established.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsInfo {
    /// The peer's SPIFFE id (`spiffe://…`), from its certificate's URI SAN.
    pub(crate) peer_identity: Option<Arc<str>>,
    /// The server name the client asked for.
    pub(crate) sni: Option<Arc<str>>,
    /// The application protocol agreed on.
    #[allow(dead_code, reason = "kept for telemetry's connection security policy")]
    pub(crate) alpn: Option<Arc<[u8]>>,
    /// `x-forwarded-client-cert` for the requests of this connection, as Istio's
    /// sidecars set it on inbound requests: `By=<this workload>;URI=<the peer>`.
    pub(crate) xfcc: Option<http::HeaderValue>,
}

/// One downstream connection, as every request on it sees it.
#[derive(Debug)]
pub(crate) struct Conn {
    /// What the whole proxy shares.
    pub(crate) inputs: Arc<ProxyInputs>,
    /// The listener it came in on.
    pub(crate) role: Role,
    /// Set when the connection itself names its destination; otherwise each request's
    /// authority does.
    pub(crate) dest: Option<Destination>,
    /// The downstream's address.
    pub(crate) peer: SocketAddr,
    /// The address it connected to.
    pub(crate) local: SocketAddr,
    /// `None` for plain text.
    pub(crate) tls: Option<TlsInfo>,
    /// Fires when the proxy drains; held for as long as the connection is open.
    pub(crate) drain: DrainWatch,
    /// Inbound: the calling workload, from its transport header and certificate.
    pub(crate) peer_workload: Option<Arc<crate::metrics::Workload>>,
    /// Requests on it that ended normally and that the client abandoned.
    pub(crate) abandoned: Abandoned,
}

impl Conn {
    /// The context of a connection just accepted.
    pub(crate) fn accepted(
        inputs: Arc<ProxyInputs>,
        role: Role,
        peer: SocketAddr,
        local: SocketAddr,
        drain: DrainWatch,
    ) -> Arc<Conn> {
        Arc::new(Conn {
            inputs,
            role,
            dest: None,
            peer,
            local,
            tls: None,
            drain,
            peer_workload: None,
            abandoned: Abandoned::default(),
        })
    }

    /// The same connection, now known to go to `dest`.
    pub(crate) fn to(&self, dest: Destination) -> Arc<Conn> {
        Arc::new(Conn {
            inputs: self.inputs.clone(),
            role: self.role,
            dest: Some(dest),
            peer: self.peer,
            local: self.local,
            tls: self.tls.clone(),
            drain: self.drain.clone(),
            peer_workload: self.peer_workload.clone(),
            abandoned: Abandoned::default(),
        })
    }

    /// The same connection after its TLS handshake (or none) and its transport header:
    /// an inbound connection to app port `port` from `peer`.
    pub(crate) fn inbound(
        &self,
        tls: Option<TlsInfo>,
        port: u16,
        peer: Option<Arc<crate::metrics::Workload>>,
    ) -> Arc<Conn> {
        Arc::new(Conn {
            inputs: self.inputs.clone(),
            role: self.role,
            dest: Some(Destination {
                host: "".into(),
                port,
            }),
            peer: self.peer,
            local: self.local,
            tls,
            drain: self.drain.clone(),
            peer_workload: peer,
            abandoned: Abandoned::default(),
        })
    }

    /// The same connection after a TLS handshake this proxy terminated (a gateway
    /// server in `SIMPLE` or `MUTUAL` mode).
    pub(crate) fn with_tls(&self, tls: TlsInfo) -> Arc<Conn> {
        Arc::new(Conn {
            inputs: self.inputs.clone(),
            role: self.role,
            dest: self.dest.clone(),
            peer: self.peer,
            local: self.local,
            tls: Some(tls),
            drain: self.drain.clone(),
            peer_workload: self.peer_workload.clone(),
            abandoned: Abandoned::default(),
        })
    }

    /// The peer's SPIFFE id, when it showed a mesh certificate.
    pub(crate) fn peer_identity(&self) -> Option<&str> {
        self.tls.as_ref()?.peer_identity.as_deref()
    }
}
