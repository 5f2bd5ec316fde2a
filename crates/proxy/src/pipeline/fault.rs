//! Fault injection (VirtualService `fault`), before a route's action: a delay for its
//! share of requests, then an abort for its share (drawn independently), as Envoy's
//! fault filter does. The access log shows `DI` for a delayed request and `FI` for an
//! aborted one.

use bytes::Bytes;
use http::{HeaderValue, Response};

use crate::ResponseFlag;
use crate::config::FaultRt;
use crate::forward::RespBody;
use crate::record::Pending;
use crate::respond::local_bytes;
use crate::upstream::random_below;

/// Applies `fault`; returns the response when the request is aborted. A `grpcStatus`
/// abort answers a gRPC request (`content-type: application/grpc…`) as Envoy does:
/// HTTP 200, trailers-only, with `grpc-status` and `grpc-message`.
pub(crate) async fn apply(
    fault: &FaultRt,
    grpc: bool,
    headers: &http::HeaderMap,
    log: &mut Pending,
) -> Option<Response<RespBody>> {
    if let Some((delay, share)) = fault.delay
        && hit(share)
    {
        tokio::time::sleep(delay).await;
        log.respond(0, ResponseFlag::DelayInjected);
    }
    if let Some((status, share)) = fault.abort
        && hit(share)
    {
        log.respond(status.as_u16(), ResponseFlag::FaultInjected);
        log.note_request_id(headers);
        if let (Some(code), true) = (fault.abort_grpc, grpc) {
            if let Some(r) = log.record() {
                r.grpc_status = Some(crate::record::grpc::code(code.into()));
            }
            let mut resp = local_bytes(status, Bytes::new(), std::mem::take(log));
            let h = resp.headers_mut();
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            h.insert("grpc-status", HeaderValue::from(u16::from(code)));
            h.insert(
                "grpc-message",
                HeaderValue::from_static("fault filter abort"),
            );
            return Some(resp);
        }
        return Some(local_bytes(
            status,
            Bytes::from_static(b"fault filter abort"),
            std::mem::take(log),
        ));
    }
    None
}

fn hit(per_million: u32) -> bool {
    per_million >= 1_000_000 || (per_million > 0 && random_below(1_000_000) < per_million)
}
