//! The inbound listener (`:15006`): connections from peer proxies.
//!
//! A connection is mesh mutual TLS or plain text ([`transport::accept`] tells them
//! apart by the first byte); inside it, a [`transport_header`](crate::transport_header)
//! names the app port. The port's PeerAuthentication mode then decides whether the
//! connection may go on: STRICT refuses plain text, DISABLE refuses mutual TLS,
//! PERMISSIVE takes both, and every refusal says which policy made it. The proxy then
//! serves HTTP to the app at `<workload address>:<port>` (the port's `inbound|<port>||`
//! cluster, pooled connections), or copies bytes for TCP ports, by the port's declared
//! protocol.

use std::sync::Arc;

use skiff_model::config::{MtlsMode, Protocol};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::InboundRt;
use crate::conn::Conn;
use crate::io::Rewind;
use crate::record::Record;
use crate::sniff::{self, Detected};
use crate::transport::{self, Accepted};
use crate::{ResponseFlag, authz, tcp, transport_header};

/// Serves one connection from a peer proxy.
pub(crate) async fn serve(conn: Arc<Conn>, stream: TcpStream) {
    let rec = Record::tcp(&conn);
    let mesh = conn.inputs.mesh.as_ref();
    let own = mesh
        .and_then(|m| m.current_cert())
        .map(|c| c.id().to_string());
    let (mut io, tls) = match transport::accept(stream, mesh, own.as_deref()).await {
        Ok(Accepted::Plain(io)) => (io, None),
        Ok(Accepted::Mesh(io, info)) => (io, Some(info)),
        Err(reason) => {
            tracing::warn!(peer = %conn.peer, "inbound connection refused: {reason}");
            refuse(rec, ResponseFlag::DownstreamProtocolError, reason);
            return;
        }
    };
    let header_timeout = conn.inputs.limits.transport_header_timeout;
    let header = tokio::time::timeout(
        header_timeout,
        transport_header::read_with_extensions(&mut io),
    )
    .await;
    let (header, ext, rest) = match header {
        Ok(Ok(h)) => h,
        Ok(Err(e)) if tls.is_none() && strict_everywhere(&conn).is_some() => {
            // Plain text that is not a proxy's transport header: a process outside the
            // mesh calling the inbound port directly. Say what refused it.
            let decided_by = strict_everywhere(&conn).unwrap_or_default();
            let reason = format!(
                "plaintext connection refused: {decided_by} (the caller is not a mesh proxy: {e})"
            );
            tracing::warn!(peer = %conn.peer, "{reason}");
            refuse(rec, ResponseFlag::DownstreamProtocolError, reason);
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(peer = %conn.peer, error = %e, "bad transport header; closing");
            refuse(rec, ResponseFlag::DownstreamProtocolError, e.to_string());
            return;
        }
        Err(_) => {
            tracing::warn!(peer = %conn.peer, timeout = ?header_timeout, "no transport header in time; closing");
            refuse(
                rec,
                ResponseFlag::DownstreamProtocolError,
                format!("no transport header within {header_timeout:?}"),
            );
            return;
        }
    };
    let Some(snapshot) = conn.inputs.current() else {
        return;
    };
    let Some(port) = snapshot.inbound_port(header.target_port) else {
        tracing::warn!(peer = %conn.peer, port = header.target_port, "peer asked for a port this workload does not expose; closing");
        refuse(
            rec,
            ResponseFlag::NoRoute,
            format!("port {} is not a port of this workload", header.target_port),
        );
        return;
    };
    if let Some(what) = mode_refuses(port.mtls, tls.is_some()) {
        let reason = format!("{what}: {}", port.mtls_decided_by);
        tracing::warn!(peer = %conn.peer, port = port.port, "{reason}");
        refuse(rec, ResponseFlag::NoRoute, reason);
        return;
    }
    let mesh_tls = tls.is_some();
    let peer = conn.inputs.metrics.as_ref().map(|m| {
        let principal = tls.as_ref().and_then(|t| t.peer_identity.as_ref());
        m.peer(&ext, principal)
    });
    let conn = conn.inbound(tls, header.target_port, peer);
    tracing::debug!(peer = %conn.peer, identity = conn.peer_identity().unwrap_or("-"), port = port.port, "inbound connection");
    let io = Rewind::new(rest, io);
    let port_number = port.port;
    let revoked = |conn: &Arc<Conn>| {
        let conn = conn.clone();
        async move { revoked(&conn, port_number, mesh_tls, false).await }
    };
    match port.protocol {
        p if p.is_http() => crate::http::serve_until(conn.clone(), io, revoked(&conn)).await,
        Protocol::Unspecified => {
            let mut io = io;
            match sniff::read(&mut io).await {
                Ok((Detected::Http1 | Detected::Http2, seen)) => {
                    let stop = revoked(&conn);
                    crate::http::serve_until(conn, Rewind::new(seen, io), stop).await
                }
                Ok((_, seen)) => to_app(&conn, port, Rewind::new(seen, io), rec).await,
                Err(e) => tracing::debug!(error = %e, "sniffing failed"),
            }
        }
        _ => to_app(&conn, port, io, rec).await,
    }
}

/// What authorization knows of a plain TCP connection.
fn tcp_attrs(conn: &Conn, port: u16) -> authz::Attrs<'_> {
    authz::Attrs {
        peer_ip: conn.peer.ip(),
        remote_ip: conn.peer.ip(),
        peer: conn.peer_identity(),
        dest_ip: conn.local.ip(),
        dest_port: port,
        sni: conn.tls.as_ref().and_then(|t| t.sni.as_deref()),
        http: None,
        jwt: None,
    }
}

/// Finishes the record of a connection closed before it reached the app.
fn refuse(mut rec: Box<Record>, flag: ResponseFlag, reason: String) {
    rec.flag = flag;
    rec.details = Some(reason.into());
    rec.finish();
}

/// Opaque bytes to the app.
async fn to_app<I: AsyncRead + AsyncWrite + Unpin>(
    conn: &Arc<Conn>,
    port: &InboundRt,
    io: I,
    mut rec: Box<Record>,
) {
    // The record of the connection, now that its destination and peer are known.
    rec.conn = conn.clone();
    tcp::routed(&mut rec, &port.name, &port.name);
    rec.service = port.cluster.service.clone();
    if let Some(snapshot) = conn.inputs.current()
        && let Some(details) = snapshot.authz.check(&tcp_attrs(conn, port.port)).details()
    {
        tracing::info!(peer = %conn.peer, "connection closed: {details}");
        rec.details = Some(details.into());
        rec.finish();
        return;
    }
    match tcp::connect(&port.cluster).await {
        Ok((up, ep, slot)) => {
            let stop = revoked(conn, port.port, conn.tls.is_some(), true);
            tcp::splice_until(io, up, ep, slot, rec, stop).await
        }
        Err(e) => tcp::failed(rec, &e),
    }
}

/// Resolves when a new config no longer takes this connection, as ztunnel re-checks
/// open connections and Envoy drains those of a changed filter chain: its port is gone,
/// the port's mTLS mode now refuses its kind (plain text under STRICT, mutual TLS under
/// DISABLE), or (`tcp`) authorization now denies it. HTTP requests are authorized one
/// by one anyway.
async fn revoked(conn: &Conn, port: u16, mesh_tls: bool, tcp: bool) -> Arc<str> {
    let mut changes = conn.inputs.config_changes();
    loop {
        if changes.changed().await.is_err() {
            return std::future::pending().await;
        }
        let Some(snapshot) = conn.inputs.current() else {
            continue;
        };
        let Some(p) = snapshot.inbound_port(port) else {
            return format!(
                "after a config change, port {port} is no longer a port of this workload"
            )
            .into();
        };
        if let Some(what) = mode_refuses(p.mtls, mesh_tls) {
            return format!("after a policy change, {what}: {}", p.mtls_decided_by).into();
        }
        if tcp && let Some(details) = snapshot.authz.check(&tcp_attrs(conn, port)).details() {
            return format!("after a policy change, {details}").into();
        }
    }
}

/// When every inbound port of the workload is STRICT, what made the first one so
/// (e.g. "PeerAuthentication prod/default is STRICT"): a plain-text connection would be
/// refused whichever port it asked for.
fn strict_everywhere(conn: &Conn) -> Option<Arc<str>> {
    let snapshot = conn.inputs.current()?;
    let first = snapshot.inbound.first()?;
    snapshot
        .inbound
        .iter()
        .all(|p| p.mtls == MtlsMode::Strict)
        .then(|| first.mtls_decided_by.clone())
}

/// What a port's mode refuses of a connection, if it does.
fn mode_refuses(mode: MtlsMode, mesh_tls: bool) -> Option<&'static str> {
    match (mode, mesh_tls) {
        (MtlsMode::Strict, false) => Some("plaintext connection refused"),
        (MtlsMode::Disable, true) => Some("mutual TLS connection refused"),
        _ => None,
    }
}
