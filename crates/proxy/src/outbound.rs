//! The outbound listener (`:15001`): the app's own traffic to other services.
//!
//! In explicit mode the app uses the proxy as its HTTP proxy
//! (`HTTP_PROXY=http://<addr>:15001`): a request's authority (absolute-form URI, or the
//! `Host` header) is the destination, port 80 unless it says otherwise. For TCP services
//! the app opens a `CONNECT host:port` tunnel. Once the destination is known — from a
//! tunnel here, from the socket's original destination under transparent capture — the
//! connection is served by [`serve_destination`] according to the port's protocol.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use skiff_model::config::Protocol;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::app::ProxyInputs;
use crate::drain::DrainWatch;
use crate::forward::{self, ConnCtx, Destination, ListenerKind, RespBody};
use crate::io::Rewind;
use crate::sniff::{self, Detected};
use crate::tcp::{self, Names};
use crate::{Error, ResponseFlag};

/// Serves one connection from the app: HTTP requests, each routed by its authority.
pub(crate) async fn serve(
    inputs: Arc<ProxyInputs>,
    stream: TcpStream,
    peer: SocketAddr,
    drain: DrainWatch,
) {
    let ctx = Arc::new(ConnCtx {
        inputs,
        listener: ListenerKind::Outbound { dest: None },
        peer,
        drain,
    });
    forward::serve(ctx, stream).await;
}

/// Serves a connection whose destination is known: HTTP ports are served as HTTP with
/// that destination as the default authority; undeclared ports are sniffed; the rest is
/// carried as TCP by the port's TCP route.
///
/// Boxed: a tunnel's HTTP requests can open tunnels again, and the future type must not
/// contain itself.
pub(crate) fn serve_destination<I>(
    ctx: Arc<ConnCtx>,
    io: I,
    dest: Destination,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(serve_destination_inner(ctx, io, dest))
}

async fn serve_destination_inner<I>(ctx: Arc<ConnCtx>, mut io: I, dest: Destination)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(snapshot) = ctx.inputs.current() else {
        return;
    };
    let Some(protocol) = snapshot.outbound_port(dest.port).map(|p| p.protocol) else {
        tracing::debug!(port = dest.port, "no outbound port; closing");
        return;
    };
    let http_ctx = |ctx: &ConnCtx| {
        Arc::new(ConnCtx {
            inputs: ctx.inputs.clone(),
            listener: ListenerKind::Outbound {
                dest: Some(dest.clone()),
            },
            peer: ctx.peer,
            drain: ctx.drain.clone(),
        })
    };
    match protocol {
        p if p.is_http() => forward::serve(http_ctx(&ctx), io).await,
        Protocol::Unspecified => match sniff::read(&mut io).await {
            Ok((Detected::Http1 | Detected::Http2, seen)) => {
                forward::serve(http_ctx(&ctx), Rewind::new(seen, io)).await
            }
            Ok((_, seen)) => tcp_to(&ctx.inputs, Rewind::new(seen, io), &dest).await,
            Err(e) => tracing::debug!(error = %e, "sniffing failed"),
        },
        _ => tcp_to(&ctx.inputs, io, &dest).await,
    }
}

/// Carries a connection to `dest` by the port's TCP route.
async fn tcp_to<I>(inputs: &ProxyInputs, io: I, dest: &Destination)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let start = tcp::now();
    let Some(snapshot) = inputs.current() else {
        return;
    };
    let Some(route) = snapshot
        .outbound_port(dest.port)
        .and_then(|p| p.tcp_route(&dest.host))
    else {
        let names = Names {
            route: "-".into(),
            cluster: "-".into(),
        };
        inputs.access_log.tcp(
            start.0,
            start.1,
            ResponseFlag::NoRoute,
            0,
            0,
            None,
            &names.route,
            &names.cluster,
        );
        return;
    };
    let cluster = &snapshot.clusters[route.destinations.pick()];
    let names = Names {
        route: route.name.clone(),
        cluster: cluster.name.clone(),
    };
    match tcp::connect(cluster).await {
        Ok((up, ep)) => tcp::splice(&inputs.access_log, io, up, &ep, &names, start).await,
        Err(e) => tcp::failed(&inputs.access_log, start, &e, &names),
    }
}

/// `CONNECT host:port`: for a TCP port, connect upstream first (so a failure is an HTTP
/// error the app sees), then answer 200 and copy bytes; for HTTP and undeclared ports,
/// answer 200 and serve the tunnel as a connection to that destination.
pub(crate) async fn connect(ctx: Arc<ConnCtx>, mut req: Request<Incoming>) -> Response<RespBody> {
    let inputs = &ctx.inputs;
    let Some(snapshot) = inputs.current() else {
        return forward::local(
            StatusCode::SERVICE_UNAVAILABLE,
            "proxy has no config yet\n",
            Default::default(),
        );
    };
    let Some(auth) = req.uri().authority().cloned() else {
        return forward::local(
            StatusCode::BAD_REQUEST,
            "CONNECT needs host:port\n",
            Default::default(),
        );
    };
    let dest = Destination {
        host: auth.host().to_ascii_lowercase().into(),
        port: auth.port_u16().unwrap_or(443),
    };
    let Some(port) = snapshot.outbound_port(dest.port) else {
        let mut log = inputs.access_log.begin(&req);
        log.respond(404, ResponseFlag::NoRoute);
        return forward::local(StatusCode::NOT_FOUND, "", log);
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    if port.protocol.is_http() || port.protocol == Protocol::Unspecified {
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(up) => serve_destination(ctx, TokioIo::new(up), dest).await,
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        });
        return forward::local(StatusCode::OK, "", Default::default());
    }
    let start = tcp::now();
    let Some(route) = port.tcp_route(&dest.host) else {
        let mut log = inputs.access_log.begin(&req);
        log.respond(404, ResponseFlag::NoRoute);
        return forward::local(StatusCode::NOT_FOUND, "", log);
    };
    let cluster = &snapshot.clusters[route.destinations.pick()];
    let names = Names {
        route: route.name.clone(),
        cluster: cluster.name.clone(),
    };
    let (up, ep) = match tcp::connect(cluster).await {
        Ok(c) => c,
        Err(e) => return connect_failed(&ctx, &req, &e, names),
    };
    let inputs = ctx.inputs.clone();
    let drain = ctx.drain.clone();
    tokio::spawn(async move {
        let _drain = drain;
        match on_upgrade.await {
            Ok(down) => {
                tcp::splice(
                    &inputs.access_log,
                    TokioIo::new(down),
                    up,
                    &ep,
                    &names,
                    start,
                )
                .await
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    forward::local(StatusCode::OK, "", Default::default())
}

fn connect_failed(
    ctx: &ConnCtx,
    req: &Request<Incoming>,
    e: &Error,
    names: Names,
) -> Response<RespBody> {
    let mut log = ctx.inputs.access_log.begin(req);
    if let Some(entry) = log.entry() {
        entry.route = Some(names.route);
        entry.cluster = Some(names.cluster);
    }
    forward::error_response(e, e.response_flag(), log)
}
