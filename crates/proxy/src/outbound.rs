//! The outbound listener (`:15001`): the app's own traffic to other services.
//!
//! In explicit mode the app uses the proxy as its HTTP proxy
//! (`HTTP_PROXY=http://<addr>:15001`): a request's authority (absolute-form URI, or the
//! `Host` header) is the destination, port 80 unless it says otherwise. For TCP services
//! the app opens a `CONNECT host:port` tunnel. Once the destination is known — from a
//! tunnel here, from the socket's original destination under transparent capture — the
//! connection is served by [`serve_destination`] according to the port's protocol.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use skiff_model::config::Protocol;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::conn::{Conn, Destination};
use crate::forward::RespBody;
use crate::io::Rewind;
use crate::record::{Pending, Record};
use crate::sniff::{self, Detected};
use crate::{Error, ResponseFlag, respond, tcp};

/// Serves one connection from the app: HTTP requests, each routed by its authority.
pub(crate) async fn serve(conn: Arc<Conn>, stream: TcpStream) {
    crate::http::serve(conn, stream).await;
}

/// Serves a connection whose destination is known: HTTP ports are served as HTTP with
/// that destination as the default authority; undeclared ports are sniffed; the rest is
/// carried as TCP by the port's TCP route.
///
/// Boxed: a tunnel's HTTP requests can open tunnels again, and the future type must not
/// contain itself.
pub(crate) fn serve_destination<I>(
    conn: Arc<Conn>,
    io: I,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(serve_destination_inner(conn, io))
}

async fn serve_destination_inner<I>(conn: Arc<Conn>, mut io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(snapshot) = conn.inputs.current() else {
        return;
    };
    let Some(dest) = conn.dest.clone() else {
        return;
    };
    let Some(protocol) = snapshot.outbound_port(dest.port).map(|p| p.protocol) else {
        tracing::debug!(port = dest.port, "no outbound port; closing");
        return;
    };
    match protocol {
        p if p.is_http() => crate::http::serve(conn, io).await,
        Protocol::Unspecified => match sniff::read(&mut io).await {
            Ok((Detected::Http1 | Detected::Http2, seen)) => {
                crate::http::serve(conn, Rewind::new(seen, io)).await
            }
            Ok((_, seen)) => tcp_to(&conn, Rewind::new(seen, io), &dest).await,
            Err(e) => tracing::debug!(error = %e, "sniffing failed"),
        },
        _ => tcp_to(&conn, io, &dest).await,
    }
}

/// Carries a connection to `dest` by the port's TCP or TLS routes.
async fn tcp_to<I>(conn: &Arc<Conn>, io: I, dest: &Destination)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let Some(snapshot) = conn.inputs.current() else {
        return;
    };
    let Some(port) = snapshot.outbound_port(dest.port) else {
        return;
    };
    let ip = dest_ip(&dest.host);
    crate::l4::serve(conn, &snapshot, port, io, Some(&dest.host), ip).await
}

/// The address a destination names, when it is one (`10.0.0.1`, `[::1]`).
fn dest_ip(host: &str) -> Option<std::net::IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// `CONNECT host:port`: for a TCP port, connect upstream first (so a failure is an HTTP
/// error the app sees), then answer 200 and copy bytes; for HTTP and undeclared ports,
/// and ports routed by SNI (whose route is known only from the ClientHello), answer 200
/// and serve the tunnel as a connection to that destination.
pub(crate) async fn connect(conn: Arc<Conn>, mut req: Request<Incoming>) -> Response<RespBody> {
    let Some(snapshot) = conn.inputs.current() else {
        return respond::local(
            StatusCode::SERVICE_UNAVAILABLE,
            "proxy has no config yet\n",
            Pending::default(),
        );
    };
    let Some(auth) = req.uri().authority().cloned() else {
        return respond::local(
            StatusCode::BAD_REQUEST,
            "CONNECT needs host:port\n",
            Pending::default(),
        );
    };
    let tunnel = conn.to(Destination {
        host: auth.host().to_ascii_lowercase().into(),
        port: auth.port_u16().unwrap_or(443),
    });
    let dest = tunnel.dest.as_ref().expect("just set");
    let Some(port) = snapshot.outbound_port(dest.port) else {
        return Box::pin(passthrough_tunnel(&snapshot, &conn, &tunnel, req)).await;
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    if port.protocol.is_http() || port.protocol == Protocol::Unspecified || port.routes_by_sni() {
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(up) => serve_destination(tunnel, TokioIo::new(up)).await,
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        });
        return respond::local(StatusCode::OK, "", Pending::default());
    }
    let mut rec = Record::tcp(&tunnel);
    let Some(route) = port.tcp_route(&dest.host) else {
        if port.tcp.iter().all(|r| !r.domains.is_empty()) {
            // No route names this host: a destination outside the registry.
            return Box::pin(passthrough_tunnel(&snapshot, &conn, &tunnel, req)).await;
        }
        let mut rec = Record::http(&conn, &req);
        rec.respond(404, ResponseFlag::NoRoute);
        return respond::local(StatusCode::NOT_FOUND, "", rec);
    };
    let mut cluster = &snapshot.clusters[route.destinations.pick()];
    tcp::routed(&mut rec, &route.name, &cluster.name);
    let original;
    if cluster.is_passthrough() {
        match crate::passthrough::original(cluster, &tunnel, &dest.host, dest.port).await {
            Ok(c) => {
                original = c;
                cluster = &original;
            }
            Err(e) => return connect_failed(&conn, &req, &e, &rec),
        }
    }
    let (up, ep, slot) = match tcp::connect(cluster).await {
        Ok(c) => c,
        Err(e) => return connect_failed(&conn, &req, &e, &rec),
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(down) => tcp::splice(TokioIo::new(down), up, ep, slot, rec).await,
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    respond::local(StatusCode::OK, "", Pending::default())
}

/// A `CONNECT` whose upstream could not be reached: the app gets the error as an HTTP
/// answer, and the record is the request's (the TCP record is dropped unwritten).
fn connect_failed(
    conn: &Arc<Conn>,
    req: &Request<Incoming>,
    e: &Error,
    tcp: &Record,
) -> Response<RespBody> {
    let mut rec = Record::http(conn, req);
    if let Some(r) = rec.record() {
        r.route = tcp.route.clone();
        r.cluster = tcp.cluster.clone();
    }
    respond::error(e, e.response_flag(), rec)
}

/// A tunnel to a destination no service covers: passed through or refused by the
/// `outboundTrafficPolicy` (the refusal is the tunnel's HTTP answer).
async fn passthrough_tunnel(
    snapshot: &crate::config::Snapshot,
    conn: &Arc<Conn>,
    tunnel: &Arc<Conn>,
    mut req: Request<Incoming>,
) -> Response<RespBody> {
    let dest = tunnel.dest.as_ref().expect("a tunnel has a destination");
    match crate::passthrough::tunnel(snapshot, tunnel, &dest.host, dest.port).await {
        Ok((up, ep, mut rec)) => {
            let on_upgrade = hyper::upgrade::on(&mut req);
            rec.upstream = Some(ep.clone());
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(down) => tcp::splice(TokioIo::new(down), up, ep, None, rec).await,
                    Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                }
            });
            respond::local(StatusCode::OK, "", Pending::default())
        }
        Err((e, cluster)) => {
            let mut rec = Record::http(conn, &req);
            if let Some(r) = rec.record() {
                r.cluster = Some(cluster.into());
                r.details = Some(e.to_string().into());
            }
            let flag = e.response_flag();
            if cluster == "BlackHoleCluster" {
                rec.respond(502, flag);
                return respond::local(StatusCode::BAD_GATEWAY, "", rec);
            }
            respond::error(&e, flag, rec)
        }
    }
}
