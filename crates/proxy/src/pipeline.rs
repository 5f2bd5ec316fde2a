//! The phases of an HTTP request, in one place and in the order Istio applies them.
//! Outbound, inbound and gateway requests all pass through [`handle`]; what differs is
//! the input (the connection's [`Role`] and destination), not the code path.
//!
//! 1. **snapshot**: the config in service when the request arrived, kept until its
//!    response is done;
//! 2. **route**: outbound and gateway requests by port → virtual host (authority) →
//!    first matching route (`404 NR` when none); inbound requests by the app port the
//!    peer proxy named, to the `inbound|<port>||` cluster (the app);
//! 3. **authenticate** (RequestAuthentication, `authn.rs`): inbound and at gateways, a
//!    token that does not verify is a `401`; a request without one goes on without a
//!    request principal;
//! 4. **authorize** (AuthorizationPolicy, `authz.rs`): inbound and at gateways, before
//!    anything reaches the app or a route; a denial is `403 RBAC: access denied`, and
//!    the record says which policy decided and why;
//! 5. **fault**: a route's delay and abort (`DI`, `FI`);
//! 6. **act**: a direct response or redirect is answered here; a forward goes on:
//! 7. **timeout / retry**: the route's timeout over all tries (`UT`), its retry policy
//!    (`URX`), in [`forward`];
//! 8. **balance**: the cluster's load balancer picks an endpoint (`503 UH` when it has
//!    none);
//! 9. **pool**: a pooled connection to it (`upstream.rs`), `503 UF` when connecting fails;
//! 10. **transport**: plain TCP, or the hop to a peer proxy (`transport.rs`).
//!
//! Every phase reads the connection's context ([`Conn`]) and writes what it decided into
//! the request's [`Record`](crate::record::Record).

use std::sync::Arc;

use http::header;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::config::{ActionRt, Snapshot};
use crate::conn::{Conn, Role};
use crate::forward::{self, Plan, RespBody};
use crate::http_route::{CorsVerdict, MirrorPlan};
use crate::record::{Pending, Record};
use crate::respond;
use crate::route::{RequestView, Selected, Selection, split_authority};
use crate::{ResponseFlag, authz, http::h2c};

mod fault;
mod strict;

/// Answers a request head that breaks the protocol (`DPE`), and closes an HTTP/1
/// connection after it: what follows the head cannot be trusted to be framed right.
fn refuse(
    conn: &Arc<Conn>,
    req: &Request<Incoming>,
    (status, why): strict::Refusal,
) -> Response<RespBody> {
    tracing::debug!(peer = %conn.peer, %status, why, "request refused");
    let mut rec = Record::http(conn, req);
    if let Some(r) = rec.record() {
        r.details = Some(why.into());
    }
    rec.respond(status.as_u16(), ResponseFlag::DownstreamProtocolError);
    let mut resp = respond::local(status, why, rec);
    if req.version() != http::Version::HTTP_2 {
        resp.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    resp
}

/// Answers one request of a downstream connection.
pub(crate) async fn handle(conn: Arc<Conn>, mut req: Request<Incoming>) -> Response<RespBody> {
    if let Some(refused) = strict::check(
        req.version(),
        req.uri().authority().is_some(),
        req.headers(),
        conn.inputs.limits.max_request_headers,
    ) {
        return refuse(&conn, &req, refused);
    }
    // Connection-level requests first: they change what the connection is.
    if h2c::wanted(&req)
        && let Some(switching) = h2c::upgrade(&conn, &mut req)
    {
        return switching;
    }
    if conn.role == Role::Outbound && conn.dest.is_none() && req.method() == http::Method::CONNECT {
        // Tunnels are rare next to requests: boxed, to keep this future small.
        return Box::pin(crate::outbound::connect(conn, req)).await;
    }

    // 1. snapshot
    let Some(snapshot) = conn.inputs.current() else {
        return respond::local(
            StatusCode::SERVICE_UNAVAILABLE,
            "proxy has no config yet\n",
            Pending::default(),
        );
    };
    let mut rec = Record::http(&conn, &req);
    if let Some(r) = rec.record() {
        r.span = conn.inputs.tracing.start(conn.role, req.headers_mut());
    }

    // 3. authenticate (inbound and gateway; boxed: only workloads with
    // RequestAuthentication pay for its future)
    let mut jwt = None;
    if conn.role != Role::Outbound && !snapshot.jwt.is_empty() {
        match Box::pin(authenticate(&snapshot, req, &mut rec)).await {
            Ok((r, verified)) => {
                req = r;
                jwt = verified;
            }
            Err(refused) => return refused,
        }
    }
    let jwt = jwt.as_deref().map(|j| j as &dyn authz::JwtView);

    // 2. route, with 4. authorize first where it applies
    if conn.role == Role::Inbound {
        return inbound(&snapshot, &conn, req, rec, jwt).await;
    }
    if let Role::Gateway(port) = conn.role
        && let Some(denied) = authorize(&snapshot, &conn, &req, port, jwt, &mut rec)
    {
        return denied;
    }
    let authority = authority(&conn, &req);
    let Some(selected) = route(&snapshot, &conn, &req, authority) else {
        if conn.role == Role::Outbound
            && let Some(subscriber) = conn.inputs.on_demand.get()
            && req.extensions().get::<AskedOnDemand>().is_none()
        {
            let (authority, subscriber) = (authority.to_owned(), subscriber.clone());
            rec.discard();
            drop(snapshot);
            return on_demand(conn, req, authority, subscriber).await;
        }
        if conn.role == Role::Outbound
            && let Some((host, port)) = unknown_destination(&snapshot, &conn, &req, authority)
        {
            let host = host.to_owned();
            return Box::pin(crate::passthrough::http(
                &snapshot, &conn, req, &host, port, rec,
            ))
            .await;
        }
        return no_route(&conn, &req, authority, rec);
    };
    if let Some(r) = rec.record() {
        r.route = Some(selected.route.name.clone());
    }
    let policy = selected.route.policy.as_deref();

    // 5a. CORS (before faults, as Istio orders its filters): a preflight may be
    // answered here; an allowed origin gets its headers on the response.
    let mut cors_origin = None;
    if let Some(cors) = policy.and_then(|p| p.cors.as_ref()) {
        match cors.check(&req) {
            CorsVerdict::Pass => {}
            CorsVerdict::Allowed(origin) => cors_origin = Some(origin),
            CorsVerdict::Answer(headers) => {
                rec.respond(200, ResponseFlag::None);
                let mut resp = respond::local_bytes(StatusCode::OK, bytes::Bytes::new(), rec);
                resp.headers_mut().extend(headers);
                return resp;
            }
        }
    }

    // 5. fault
    if let Some(f) = &selected.route.fault {
        if let ActionRt::Forward(fw) = &selected.route.action
            && let Some(i) = fw.destinations.first()
            && let Some(r) = rec.record()
        {
            let cluster = &snapshot.clusters[i];
            r.cluster = Some(cluster.name.clone());
            r.service = cluster.service.clone();
        }
        if let Some(aborted) =
            Box::pin(fault::apply(f, is_grpc(&req), req.headers(), &mut rec)).await
        {
            return aborted;
        }
    }

    // 6. act
    let mut destination = None;
    let mut resp = match &selected.route.action {
        ActionRt::Direct { status, body } => {
            rec.respond(status.as_u16(), ResponseFlag::None);
            respond::local_bytes(*status, body.clone(), rec)
        }
        ActionRt::Redirect(rd) => respond::redirect(rd, &req, authority, rec),
        ActionRt::Forward(f) => {
            let (index, position) = f.destinations.pick_destination();
            if let Some(why) = snapshot.missing_cluster(index) {
                rec.note_request_id(req.headers());
                return no_cluster(&snapshot.clusters[index].name, why, rec);
            }
            let mut cluster = &snapshot.clusters[index];
            // PASSTHROUGH: the destination the app addressed, not a balanced pick.
            let original;
            if cluster.is_passthrough() {
                match Box::pin(original_destination(cluster, &conn, authority)).await {
                    Ok(c) => {
                        original = c;
                        cluster = &original;
                    }
                    Err(e) => {
                        if let Some(r) = rec.record() {
                            r.cluster = Some(cluster.name.clone());
                            r.details = Some(e.to_string().into());
                        }
                        return respond::error(&e, e.response_flag(), rec);
                    }
                }
            }
            if matches!(conn.role, Role::Gateway(_)) && conn.tls.is_some() {
                // The gateway terminated TLS: the scheme the client used.
                req.headers_mut().insert(
                    http::header::HeaderName::from_static("x-forwarded-proto"),
                    http::HeaderValue::from_static("https"),
                );
            }
            destination = policy.and_then(|p| p.destination(position));
            let plan = Plan {
                cluster,
                retries: f.retries.as_ref(),
                timeout: selected.route.timeout,
                rewrite: Some((&selected, f)),
                // At the edge the client's address is added to x-forwarded-for, as
                // Istio's gateways do (Envoy's use_remote_address); sidecars leave it.
                edge_client: matches!(conn.role, Role::Gateway(_)).then(|| conn.peer.ip()),
                client_cert: None,
                request_headers: [
                    destination.and_then(|d| d.request.as_ref()),
                    policy.and_then(|p| p.headers.request.as_ref()),
                ],
                mirror: policy
                    .filter(|p| !p.mirrors.is_empty())
                    .and_then(|p| MirrorPlan::draw(&snapshot, &p.mirrors, selected.route.timeout)),
            };
            // 7–10.
            forward::send(plan, req, rec).await
        }
    };
    if let Some(p) = policy {
        p.on_response(destination, cors_origin.as_ref(), &mut resp);
    }
    resp
}

/// The one-endpoint cluster of a request to a `PASSTHROUGH` cluster: to its
/// authority's `host:port` (the tunnel's port, in a tunnel).
async fn original_destination(
    cluster: &crate::upstream::ClusterRt,
    conn: &Conn,
    authority: &str,
) -> Result<crate::upstream::ClusterRt, crate::Error> {
    let (host, port) = match &conn.dest {
        Some(d) => (crate::config::strip_port(authority), d.port),
        None => split_authority(authority, 80),
    };
    crate::passthrough::original(cluster, conn, host, port).await
}

/// `503 NC`: the route names a cluster that does not exist.
#[cold]
fn no_cluster(name: &str, why: &str, mut rec: Pending) -> Response<RespBody> {
    let details = format!("cluster {name} not found: {why}");
    rec.respond(503, ResponseFlag::NoClusterFound);
    if let Some(r) = rec.record() {
        r.cluster = Some(name.into());
        r.details = Some(details.as_str().into());
    }
    let mut body = details;
    body.push('\n');
    respond::local_bytes(
        StatusCode::SERVICE_UNAVAILABLE,
        bytes::Bytes::from(body),
        rec,
    )
}

/// A gRPC request: `content-type: application/grpc` (or `application/grpc+…`).
fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// How long a request waits for the config an on-demand subscription brings.
const ON_DEMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How many names a proxy remembers asking for on demand.
const MAX_ASKED: usize = 10_000;

/// Marks a request served again after an on-demand subscription.
#[derive(Clone, Copy)]
struct AskedOnDemand;

/// An outbound request no virtual host took, at a proxy that subscribes on demand:
/// ask the control plane for its authority, wait until a config routes it (or
/// [`ON_DEMAND_TIMEOUT`]), then serve it from the start. Boxed: rare, and `handle`
/// is its caller.
#[cold]
fn on_demand(
    conn: Arc<Conn>,
    mut req: Request<Incoming>,
    authority: String,
    subscriber: skiff_xds::Subscriber,
) -> std::pin::Pin<Box<dyn Future<Output = Response<RespBody>> + Send>> {
    Box::pin(async move {
        let mut changes = conn.inputs.config_changes();
        let asked_at = {
            let mut asked = conn.inputs.asked.lock().unwrap_or_else(|e| e.into_inner());
            match asked.get(&authority) {
                Some(at) => Some(*at),
                None => {
                    if asked.len() < MAX_ASKED {
                        asked.insert(authority.clone(), std::time::Instant::now());
                    }
                    None
                }
            }
        };
        let waited = asked_at.map_or(std::time::Duration::ZERO, |at| at.elapsed());
        if asked_at.is_none() {
            subscriber.subscribe(&authority);
        }
        let deadline = tokio::time::Instant::now() + ON_DEMAND_TIMEOUT.saturating_sub(waited);
        loop {
            if let Some(snapshot) = conn.inputs.current()
                && route(&snapshot, &conn, &req, &authority).is_some()
            {
                break;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    tracing::debug!(%authority, "no config for it came on demand in time");
                    break;
                }
            }
        }
        req.extensions_mut().insert(AskedOnDemand);
        handle(conn, req).await
    })
}

/// `404 NR`: no virtual host or route took the request. The body and the record say
/// for which authority, port and path, so the person who sees it knows what to fix.
#[cold]
fn no_route(
    conn: &Conn,
    req: &Request<Incoming>,
    authority: &str,
    mut rec: Pending,
) -> Response<RespBody> {
    let port = match (conn.role, &conn.dest) {
        (Role::Gateway(port), _) => port,
        (_, Some(d)) => d.port,
        (_, None) => split_authority(authority, 80).1,
    };
    let path = req.uri().path();
    tracing::debug!(authority, path, port, "no route");
    rec.note_request_id(req.headers());
    let details = format!(
        "no route matched: no VirtualService route or service on port {port} takes authority {authority:?} path {path:?}"
    );
    rec.respond(404, ResponseFlag::NoRoute);
    if let Some(r) = rec.record() {
        r.details = Some(details.as_str().into());
    }
    let mut body = details;
    body.push('\n');
    respond::local_bytes(StatusCode::NOT_FOUND, bytes::Bytes::from(body), rec)
}

/// An inbound request: to the app port the peer proxy named. A plain function, so
/// the request future holds one forwarding future, not one per listener kind.
fn inbound<'s>(
    snapshot: &'s Snapshot,
    conn: &Conn,
    req: Request<Incoming>,
    mut rec: Pending,
    jwt: Option<&dyn authz::JwtView>,
) -> impl Future<Output = Response<RespBody>> + 's {
    use futures_util::future::Either;
    let port = conn.dest.as_ref().map_or(0, |d| d.port);
    let Some(p) = snapshot.inbound_port(port) else {
        rec.respond(404, ResponseFlag::NoRoute);
        rec.note_request_id(req.headers());
        return Either::Left(std::future::ready(respond::local(
            StatusCode::NOT_FOUND,
            "",
            rec,
        )));
    };
    if let Some(r) = rec.record() {
        r.route = Some(p.name.clone());
        r.cluster = Some(p.name.clone());
        r.service = p.cluster.service.clone();
    }
    // 4. authorize
    if let Some(denied) = authorize(snapshot, conn, &req, port, jwt, &mut rec) {
        return Either::Left(std::future::ready(denied));
    }
    let plan = Plan {
        cluster: &p.cluster,
        retries: None,
        timeout: None,
        rewrite: None,
        edge_client: None,
        client_cert: conn.tls.as_ref().and_then(|t| t.xfcc.clone()),
        request_headers: [None, None],
        mirror: None,
    };
    Either::Right(forward::send(plan, req, rec))
}

/// Phase 3: the workload's JWT rules. `Err` is the 401 of a token that does not verify;
/// a request without a token goes on without a request principal.
async fn authenticate(
    snapshot: &Snapshot,
    req: Request<Incoming>,
    rec: &mut Pending,
) -> Result<(Request<Incoming>, Option<Arc<crate::authn::VerifiedJwt>>), Response<RespBody>> {
    let (mut parts, body) = req.into_parts();
    match snapshot.jwt.authenticate(&mut parts).await {
        Ok(verified) => {
            if let Some(j) = &verified {
                tracing::debug!(principal = %j.principal(), policy = %j.policy, "request authenticated");
            }
            Ok((Request::from_parts(parts, body), verified))
        }
        Err(rejected) => {
            let details = rejected.to_string();
            tracing::info!("request refused: {details}");
            rec.respond(401, ResponseFlag::None);
            rec.note_request_id(&parts.headers);
            if let Some(r) = rec.record() {
                r.details = Some(details.into());
            }
            let mut resp = respond::local_bytes(
                StatusCode::UNAUTHORIZED,
                bytes::Bytes::from(rejected.reason.clone()),
                std::mem::take(rec),
            );
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, rejected.www_authenticate());
            Err(resp)
        }
    }
}

/// Phase 4: the workload's AuthorizationPolicies; `Some` is the 403 of a denial.
fn authorize(
    snapshot: &Snapshot,
    conn: &Conn,
    req: &Request<Incoming>,
    port: u16,
    jwt: Option<&dyn authz::JwtView>,
    rec: &mut Pending,
) -> Option<Response<RespBody>> {
    if snapshot.authz.is_empty() {
        return None;
    }
    let attrs = authz::Attrs {
        peer_ip: conn.peer.ip(),
        remote_ip: conn.peer.ip(),
        peer: conn.peer_identity(),
        dest_ip: conn.local.ip(),
        dest_port: port,
        sni: conn.tls.as_ref().and_then(|t| t.sni.as_deref()),
        http: Some(authz::HttpAttrs {
            method: req.method().as_str(),
            path: req.uri().path(),
            host: authority(conn, req),
            headers: req.headers(),
        }),
        jwt,
    };
    let decision = snapshot.authz.check(&attrs);
    let details = decision.details()?;
    tracing::info!(peer = %conn.peer, "{details}");
    rec.respond(403, ResponseFlag::None);
    rec.note_request_id(req.headers());
    if let Some(r) = rec.record() {
        r.details = Some(details.into());
    }
    Some(respond::local(
        StatusCode::FORBIDDEN,
        "RBAC: access denied",
        std::mem::take(rec),
    ))
}

/// The request's authority: the absolute URI's, the `Host` header, or the name the
/// connection was opened for.
fn authority<'r>(conn: &'r Conn, req: &'r Request<Incoming>) -> &'r str {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .or(conn.dest.as_ref().map(|d| &*d.host))
        .unwrap_or("")
}

/// For an outbound request no route took: its host and port when no virtual host
/// claims the authority (a destination outside the registry), for the
/// `outboundTrafficPolicy`. Only on that failure path.
fn unknown_destination<'a>(
    snapshot: &Snapshot,
    conn: &Conn,
    req: &Request<Incoming>,
    authority: &'a str,
) -> Option<(&'a str, u16)> {
    let (host, port) = match &conn.dest {
        Some(d) => (crate::config::strip_port(authority), d.port),
        None => split_authority(authority, 80),
    };
    if host.is_empty() {
        return None;
    }
    let Some(table) = snapshot.outbound_port(port) else {
        return Some((host, port));
    };
    let view = RequestView {
        method: req.method(),
        scheme: req
            .uri()
            .scheme_str()
            .unwrap_or(if conn.tls.is_some() { "https" } else { "http" }),
        path: req.uri().path(),
        query: req.uri().query(),
        authority,
        port,
        headers: req.headers(),
    };
    matches!(table.http.select(&view), Selection::NoVirtualHost).then_some((host, port))
}

/// Phase 2 for outbound and gateway requests.
fn route<'s>(
    snapshot: &'s Snapshot,
    conn: &Conn,
    req: &Request<Incoming>,
    authority: &str,
) -> Option<Selected<'s>> {
    let (table, port) = match (conn.role, &conn.dest) {
        (Role::Gateway(port), _) => (snapshot.gateway_port(port), port),
        (_, Some(d)) => (snapshot.outbound_port(d.port), d.port),
        (_, None) => {
            let port = split_authority(authority, 80).1;
            (snapshot.outbound_port(port), port)
        }
    };
    let view = RequestView {
        method: req.method(),
        scheme: req
            .uri()
            .scheme_str()
            .unwrap_or(if conn.tls.is_some() { "https" } else { "http" }),
        path: req.uri().path(),
        query: req.uri().query(),
        authority,
        port,
        headers: req.headers(),
    };
    match table?.http.select(&view) {
        Selection::Route(s) => Some(s),
        _ => None,
    }
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
        // 6.4 KB before the cold paths were boxed; 3.0 KB with rustc 1.95; 2.7 KB since
        // the header rules run before the forwarding future is made.
        assert!(handle <= 3584, "the request future grew to {handle} bytes");
        assert!(
            send <= 1024,
            "the upstream send future grew to {send} bytes"
        );
    }
}
