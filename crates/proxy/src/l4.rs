//! Opaque connections routed by TCP and TLS routes: the sidecar's TCP and TLS ports and
//! the gateway's TCP and `PASSTHROUGH` servers.
//!
//! When a route of the port is chosen by SNI, the ClientHello is read first (without
//! terminating TLS) and replayed upstream; otherwise the connection goes straight to
//! its route. Then: pick a destination by weight, connect, copy bytes both ways.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::{L4Target, PortRoutes, Snapshot};
use crate::conn::Conn;
use crate::io::Rewind;
use crate::record::Record;
use crate::sniff::sni::{self, Hello};
use crate::{ResponseFlag, tcp};

/// How long a client has to send its ClientHello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Routes a connection to `port` (of `snapshot`) sent to `host` / `ip`, and carries it.
pub(crate) async fn serve<I>(
    conn: &Arc<Conn>,
    snapshot: &Arc<Snapshot>,
    port: &PortRoutes,
    mut io: I,
    host: Option<&str>,
    ip: Option<IpAddr>,
) where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let rec = Record::tcp(conn);
    if !port.routes_by_sni() {
        let target = L4Target {
            host,
            ip,
            sni: None,
        };
        return carry(snapshot, port, io, &target, rec).await;
    }
    let (hello, seen) = match tokio::time::timeout(HELLO_TIMEOUT, sni::read(&mut io)).await {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "reading the ClientHello failed");
            return refuse(
                rec,
                ResponseFlag::DownstreamConnectionTermination,
                e.to_string(),
            );
        }
        Err(_) => {
            let reason = "no TLS ClientHello within 10s".to_string();
            return refuse(rec, ResponseFlag::DownstreamProtocolError, reason);
        }
    };
    let sni = match &hello {
        Hello::Sni(name) => Some(name.as_str()),
        _ => None,
    };
    let target = L4Target { host, ip, sni };
    carry(snapshot, port, Rewind::new(seen, io), &target, rec).await
}

async fn carry<I>(
    snapshot: &Snapshot,
    port: &PortRoutes,
    io: I,
    target: &L4Target<'_>,
    mut rec: Box<Record>,
) where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let Some(route) = port.tcp_route_for(target) else {
        let reason = no_route(port.port, target, port.routes_by_sni());
        tracing::debug!("{reason}");
        return refuse(rec, ResponseFlag::NoRoute, reason);
    };
    let mut cluster = &snapshot.clusters[route.destinations.pick()];
    tcp::routed(&mut rec, &route.name, &cluster.name);
    // PASSTHROUGH: the address the connection was sent to (or the name it named).
    let original;
    if cluster.is_passthrough() {
        let ip = target.ip.map(|ip| ip.to_string());
        let Some(host) = ip.as_deref().or(target.host) else {
            let e = crate::Error::NoHealthyUpstream(format!(
                "{}: PASSTHROUGH load balancing needs the connection's destination, and it is not known",
                cluster.name
            ));
            return tcp::failed(rec, &e);
        };
        let conn = rec.conn.clone();
        match crate::passthrough::original(cluster, &conn, host, port.port).await {
            Ok(c) => {
                original = c;
                cluster = &original;
            }
            Err(e) => return tcp::failed(rec, &e),
        }
    }
    match tcp::connect(cluster).await {
        Ok((up, ep, slot)) => tcp::splice(io, up, ep, slot, rec).await,
        Err(e) => tcp::failed(rec, &e),
    }
}

/// Why no route took a connection, in words for the access log.
pub(crate) fn no_route(port: u16, t: &L4Target<'_>, by_sni: bool) -> String {
    let mut what = format!("no TCP or TLS route of port {port} matches the connection");
    if let Some(host) = t.host {
        what.push_str(&format!(" to {host}"));
    }
    if let Some(ip) = t.ip {
        what.push_str(&format!(" (address {ip})"));
    }
    match t.sni {
        Some(sni) => what.push_str(&format!(" with server name {sni}")),
        None if by_sni => what.push_str(" (it sent no TLS server name)"),
        None => {}
    }
    what
}

fn refuse(mut rec: Box<Record>, flag: ResponseFlag, reason: String) {
    rec.flag = flag;
    rec.details = Some(reason.into());
    rec.finish();
}
