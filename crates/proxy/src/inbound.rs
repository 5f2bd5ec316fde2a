//! The inbound listener (`:15006`): connections from peer proxies. Each starts with a
//! [`transport_header`](crate::transport_header) naming the app port; the proxy then
//! serves HTTP to the app at `<workload address>:<port>` (pooled connections), or
//! copies bytes for TCP ports, by the port's declared protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use skiff_model::config::Protocol;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::access_log::Pending;
use crate::app::ProxyInputs;
use crate::config::{InboundRt, Snapshot};
use crate::drain::DrainWatch;
use crate::forward::{self, ConnCtx, ListenerKind, RespBody};
use crate::io::Rewind;
use crate::sniff::{self, Detected};
use crate::tcp::{self, Names};
use crate::{ResponseFlag, transport_header};

/// How long a peer has to send the transport header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect timeout to the local app.
const APP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one connection from a peer proxy.
pub(crate) async fn serve(
    inputs: Arc<ProxyInputs>,
    mut stream: TcpStream,
    peer: SocketAddr,
    drain: DrainWatch,
) {
    let start = tcp::now();
    let header = tokio::time::timeout(HEADER_TIMEOUT, transport_header::read(&mut stream)).await;
    let (header, rest) = match header {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "bad transport header; closing");
            inputs.access_log.tcp(
                start.0,
                start.1,
                ResponseFlag::DownstreamProtocolError,
                0,
                0,
                None,
                "-",
                "-",
            );
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "no transport header in time; closing");
            return;
        }
    };
    let Some(snapshot) = inputs.current() else {
        return;
    };
    let Some(port) = snapshot.inbound_port(header.target_port) else {
        tracing::warn!(%peer, port = header.target_port, "peer asked for a port this workload does not expose; closing");
        inputs.access_log.tcp(
            start.0,
            start.1,
            ResponseFlag::NoRoute,
            0,
            0,
            None,
            "-",
            "-",
        );
        return;
    };
    let io = Rewind::new(rest, stream);
    let ctx = || {
        Arc::new(ConnCtx {
            inputs: inputs.clone(),
            listener: ListenerKind::Inbound {
                port: header.target_port,
            },
            peer,
            drain: drain.clone(),
        })
    };
    match port.protocol {
        p if p.is_http() => forward::serve(ctx(), io).await,
        Protocol::Unspecified => {
            let mut io = io;
            match sniff::read(&mut io).await {
                Ok((Detected::Http1 | Detected::Http2, seen)) => {
                    forward::serve(ctx(), Rewind::new(seen, io)).await
                }
                Ok((_, seen)) => to_app(&inputs, port, Rewind::new(seen, io), start).await,
                Err(e) => tracing::debug!(error = %e, "sniffing failed"),
            }
        }
        _ => to_app(&inputs, port, io, start).await,
    }
}

async fn to_app<I: AsyncRead + AsyncWrite + Unpin>(
    inputs: &ProxyInputs,
    port: &InboundRt,
    io: I,
    start: (std::time::SystemTime, std::time::Instant),
) {
    let names = Names {
        route: port.name.clone(),
        cluster: port.name.clone(),
    };
    match port.endpoint.connect_tcp(APP_CONNECT_TIMEOUT).await {
        Ok(up) => tcp::splice(&inputs.access_log, io, up, &port.endpoint, &names, start).await,
        Err(e) => tcp::failed(&inputs.access_log, start, &e, &names),
    }
}

/// One HTTP request from a peer, to the app.
pub(crate) async fn forward(
    snapshot: &Snapshot,
    port: u16,
    req: Request<Incoming>,
    mut log: Pending,
) -> Response<RespBody> {
    let Some(p) = snapshot.inbound_port(port) else {
        log.respond(404, ResponseFlag::NoRoute);
        return forward::local(StatusCode::NOT_FOUND, "", log);
    };
    if let Some(e) = log.entry() {
        e.route = Some(p.name.clone());
        e.cluster = Some(p.name.clone());
    }
    forward::forward_direct(&p.endpoint, APP_CONNECT_TIMEOUT, req, log).await
}
