//! Traffic to destinations no service covers, by the config's
//! `outboundTrafficPolicy`: `ALLOW_ANY` passes it to where it was sent
//! (`PassthroughCluster`, the request's authority or the tunnel's `host:port`, resolved
//! by DNS here); `REGISTRY_ONLY` refuses it as Istio's `block_all` route and
//! `BlackHoleCluster` do: `502` for HTTP, and a refused tunnel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use skiff_model::config::OutboundTrafficPolicy;

use crate::config::Snapshot;
use crate::conn::Conn;
use crate::forward::{self, Plan, RespBody};
use crate::record::{Pending, Record};
use crate::transport::UpstreamTls;
use crate::upstream::{ClusterRt, EndpointKey, EndpointState, UpstreamProto};
use crate::{Error, ResponseFlag, respond};

/// Istio's names, so access logs read the same.
const PASSTHROUGH: &str = "PassthroughCluster";
const ALLOW_ANY: &str = "allow_any";
const BLACKHOLE: &str = "BlackHoleCluster";
const BLOCK_ALL: &str = "block_all";

/// Connect timeout of passed-through traffic (Istio's default connect timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An outbound HTTP request whose authority no virtual host claims.
pub(crate) async fn http(
    snapshot: &Snapshot,
    conn: &Conn,
    req: Request<Incoming>,
    host: &str,
    port: u16,
    mut rec: Pending,
) -> Response<RespBody> {
    if let Some(r) = rec.record() {
        let (route, cluster) = match snapshot.config().outbound_traffic_policy {
            OutboundTrafficPolicy::AllowAny => (ALLOW_ANY, PASSTHROUGH),
            OutboundTrafficPolicy::RegistryOnly => (BLOCK_ALL, BLACKHOLE),
        };
        r.route = Some(route.into());
        r.cluster = Some(cluster.into());
    }
    if snapshot.config().outbound_traffic_policy.is_registry_only() {
        if let Some(r) = rec.record() {
            r.details = Some(refusal(host, port).into());
        }
        rec.respond(502, ResponseFlag::None);
        return respond::local(StatusCode::BAD_GATEWAY, "", rec);
    }
    let ep = match endpoint(conn, host, port, UpstreamProto::Http1).await {
        Ok(ep) => ep,
        Err(e) => {
            let flag = e.response_flag();
            if let Some(r) = rec.record() {
                r.details = Some(e.to_string().into());
            }
            return respond::error(&e, flag, rec);
        }
    };
    let cluster = ClusterRt::single(
        PASSTHROUGH.into(),
        UpstreamProto::Http1,
        ep,
        CONNECT_TIMEOUT,
    );
    let plan = Plan {
        cluster: &cluster,
        retries: None,
        timeout: None,
        rewrite: None,
        edge_client: None,
        client_cert: None,
        request_headers: [None, None],
        mirror: None,
    };
    forward::send(plan, req, rec).await
}

/// A `CONNECT host:port` tunnel that no TCP route takes. `Ok` with the connected
/// upstream and the tunnel's record under `ALLOW_ANY`; the refusal otherwise.
pub(crate) async fn tunnel(
    snapshot: &Snapshot,
    tunnel: &Arc<Conn>,
    host: &str,
    port: u16,
) -> Result<(crate::transport::Io, Arc<EndpointState>, Box<Record>), (Error, &'static str)> {
    if snapshot.config().outbound_traffic_policy.is_registry_only() {
        return Err((Error::NoHealthyUpstream(refusal(host, port)), BLACKHOLE));
    }
    let ep = endpoint(tunnel, host, port, UpstreamProto::Opaque)
        .await
        .map_err(|e| (e, PASSTHROUGH))?;
    let up = ep
        .connect(CONNECT_TIMEOUT)
        .await
        .map_err(|e| (e, PASSTHROUGH))?;
    let mut rec = Record::tcp(tunnel);
    rec.route = Some(ALLOW_ANY.into());
    rec.cluster = Some(PASSTHROUGH.into());
    Ok((up, ep, rec))
}

fn refusal(host: &str, port: u16) -> String {
    format!(
        "{BLACKHOLE}: {host}:{port} is not a service this proxy knows, and the \
         outboundTrafficPolicy is REGISTRY_ONLY"
    )
}

/// The endpoint `host:port` resolves to (the first address DNS gives).
async fn endpoint(
    conn: &Conn,
    host: &str,
    port: u16,
    proto: UpstreamProto,
) -> Result<Arc<EndpointState>, Error> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr: SocketAddr = match bare.parse() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                Error::NoHealthyUpstream(format!(
                    "{PASSTHROUGH}: {host} does not resolve to an address"
                ))
            })?,
    };
    Ok(plain_endpoint(conn, addr, proto))
}

/// For a `PASSTHROUGH` cluster (DestinationRule `loadBalancer.simple: PASSTHROUGH`):
/// the cluster of one request or connection addressed to `host:port`, an endpoint of
/// the cluster when one has that address, else `host:port` dialled as it is (a name
/// resolved by DNS), as Envoy's original-destination cluster connects to where the
/// app sent its traffic.
pub(crate) async fn original(
    cluster: &ClusterRt,
    conn: &Conn,
    host: &str,
    port: u16,
) -> Result<ClusterRt, Error> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = match bare.parse() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                Error::NoHealthyUpstream(format!(
                    "{}: PASSTHROUGH load balancing sends traffic to the address it was \
                     sent to, and {host} does not resolve to an address",
                    cluster.name
                ))
            })?,
    };
    let proto = cluster.proto;
    Ok(cluster.to_original(addr, || plain_endpoint(conn, addr, proto)))
}

/// The endpoint state of `addr` dialled directly, in plain text.
pub(crate) fn plain_endpoint(
    conn: &Conn,
    addr: SocketAddr,
    proto: UpstreamProto,
) -> Arc<EndpointState> {
    let key = EndpointKey {
        dial: addr,
        target_port: None,
        proto,
        identity: None,
        pool: None,
    };
    conn.inputs
        .endpoints
        .get(key, addr, None, None, || UpstreamTls::Plain)
}
