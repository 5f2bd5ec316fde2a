//! The inbound listener (`:15006`): connections from peer proxies. Each starts with a
//! [`transport_header`](crate::transport_header) naming the app port; the proxy then
//! serves HTTP to the app at `<workload address>:<port>` (the port's `inbound|<port>||`
//! cluster, pooled connections), or copies bytes for TCP ports, by the port's declared
//! protocol.

use std::sync::Arc;
use std::time::Duration;

use skiff_model::config::Protocol;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::InboundRt;
use crate::conn::{Conn, Destination};
use crate::io::Rewind;
use crate::record::Record;
use crate::sniff::{self, Detected};
use crate::{ResponseFlag, tcp, transport_header};

/// How long a peer has to send the transport header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one connection from a peer proxy.
pub(crate) async fn serve(conn: Arc<Conn>, mut stream: TcpStream) {
    let rec = Record::tcp(&conn);
    let header = tokio::time::timeout(HEADER_TIMEOUT, transport_header::read(&mut stream)).await;
    let (header, rest) = match header {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            tracing::debug!(peer = %conn.peer, error = %e, "bad transport header; closing");
            finish(rec, ResponseFlag::DownstreamProtocolError);
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %conn.peer, "no transport header in time; closing");
            return;
        }
    };
    let Some(snapshot) = conn.inputs.current() else {
        return;
    };
    let Some(port) = snapshot.inbound_port(header.target_port) else {
        tracing::warn!(peer = %conn.peer, port = header.target_port, "peer asked for a port this workload does not expose; closing");
        finish(rec, ResponseFlag::NoRoute);
        return;
    };
    let conn = conn.to(Destination {
        host: "".into(),
        port: header.target_port,
    });
    let io = Rewind::new(rest, stream);
    match port.protocol {
        p if p.is_http() => crate::http::serve(conn, io).await,
        Protocol::Unspecified => {
            let mut io = io;
            match sniff::read(&mut io).await {
                Ok((Detected::Http1 | Detected::Http2, seen)) => {
                    crate::http::serve(conn, Rewind::new(seen, io)).await
                }
                Ok((_, seen)) => to_app(&conn, port, Rewind::new(seen, io), rec).await,
                Err(e) => tracing::debug!(error = %e, "sniffing failed"),
            }
        }
        _ => to_app(&conn, port, io, rec).await,
    }
}

fn finish(mut rec: Box<Record>, flag: ResponseFlag) {
    rec.flag = flag;
    rec.finish();
}

/// Opaque bytes to the app.
async fn to_app<I: AsyncRead + AsyncWrite + Unpin>(
    conn: &Arc<Conn>,
    port: &InboundRt,
    io: I,
    mut rec: Box<Record>,
) {
    // The record of the connection, now that its destination is known.
    rec.conn = conn.clone();
    tcp::routed(&mut rec, &port.name, &port.name);
    match tcp::connect(&port.cluster).await {
        Ok((up, ep)) => tcp::splice(io, up, ep, rec).await,
        Err(e) => tcp::failed(rec, &e),
    }
}
