//! The forwarding phases of a request (7–10 of [`crate::pipeline`]): rewrite and header
//! rules, then timeout and retries, the balancer's pick, a pooled connection, and the
//! response streamed back; the body's end returns the connection to its pool and
//! finishes the record.
//!
//! HTTP/1.1 upgrades (WebSocket) take a connection of their own (`forward/upgrade.rs`);
//! retries are in `forward/retry.rs`, header rules in `forward/headers.rs`, the body
//! types in `forward/body.rs`.

use std::net::IpAddr;
use std::task::Poll;
use std::time::Duration;

use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::config::{ForwardRt, RetryRt};
use crate::conn::Role;
use crate::limits::StreamIdle;
use crate::record::Pending;
use crate::respond;
use crate::route::Selected;
use crate::upstream::{ClusterRt, InFlight, Pooled, UpstreamProto};
use crate::{Error, ResponseFlag};

mod body;
mod headers;
mod retry;
mod upgrade;

pub(crate) use body::{ReqBody, RespBody};

/// The request's `x-request-id`, given one now when it has none (what forwarding would
/// add anyway); for the trace sampling draw.
pub(crate) fn ensure_request_id(headers: &mut http::HeaderMap) -> HeaderValue {
    headers
        .entry(http::header::HeaderName::from_static("x-request-id"))
        .or_insert_with(headers::request_id)
        .clone()
}

/// Where and how a request is forwarded: what phases 2–6 decided.
pub(crate) struct Plan<'a> {
    /// The cluster chosen (by weight, for a route with several destinations).
    pub(crate) cluster: &'a ClusterRt,
    /// The route's retry policy.
    pub(crate) retries: Option<&'a RetryRt>,
    /// The route's timeout, over all tries and the whole response.
    pub(crate) timeout: Option<Duration>,
    /// For a routed (outbound or gateway) request: the route and its forward action,
    /// whose rewrites apply, and the request headers a sidecar adds. `None` inbound.
    pub(crate) rewrite: Option<(&'a Selected<'a>, &'a ForwardRt)>,
    /// At a gateway: the client's address, appended to `x-forwarded-for`.
    pub(crate) edge_client: Option<IpAddr>,
    /// `x-forwarded-client-cert` for the app: inbound over mutual TLS, who called. Any
    /// such header the downstream sent is dropped either way, so an app can trust it.
    pub(crate) client_cert: Option<HeaderValue>,
    /// VirtualService request header rules, in order: the chosen destination's, then
    /// the route's.
    pub(crate) request_headers: [Option<&'a crate::http_route::HeaderOpsRt>; 2],
    /// Copies for the route's mirrors, when this request was drawn for any.
    pub(crate) mirror: Option<crate::http_route::MirrorPlan>,
}

/// Forwards `req` by `plan`. A plain function: the header rules run before the
/// future is made, so the future holds the request once, in its upstream form.
pub(crate) fn send<'a>(
    plan: Plan<'a>,
    req: Request<Incoming>,
    mut rec: Pending,
) -> impl Future<Output = Response<RespBody>> + Send + 'a {
    use futures_util::future::Either;
    let cluster = plan.cluster;
    if let Some(r) = rec.record() {
        r.cluster = Some(cluster.name.clone());
        r.service = cluster.service.clone();
    }
    let mut req = req;
    // `useClientProtocol`: the downstream's version picks the upstream's.
    let proto = cluster.proto_for(req.version());
    let upgrade = take_upgrade(&mut req, proto);
    let (mut parts, body) = req.into_parts();
    let mut path = None;
    let mut authority = None;
    if let Some((selected, f)) = plan.rewrite {
        let regex = f
            .rewrite_regex
            .as_deref()
            .map(|(re, sub)| re.replace_all(parts.uri.path(), sub.as_str()).into_owned());
        let prefix = f
            .rewrite_uri
            .as_deref()
            .map(|rewrite| selected.rewrite_path(rewrite, parts.uri.path()));
        path = regex.or(prefix).and_then(|new| {
            let new = match parts.uri.query() {
                Some(q) => format!("{new}?{q}"),
                None => new,
            };
            PathAndQuery::try_from(new).ok()
        });
        authority = f.rewrite_authority.clone();
    }
    // An origin-form HTTP/1.1 request to an HTTP/1.1 upstream, its authority not
    // rewritten, keeps its `Host` header as it is: no lookup, no insert.
    let keep_host =
        authority.is_none() && parts.uri.authority().is_none() && proto != UpstreamProto::Http2;
    let authority = if keep_host {
        None
    } else {
        authority.or_else(|| headers::authority_value(&parts))
    };
    headers::strip_hop_by_hop(&mut parts.headers, true);
    let request_id = if plan.rewrite.is_some() {
        Some(headers::add_request_headers(&mut parts.headers))
    } else {
        // Inbound: the id the calling proxy (or client) sent, forwarded as it is.
        headers::request_id_of(&parts.headers)
    };
    if let Some(r) = rec.record() {
        r.request_id = request_id;
    }
    if let Some(ip) = plan.edge_client {
        headers::append_forwarded_for(&mut parts.headers, ip);
    }
    headers::set_client_cert(&mut parts.headers, plan.client_cert);
    for ops in plan.request_headers.into_iter().flatten() {
        ops.apply(&mut parts.headers);
    }
    headers::set_target(&mut parts, proto, authority, path);
    let counter = rec.count_body(&body);
    let timeout = plan.timeout;
    // Consistent hashing: one branch for a cluster without it.
    let (hash, set_cookie) = match cluster.hash_key() {
        None => (None, None),
        Some(key) => {
            let source = plan
                .edge_client
                .or_else(|| rec.record().map(|r| r.conn.peer.ip()));
            crate::upstream::request_hash(key, &parts, source)
        }
    };
    if let Some((protocol, downstream)) = upgrade {
        headers::restore_upgrade(&mut parts.headers, protocol);
        let req = Request::from_parts(parts, ReqBody::new(body, counter));
        // Upgrades are rare: boxed, to keep the common future small.
        return Either::Left(Box::pin(send_upgrade(
            cluster, timeout, req, downstream, rec,
        )));
    }
    let req = Request::from_parts(parts, ReqBody::new(body, counter));
    let retries = plan.retries;
    let mirror = plan.mirror;
    let stream_idle = rec.record().and_then(|r| {
        let limits = &r.conn.inputs.limits;
        match r.conn.role {
            Role::Gateway(_) => limits.stream_idle_timeout,
            _ if limits.stream_idle_on_sidecars => limits.stream_idle_timeout,
            _ => None,
        }
    });
    Either::Right(async move {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let req = match mirror {
            // Mirrored requests are few: boxed, so others do not carry its future.
            Some(m) => match Box::pin(mirror_copies(m, req)).await {
                Ok(req) => req,
                Err(e) => return respond::error(&e, e.response_flag(), rec),
            },
            None => req,
        };
        let seen = retry::Seen::default();
        // Made in place, pinned, and polled here: handing it to an async fn by value
        // would store it twice in this future (it is moved a few times per request).
        let mut work = std::pin::pin!(with_route_timeout(
            timeout,
            retry::send(cluster, req, retries, hash, &seen),
            &seen,
        ));
        let mut idle = stream_idle.map(|t| StreamIdle::new(t, rec.bytes_in()));
        let (sent, tally) = std::future::poll_fn(|cx| {
            poll_until_idle(cx, work.as_mut(), idle.as_mut(), &rec, &seen)
        })
        .await;
        rec.tries(tally.attempts, tally.exhausted);
        match sent {
            Ok((resp, pooled, in_flight)) => {
                // A retry that `maxRetries` did not allow: the last answer, flagged `UO`.
                let flag = if tally.overflow {
                    ResponseFlag::UpstreamOverflow
                } else {
                    ResponseFlag::None
                };
                let mut resp = upstream_response(resp, pooled, in_flight, flag, rec);
                if let Some(cookie) = set_cookie {
                    resp.headers_mut().append(http::header::SET_COOKIE, cookie);
                }
                // The response head is activity; its body takes the watch on.
                if let Some(i) = idle.as_mut() {
                    i.touch();
                }
                resp.map(|body| body.with_deadline(deadline).with_idle(idle))
            }
            Err(e) => {
                // The endpoint the last try went to, for the record (a refused request,
                // `UO`, never reached one).
                if let (Some(i), Some(r)) = (tally.last, rec.record())
                    && !matches!(e, Error::Overflow { .. })
                {
                    r.upstream = Some(cluster.endpoint(i).clone());
                }
                respond::error(&e, e.response_flag(), rec)
            }
        }
    })
}

/// The tries of a request until they end, or, with a `watch`, until the stream has
/// been idle (no request body byte moved) for the stream idle timeout: then they are dropped, which
/// cancels the upstream request, and the request is a `408 SI` whatever they reached.
fn poll_until_idle<T>(
    cx: &mut std::task::Context<'_>,
    work: std::pin::Pin<&mut impl Future<Output = (Result<T, Error>, retry::Tally)>>,
    watch: Option<&mut StreamIdle>,
    rec: &Pending,
    seen: &retry::Seen,
) -> Poll<(Result<T, Error>, retry::Tally)> {
    if let Poll::Ready(out) = work.poll(cx) {
        return Poll::Ready(out);
    }
    let Some(watch) = watch else {
        return Poll::Pending;
    };
    match watch.poll_idle(cx, rec.bytes_in()) {
        Poll::Ready(()) => Poll::Ready((Err(Error::StreamIdle(watch.timeout())), seen.tally())),
        Poll::Pending => Poll::Pending,
    }
}

/// Reads a body of known length up to the replay limit in full (so that the copies
/// and the request itself, and its retries, can each send it), then hands copies to
/// the mirrors.
async fn mirror_copies(
    m: crate::http_route::MirrorPlan,
    req: Request<ReqBody>,
) -> Result<Request<ReqBody>, Error> {
    use http_body_util::BodyExt as _;
    let small = match req.body() {
        ReqBody::Incoming(b, _) => http_body::Body::size_hint(b)
            .exact()
            .is_some_and(|n| n <= retry::REPLAY_LIMIT),
        _ => false,
    };
    let req = if small {
        let (parts, body) = req.into_parts();
        let data = body
            .collect()
            .await
            .map_err(|e| Error::DownstreamBody(e.to_string()))?
            .to_bytes();
        Request::from_parts(parts, ReqBody::Full(Some(data)))
    } else {
        req
    };
    m.send(&req);
    Ok(req)
}

/// One copy of a request to a mirror cluster: sent once, its answer read and dropped
/// (so its connection goes back to the pool). Returns the status it got.
pub(crate) async fn send_copy(
    cluster: &ClusterRt,
    req: Request<ReqBody>,
    timeout: Option<Duration>,
) -> Result<StatusCode, Error> {
    use http_body_util::BodyExt as _;
    let work = async {
        let (sent, _) = retry::send(cluster, req, None, None, &retry::Seen::default()).await;
        let (resp, pooled, in_flight) = sent?;
        let status = resp.status();
        let body = RespBody::upstream(resp.into_body(), pooled, Some(in_flight), None);
        let _ = body.collect().await;
        Ok(status)
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, work)
            .await
            .unwrap_or(Err(Error::Timeout(t))),
        None => work.await,
    }
}

/// The tries under the route's timeout; when it expires, the request is a `UT`
/// whatever the tries had reached, and its tally is what `seen` saw start (the tries
/// made and the endpoint of the last one, the record's upstream host).
fn with_route_timeout<'a, T, F>(
    timeout: Option<Duration>,
    fut: F,
    seen: &'a retry::Seen,
) -> impl Future<Output = (Result<T, Error>, retry::Tally)> + 'a
where
    F: Future<Output = (Result<T, Error>, retry::Tally)> + 'a,
    T: 'a,
{
    use futures_util::FutureExt;
    match timeout {
        Some(t) => futures_util::future::Either::Left(
            tokio::time::timeout(t, fut)
                .map(move |r| r.unwrap_or_else(|_| (Err(Error::Timeout(t)), seen.tally()))),
        ),
        None => futures_util::future::Either::Right(fut),
    }
}

/// An HTTP/1.1 upgrade, on a connection of its own.
async fn send_upgrade(
    cluster: &ClusterRt,
    timeout: Option<Duration>,
    req: Request<ReqBody>,
    downstream: hyper::upgrade::OnUpgrade,
    rec: Pending,
) -> Response<RespBody> {
    let Some(ep) = cluster.pick() else {
        let e = Error::NoHealthyUpstream(cluster.name.to_string());
        return respond::error(&e, e.response_flag(), rec);
    };
    let sent = upgrade::send(ep, cluster.connect_timeout, req, downstream);
    match with_timeout(timeout, sent).await {
        Ok((resp, in_flight)) => upstream_response(resp, None, in_flight, ResponseFlag::None, rec),
        Err(e) => respond::error(&e, e.response_flag(), rec),
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
fn upstream_response(
    resp: Response<Incoming>,
    pooled: Option<Pooled>,
    mut in_flight: InFlight,
    flag: ResponseFlag,
    mut rec: Pending,
) -> Response<RespBody> {
    let (mut parts, body) = resp.into_parts();
    let switching = (parts.status == StatusCode::SWITCHING_PROTOCOLS)
        .then(|| headers::upgrade_of(&parts.headers))
        .flatten();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    if let Some(protocol) = switching {
        headers::restore_upgrade(&mut parts.headers, protocol);
    }
    rec.respond(parts.status.as_u16(), flag);
    rec.note_grpc_headers(&parts.headers);
    if let Some(r) = rec.record() {
        r.upstream = Some(in_flight.endpoint().clone());
        if let Some(note) = in_flight.take_note() {
            r.details = Some(note.into());
        }
    }
    Response::from_parts(
        parts,
        RespBody::upstream(body, pooled, Some(in_flight), rec.take()),
    )
}

/// An HTTP/1.x request asking to switch protocols, to an upstream spoken to in HTTP/1.1:
/// the protocol it asks for, and the downstream connection once hyper hands it over.
/// (Over HTTP/2 upstreams the request goes as an ordinary one, without its upgrade.)
fn take_upgrade(
    req: &mut Request<Incoming>,
    proto: UpstreamProto,
) -> Option<(HeaderValue, hyper::upgrade::OnUpgrade)> {
    if proto == UpstreamProto::Http2 || req.version() >= http::Version::HTTP_2 {
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
