//! TLS for the control plane's gRPC port (xDS and CA), over tokio-rustls.
//!
//! Server: [`tls_incoming`] turns a `TcpListener` into the stream of TLS connections
//! that tonic's `Server::serve_with_incoming` takes; each request then carries a
//! [`PeerInfo`] extension with the caller's SPIFFE id, when it showed a certificate.
//! Client: [`connect`] (or [`GrpcConnector`] with tonic's `Endpoint`) makes a
//! `Channel` that checks the control plane's SPIFFE id and shows the workload's
//! certificate if the [`MeshTls`] has one.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{IdentityError, MeshTls, SpiffeId, peer_identity};

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for tonic to take them.
const BACKLOG: usize = 64;

/// What the server knows of a caller: the request extension of every call that came
/// over [`tls_incoming`] (`request.extensions().get::<PeerInfo>()`).
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The caller's address.
    pub remote_addr: SocketAddr,
    /// The SPIFFE id of the client certificate it showed (verified against the trust
    /// bundle), `None` if it showed none.
    pub identity: Option<SpiffeId>,
}

/// A server-side TLS connection, as tonic takes it.
#[derive(Debug)]
pub struct TlsConn {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
}

impl TlsConn {
    /// Who the caller is.
    pub fn peer(&self) -> &PeerInfo {
        &self.info
    }
}

impl Connected for TlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The TLS connections accepted on `listener` with `config` (usually
/// [`MeshTls::grpc_server_config`]), for `Server::serve_with_incoming`.
///
/// Handshakes run in their own tasks (a slow client holds up no one, and has 10 s);
/// a failed handshake is logged with the reason and the stream goes on. Accepting
/// stops when the stream is dropped. Must be called inside a Tokio runtime.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> ReceiverStream<Result<TlsConn, io::Error>> {
    let (tx, rx) = mpsc::channel(BACKLOG);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, remote_addr) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: say so, and let it ease.
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        match IdentityError::from_handshake(&err) {
                            Some(why) => {
                                tracing::warn!(%remote_addr, error = %why, "TLS client refused")
                            }
                            None => {
                                tracing::warn!(%remote_addr, error = %err, "TLS handshake failed")
                            }
                        }
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%remote_addr, "TLS handshake timed out");
                        return;
                    }
                };
                let identity = peer_identity(stream.get_ref().1);
                let info = PeerInfo {
                    remote_addr,
                    identity,
                };
                // The receiver is gone when the server stopped: drop the connection.
                let _ = tx.send(Ok(TlsConn { stream, info })).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A tonic connector that speaks TLS to the control plane and checks that it is
/// `expected`, for `Endpoint::connect_with_connector` (or `_lazy`).
///
/// The endpoint's URI should be `http://host:port`: TLS is done here, not by tonic.
#[derive(Clone)]
pub struct GrpcConnector {
    connector: TlsConnector,
}

impl std::fmt::Debug for GrpcConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrpcConnector(..)")
    }
}

impl GrpcConnector {
    /// A connector with `tls`'s certificate (if any) that expects the server to be
    /// `expected`.
    pub fn new(tls: &MeshTls, expected: &SpiffeId) -> Self {
        GrpcConnector {
            connector: TlsConnector::from(tls.grpc_client_config(expected)),
        }
    }
}

impl tower_service::Service<Uri> for GrpcConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.connector.clone();
        Box::pin(async move {
            let invalid = |what: &str| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("control plane address {uri}: {what}"),
                )
            };
            let host = uri.host().ok_or_else(|| invalid("no host"))?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
            // Not checked by the verifier (the SPIFFE id is); only sent as SNI for
            // a DNS name.
            let server_name =
                ServerName::try_from(host.clone()).map_err(|_| invalid("not a host name"))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}

/// A gRPC channel to the control plane at `endpoint` (`http://host:port`; TLS is
/// added here), which must show the certificate of `expected`; shows `tls`'s
/// certificate if it has one. Connects before returning.
pub async fn connect(
    endpoint: Endpoint,
    tls: &MeshTls,
    expected: &SpiffeId,
) -> Result<Channel, IdentityError> {
    Ok(endpoint
        .connect_with_connector(GrpcConnector::new(tls, expected))
        .await?)
}
