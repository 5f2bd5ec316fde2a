//! Transport: the one way the proxy dials an upstream and the one way its inbound side
//! accepts a peer, in plain TCP or mesh mutual TLS.
//!
//! - **Dial** ([`dial`]): TCP connect under the cluster's connect timeout; to an
//!   endpoint that asks for mutual TLS, the TLS 1.3 handshake with this workload's
//!   certificate, checking that the server is the endpoint's SPIFFE identity; then, to
//!   a peer proxy, the [`transport header`](crate::transport_header) naming the app
//!   port (inside the TLS session when there is one).
//! - **Accept** ([`accept`]): the first byte of an inbound connection tells TLS (a
//!   handshake record, `0x16`) from the plain transport header; TLS is terminated with
//!   the mesh server config, which requires a client certificate from the mesh trust
//!   bundle, and the peer's SPIFFE id goes into the connection context. Whether the
//!   port then takes the connection is the PeerAuthentication's call, made by the
//!   inbound listener once the transport header names the port.
//!
//! Both sides carry their stream as [`Io`], an enum rather than a boxed trait object,
//! so plain connections pay nothing for TLS being possible.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use skiff_identity::{IdentityError, MeshTls};
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

use crate::Error;
use crate::conn::TlsInfo;
use crate::transport_header::TransportHeader;
use crate::upstream::EndpointState;

mod origination;

pub(crate) use origination::{Origination, compile as origination_for, read_certs, read_key};

/// How long a peer has to finish the TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection, plain or TLS, either direction.
#[derive(Debug)]
pub(crate) enum Io {
    Plain(TcpStream),
    Client(Box<client::TlsStream<TcpStream>>),
    Server(Box<server::TlsStream<TcpStream>>),
}

/// How to reach one endpoint: its TLS, decided when the snapshot is built.
#[derive(Clone)]
pub(crate) enum UpstreamTls {
    /// Plain text.
    Plain,
    /// Mesh mutual TLS to a peer proxy that must prove this identity.
    Mesh {
        identity: Arc<str>,
        config: Arc<rustls::ClientConfig>,
        /// The server name to send: the DestinationRule's `sni` under `ISTIO_MUTUAL`
        /// (what an egress gateway's server picks by), else skiff's fixed one.
        server_name: Option<ServerName<'static>>,
    },
    /// TLS origination to a server outside the mesh (DestinationRule SIMPLE / MUTUAL).
    Origination(Origination),
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamTls::Plain => f.write_str("Plain"),
            UpstreamTls::Mesh { identity, .. } => write!(f, "Mesh({identity})"),
            UpstreamTls::Origination(o) => write!(f, "Origination({:?})", o.server_name),
        }
    }
}

/// The server name sent in mesh handshakes. The verifier checks the SPIFFE id, not the
/// name; a fixed name keeps the endpoint's address out of the ClientHello.
fn mesh_server_name() -> ServerName<'static> {
    ServerName::try_from("outbound.skiff.mesh").expect("a valid DNS name")
}

/// Connects to `ep`: TCP, then TLS when the endpoint asks for it, then the transport
/// header when it is behind a peer proxy.
pub(crate) async fn dial(ep: &EndpointState, timeout: std::time::Duration) -> Result<Io, Error> {
    let addr = ep.key.dial;
    let stream = match tokio::time::timeout(timeout, connect_from(ep.source, addr)).await {
        Err(_) => return Err(Error::ConnectTimeout { addr, timeout }),
        Ok(Err(source)) => return Err(Error::Connect { addr, source }),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    if let Some(keepalive) = ep.breaker.as_ref().and_then(|b| b.keepalive()) {
        set_keepalive(&stream, keepalive);
    }
    let mut io = match &ep.tls {
        UpstreamTls::Plain => Io::Plain(stream),
        UpstreamTls::Mesh {
            identity,
            config,
            server_name,
        } => {
            let name = server_name.clone().unwrap_or_else(mesh_server_name);
            let handshake = TlsConnector::from(config.clone()).connect(name, stream);
            match tokio::time::timeout(timeout, handshake).await {
                Err(_) => {
                    return Err(Error::Tls {
                        addr,
                        reason: format!("no TLS handshake within {timeout:?}"),
                    });
                }
                Ok(Err(e)) => {
                    return Err(Error::Tls {
                        addr,
                        reason: handshake_reason(&e, Some(identity)),
                    });
                }
                Ok(Ok(s)) => Io::Client(Box::new(s)),
            }
        }
        UpstreamTls::Origination(o) => {
            let handshake =
                TlsConnector::from(o.config.clone()).connect(o.server_name.clone(), stream);
            match tokio::time::timeout(timeout, handshake).await {
                Err(_) => {
                    return Err(Error::Tls {
                        addr,
                        reason: format!("no TLS handshake within {timeout:?}"),
                    });
                }
                Ok(Err(e)) => {
                    return Err(Error::Tls {
                        addr,
                        reason: format!("TLS origination to {:?}: {e}", o.server_name),
                    });
                }
                Ok(Ok(s)) => Io::Client(Box::new(s)),
            }
        }
    };
    if let Some(port) = ep.key.target_port {
        let ext = ep.exchange.load();
        let header = TransportHeader { target_port: port }.encode_with(&ext);
        io.write_all(&header)
            .await
            .map_err(|source| Error::Connect { addr, source })?;
    }
    tracing::debug!(upstream = %addr, target_port = ?ep.key.target_port, tls = ?ep.tls, "connected");
    Ok(io)
}

/// DestinationRule `tcpKeepalive` on an upstream socket: idle time, interval, probes
/// (what is unset keeps the system's value).
fn set_keepalive(
    stream: &TcpStream,
    (time, interval, probes): (
        Option<std::time::Duration>,
        Option<std::time::Duration>,
        Option<u32>,
    ),
) {
    let mut k = socket2::TcpKeepalive::new();
    if let Some(t) = time {
        k = k.with_time(t);
    }
    if let Some(i) = interval {
        k = k.with_interval(i);
    }
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    if let Some(p) = probes {
        k = k.with_retries(p);
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    let _ = probes;
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&k) {
        tracing::debug!(error = %e, "tcpKeepalive not applied");
    }
}

/// TCP connect to `addr`, from `source` when given (port chosen by the kernel).
async fn connect_from(source: Option<IpAddr>, addr: SocketAddr) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(addr).await;
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

/// What an accepted connection turned out to be.
pub(crate) enum Accepted {
    /// Plain bytes (the transport header comes next).
    Plain(Io),
    /// Mesh mutual TLS, with what the handshake established.
    Mesh(Io, TlsInfo),
}

/// Accepts a peer's connection: TLS when its first byte starts a TLS handshake, plain
/// otherwise. A TLS handshake that fails (no certificate, an unknown root, an expired
/// certificate) is an error that says so.
pub(crate) async fn accept(
    stream: TcpStream,
    mesh: Option<&MeshTls>,
    own_identity: Option<&str>,
) -> Result<Accepted, String> {
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first))
        .await
        .map_err(|_| "the peer sent nothing in time".to_owned())?
        .map_err(|e| e.to_string())?;
    if n == 0 || first[0] != 0x16 {
        return Ok(Accepted::Plain(Io::Plain(stream)));
    }
    let Some(mesh) = mesh else {
        return Err(
            "TLS connection refused: this proxy has no mesh identity yet (no certificate)"
                .to_owned(),
        );
    };
    let handshake = TlsAcceptor::from(mesh.server_config()).accept(stream);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Err(_) => return Err("no TLS handshake in time".to_owned()),
        Ok(Err(e)) => {
            return Err(format!(
                "TLS handshake failed: {}",
                handshake_reason(&e, None)
            ));
        }
        Ok(Ok(s)) => s,
    };
    let info = {
        let (_, session) = tls.get_ref();
        let peer =
            skiff_identity::peer_identity(session).map(|id| Arc::<str>::from(id.to_string()));
        let xfcc = match (&peer, own_identity) {
            (Some(peer), Some(own)) => {
                http::HeaderValue::try_from(format!("By={own};URI={peer}")).ok()
            }
            (Some(peer), None) => http::HeaderValue::try_from(format!("URI={peer}")).ok(),
            _ => None,
        };
        TlsInfo {
            peer_identity: peer,
            sni: session.server_name().map(Arc::from),
            alpn: session.alpn_protocol().map(Arc::from),
            xfcc,
        }
    };
    Ok(Accepted::Mesh(Io::Server(Box::new(tls)), info))
}

/// A handshake error in words: the identity crate's reason when the verifier refused
/// the peer ("certificate from an unknown root", "peer is … but … was expected").
fn handshake_reason(e: &io::Error, expected: Option<&str>) -> String {
    match IdentityError::from_handshake(e) {
        Some(reason) => reason.to_string(),
        None => match expected {
            Some(id) => format!("{e} (the peer should be {id})"),
            None => e.to_string(),
        },
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Io::Plain($s) => $e,
            Io::Client($s) => $e,
            Io::Server($s) => $e,
        }
    };
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Client(s) => s.is_write_vectored(),
            Io::Server(s) => s.is_write_vectored(),
        }
    }
}
