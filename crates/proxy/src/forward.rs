//! HTTP forwarding, shared by the outbound, gateway and inbound listeners. The phases of
//! a routed request, in order:
//!
//! 1. take the current snapshot (kept until the response is done);
//! 2. find the destination: the connection's own (tunnel, original destination) or the
//!    request's authority, and its port;
//! 3. route: port table → virtual host by authority → first matching route
//!    (`404 NR` when none);
//! 4. act: direct response, redirect, or forward:
//!    pick a cluster by weight, an endpoint by the cluster's balancer (`503 UH` when
//!    there is none), rewrite path and authority, drop hop-by-hop headers, add
//!    `x-forwarded-proto` and `x-request-id`, send on a pooled connection under the
//!    route timeout (`504 UT`) and retry policy (`URX`), `503 UF` when the connect
//!    fails;
//! 5. stream the response back; the body's end returns the connection to its pool and
//!    writes the access-log line.
//!
//! HTTP/1.1 upgrades (WebSocket) take a connection of their own (`forward/upgrade.rs`);
//! the h2c upgrade turns the downstream connection into HTTP/2 (`forward/h2c.rs`);
//! retries are in `forward/retry.rs`, header rules in `forward/headers.rs`, the body
//! types in `forward/body.rs`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tracing::Instrument;

use crate::access_log::Pending;
use crate::app::ProxyInputs;
use crate::config::{ActionRt, ForwardRt, RedirectRt, Snapshot};
use crate::drain::DrainWatch;
use crate::route::{RequestView, Selected, Selection, split_authority};
use crate::upstream::{EndpointState, InFlight, PooledH1};
use crate::{Error, ResponseFlag};

mod body;
mod fault;
mod h2c;
mod headers;
mod retry;
mod upgrade;

pub(crate) use body::{ReqBody, RespBody};

/// Which listener a connection came in on.
#[derive(Debug, Clone)]
pub(crate) enum ListenerKind {
    /// The app's outbound traffic. `dest` is set when the connection itself names the
    /// destination (a CONNECT tunnel, later the original destination of a captured
    /// connection); otherwise each request's authority does.
    Outbound { dest: Option<Destination> },
    /// A gateway port (as written in the Gateway, before any offset).
    Gateway { port: u16 },
    /// From a peer proxy, for this app port.
    Inbound { port: u16 },
}

/// A destination named by the connection rather than the request.
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    pub(crate) host: Arc<str>,
    pub(crate) port: u16,
}

/// What every request on one downstream connection shares.
#[derive(Debug)]
pub(crate) struct ConnCtx {
    pub(crate) inputs: Arc<ProxyInputs>,
    pub(crate) listener: ListenerKind,
    pub(crate) peer: SocketAddr,
    pub(crate) drain: DrainWatch,
}

/// Serves HTTP/1.1 and HTTP/2 (prior knowledge) on a downstream connection until it
/// closes, or until a drain: then in-flight requests finish and the connection closes
/// (HTTP/1.1 after the current response, HTTP/2 with GOAWAY).
pub(crate) async fn serve<I>(ctx: Arc<ConnCtx>, io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let span = tracing::debug_span!("http", listener = ?ctx.listener);
    serve_inner(ctx, io).instrument(span).await
}

async fn serve_inner<I>(ctx: Arc<ConnCtx>, io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let inputs = ctx.inputs.clone();
    let mut drain = ctx.drain.clone();
    let peer = ctx.peer;
    let conn = inputs
        .http_server
        .serve_connection_with_upgrades(TokioIo::new(io), service(ctx));
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = drain.signaled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "downstream connection ended with an error");
    }
}

/// The hyper service of a downstream connection.
pub(crate) fn service(
    ctx: Arc<ConnCtx>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<RespBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<RespBody>, Infallible>> + Send + 'static,
> + Clone {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let span = tracing::debug_span!("request", method = %req.method(), uri = %req.uri());
        // A combinator, not an `async` block, which would hold the request twice.
        futures_util::FutureExt::map(handle(ctx.clone(), req), Ok::<_, Infallible>).instrument(span)
    })
}

async fn handle(ctx: Arc<ConnCtx>, mut req: Request<Incoming>) -> Response<RespBody> {
    if h2c::wanted(&req)
        && let Some(switching) = h2c::upgrade(&ctx, &mut req)
    {
        return switching;
    }
    if let ListenerKind::Outbound { dest: None } = ctx.listener
        && req.method() == http::Method::CONNECT
    {
        // Tunnels are rare next to requests: boxed, to keep this future small.
        return Box::pin(crate::outbound::connect(ctx, req)).await;
    }
    let Some(snapshot) = ctx.inputs.current() else {
        return local(
            StatusCode::SERVICE_UNAVAILABLE,
            "proxy has no config yet\n",
            Pending::default(),
        );
    };
    let mut log = ctx.inputs.access_log.begin(&req);
    if let ListenerKind::Inbound { port } = ctx.listener {
        return crate::inbound::forward(&snapshot, port, req, log).await;
    }
    let default_authority = match &ctx.listener {
        ListenerKind::Outbound { dest: Some(d) } => Some(&*d.host),
        _ => None,
    };
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .or(default_authority)
        .unwrap_or("");
    let (table, port) = match &ctx.listener {
        ListenerKind::Outbound { dest: Some(d) } => (snapshot.outbound_port(d.port), d.port),
        ListenerKind::Gateway { port } => (snapshot.gateway_port(*port), *port),
        _ => {
            let port = split_authority(authority, 80).1;
            (snapshot.outbound_port(port), port)
        }
    };
    let view = RequestView {
        method: req.method(),
        path: req.uri().path(),
        query: req.uri().query(),
        authority,
        port,
        headers: req.headers(),
    };
    let selected = match table.map(|t| t.http.select(&view)) {
        Some(Selection::Route(s)) => s,
        _ => {
            tracing::debug!(authority, port, path = req.uri().path(), "no route");
            log.respond(404, ResponseFlag::NoRoute);
            return local(StatusCode::NOT_FOUND, "", log);
        }
    };
    if let Some(e) = log.entry() {
        e.route = Some(selected.route.name.clone());
    }
    if let Some(fault) = &selected.route.fault
        && let Some(aborted) = Box::pin(fault::apply(fault, &mut log)).await
    {
        return aborted;
    }
    match &selected.route.action {
        ActionRt::Direct { status, body } => {
            log.respond(status.as_u16(), ResponseFlag::None);
            local_bytes(*status, body.clone(), log)
        }
        ActionRt::Redirect(rd) => redirect(rd, &req, authority, log),
        ActionRt::Forward(f) => {
            // At the edge the client's address is added to x-forwarded-for, as Istio's
            // gateways do (Envoy's use_remote_address); sidecars leave it alone.
            let edge_client = match ctx.listener {
                ListenerKind::Gateway { .. } => Some(ctx.peer.ip()),
                _ => None,
            };
            forward(&snapshot, selected, f, req, log, edge_client).await
        }
    }
}

/// Step 4 for a forwarding route.
async fn forward(
    snapshot: &Snapshot,
    selected: Selected<'_>,
    f: &ForwardRt,
    req: Request<Incoming>,
    mut log: Pending,
    edge_client: Option<std::net::IpAddr>,
) -> Response<RespBody> {
    let cluster = &snapshot.clusters[f.destinations.pick()];
    if let Some(e) = log.entry() {
        e.cluster = Some(cluster.name.clone());
    }
    let mut req = req;
    let upgrade = take_upgrade(&mut req, cluster.proto);
    let (mut parts, body) = req.into_parts();
    let path = f.rewrite_uri.as_deref().and_then(|rewrite| {
        let new = selected.rewrite_path(rewrite, parts.uri.path());
        let new = match parts.uri.query() {
            Some(q) => format!("{new}?{q}"),
            None => new,
        };
        PathAndQuery::try_from(new).ok()
    });
    let authority = f
        .rewrite_authority
        .clone()
        .or_else(|| headers::authority_value(&parts));
    headers::strip_hop_by_hop(&mut parts.headers, true);
    headers::add_request_headers(&mut parts.headers);
    if let Some(ip) = edge_client {
        headers::append_forwarded_for(&mut parts.headers, ip);
    }
    headers::set_target(&mut parts, cluster.proto, authority, path);
    let counter = log.count_body(&body);
    let timeout = selected.route.timeout;
    if let Some((protocol, downstream)) = upgrade {
        headers::restore_upgrade(&mut parts.headers, protocol);
        let req = Request::from_parts(parts, ReqBody::new(body, counter));
        let ep = match cluster.pick() {
            Some(ep) => ep,
            None => {
                let e = Error::NoHealthyUpstream(cluster.name.to_string());
                return error_response(&e, e.response_flag(), log);
            }
        };
        let sent = upgrade::send(ep, cluster.connect_timeout, req, downstream);
        return match with_timeout(timeout, Box::pin(sent)).await {
            Ok((resp, in_flight)) => {
                upstream_response(resp, None, in_flight, ResponseFlag::None, log)
            }
            Err(e) => error_response(&e, e.response_flag(), log),
        };
    }
    let req = Request::from_parts(parts, ReqBody::new(body, counter));
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let sent = with_timeout(timeout, retry::send(cluster, req, f.retries.as_ref())).await;
    match sent {
        Ok(((resp, pooled, in_flight), flag)) => {
            let resp = upstream_response(resp, pooled, in_flight, flag, log);
            resp.map(|body| body.with_deadline(deadline))
        }
        Err(e) => error_response(&e, e.response_flag(), log),
    }
}

/// `fut` under an optional timeout. A plain function, not an `async fn`: an async fn
/// would keep `fut` twice in its state (as its argument and inside the timeout), and
/// this future is moved several times per request.
fn with_timeout<T, F>(timeout: Option<Duration>, fut: F) -> impl Future<Output = Result<T, Error>>
where
    F: Future<Output = Result<T, Error>>,
{
    use futures_util::FutureExt;
    match timeout {
        Some(t) => futures_util::future::Either::Left(
            tokio::time::timeout(t, fut).map(move |r| r.unwrap_or(Err(Error::Timeout(t)))),
        ),
        None => futures_util::future::Either::Right(fut),
    }
}

/// Step 5: the upstream's response, on its way back.
pub(crate) fn upstream_response(
    resp: Response<Incoming>,
    pooled: Option<PooledH1>,
    in_flight: InFlight,
    flag: ResponseFlag,
    mut log: Pending,
) -> Response<RespBody> {
    let (mut parts, body) = resp.into_parts();
    let switching = (parts.status == StatusCode::SWITCHING_PROTOCOLS)
        .then(|| headers::upgrade_of(&parts.headers))
        .flatten();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    if let Some(protocol) = switching {
        headers::restore_upgrade(&mut parts.headers, protocol);
    }
    log.respond(parts.status.as_u16(), flag);
    if let Some(e) = log.entry() {
        e.upstream = Some(in_flight.endpoint().clone());
    }
    Response::from_parts(
        parts,
        RespBody::upstream(body, pooled, Some(in_flight), log.take()),
    )
}

/// The response for a request that failed before the upstream answered.
pub(crate) fn error_response(
    e: &Error,
    flag: ResponseFlag,
    mut log: Pending,
) -> Response<RespBody> {
    tracing::debug!(error = %e, flag = %flag, "request failed");
    let (status, body) = match flag {
        ResponseFlag::UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, "upstream request timeout"),
        ResponseFlag::NoHealthyUpstream => (StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream"),
        ResponseFlag::UpstreamConnectFailure => (
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
        ),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
        ),
    };
    log.respond(status.as_u16(), flag);
    local(status, body, log)
}

fn redirect(
    rd: &RedirectRt,
    req: &Request<Incoming>,
    authority: &str,
    mut log: Pending,
) -> Response<RespBody> {
    let scheme = rd
        .scheme
        .as_deref()
        .or(req.uri().scheme_str())
        .unwrap_or("http");
    let host = match (&rd.authority, rd.port) {
        (Some(a), Some(p)) => format!("{}:{p}", crate::config::strip_port(a)),
        (Some(a), None) => a.to_string(),
        (None, Some(p)) => format!("{}:{p}", crate::config::strip_port(authority)),
        (None, None) => authority.to_owned(),
    };
    let path = rd.uri.as_deref().unwrap_or(req.uri().path());
    let location = match (req.uri().query(), path.contains('?')) {
        (Some(q), false) => format!("{scheme}://{host}{path}?{q}"),
        _ => format!("{scheme}://{host}{path}"),
    };
    log.respond(rd.status.as_u16(), ResponseFlag::None);
    let mut resp = local(rd.status, "", log);
    match HeaderValue::try_from(location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
    }
    resp
}

/// A response made by the proxy itself.
pub(crate) fn local(status: StatusCode, body: &'static str, log: Pending) -> Response<RespBody> {
    local_bytes(status, Bytes::from_static(body.as_bytes()), log)
}

fn local_bytes(status: StatusCode, body: Bytes, mut log: Pending) -> Response<RespBody> {
    let has_body = !body.is_empty();
    let mut resp = Response::new(RespBody::full(body, log.take()));
    *resp.status_mut() = status;
    if has_body {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    resp
}

/// Forwards a request to one endpoint without routing (inbound): hop-by-hop headers
/// out, target in the upstream's form.
pub(crate) async fn forward_direct(
    ep: &Arc<EndpointState>,
    connect_timeout: Duration,
    req: Request<Incoming>,
    mut log: Pending,
) -> Response<RespBody> {
    let mut req = req;
    let upgrade = take_upgrade(&mut req, ep.key.proto);
    let (mut parts, body) = req.into_parts();
    let authority = headers::authority_value(&parts);
    headers::strip_hop_by_hop(&mut parts.headers, true);
    headers::set_target(&mut parts, ep.key.proto, authority, None);
    let counter = log.count_body(&body);
    if let Some((protocol, downstream)) = upgrade {
        headers::restore_upgrade(&mut parts.headers, protocol);
        let req = Request::from_parts(parts, ReqBody::new(body, counter));
        return match Box::pin(upgrade::send(ep, connect_timeout, req, downstream)).await {
            Ok((resp, in_flight)) => {
                upstream_response(resp, None, in_flight, ResponseFlag::None, log)
            }
            Err(e) => error_response(&e, e.response_flag(), log),
        };
    }
    let req = Request::from_parts(parts, ReqBody::new(body, counter));
    let in_flight = InFlight::new(ep.clone());
    match ep.send(req, connect_timeout).await {
        Ok((resp, pooled)) => upstream_response(resp, pooled, in_flight, ResponseFlag::None, log),
        Err(e) => error_response(&e.error, e.error.response_flag(), log),
    }
}

/// An HTTP/1.x request asking to switch protocols, to an upstream spoken to in HTTP/1.1:
/// the protocol it asks for, and the downstream connection once hyper hands it over.
/// (Over HTTP/2 upstreams the request goes as an ordinary one, without its upgrade.)
fn take_upgrade(
    req: &mut Request<Incoming>,
    proto: crate::upstream::UpstreamProto,
) -> Option<(HeaderValue, hyper::upgrade::OnUpgrade)> {
    if proto == crate::upstream::UpstreamProto::Http2 || req.version() >= http::Version::HTTP_2 {
        return None;
    }
    let protocol = headers::upgrade_of(req.headers())?;
    // h2c is HTTP itself, upgraded here when it can be (`forward/h2c.rs`): switching
    // the connection to it upstream would turn it into an opaque tunnel that no route
    // sees. What reaches this point (a request with a body) is answered over HTTP/1.1,
    // as the RFC allows, the upgrade dropped with the other hop-by-hop headers.
    if protocol.as_bytes().eq_ignore_ascii_case(b"h2c") {
        return None;
    }
    Some((protocol, hyper::upgrade::on(req)))
}

/// The request future is moved a few times per request (by hyper and the service),
/// so its size is a cost on every request. Cold paths are boxed and argument-forwarding
/// wrappers are plain functions to keep it small; this guards against regressions.
#[cfg(test)]
mod size_tests {
    fn size2<A, B, F>(_: fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    fn size3<A, B, C, F>(_: fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn request_futures_stay_small() {
        let handle = size2(super::handle);
        println!("request future: {handle} bytes");
        let send = size3(crate::upstream::EndpointState::send);
        // 6.4 KB before the cold paths were boxed; 3.0 KB with rustc 1.95.
        assert!(handle <= 3584, "the request future grew to {handle} bytes");
        assert!(
            send <= 1024,
            "the upstream send future grew to {send} bytes"
        );
    }
}
