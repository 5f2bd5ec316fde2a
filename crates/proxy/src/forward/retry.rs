//! Sending a routed request to its cluster, with the route's retry policy.
//!
//! A try that failed before the request left (connect failure, a pooled connection
//! that closed first) gets the request back and can always be tried again, body and
//! all. A try that failed later (a 503, a reset, a per-try timeout) can be tried again
//! when the request can be rebuilt: its head is kept, and a body of known length up to
//! [`REPLAY_LIMIT`] is read in full before the first try (as Envoy buffers a request
//! for retries). A longer or streamed body (gRPC streams, chunked uploads) goes
//! upstream as it arrives, and such a request is not tried again once sent.

use std::future::{Future, ready};
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::Either;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use super::ReqBody;
use crate::config::RetryRt;
use crate::config::retry::Outcome;
use crate::upstream::{ClusterRt, EndpointState, InFlight, PooledH1, SendError};
use crate::{Error, ResponseFlag};

/// Largest request body kept for sending again. Envoy keeps up to its connection
/// buffer limit (1 MiB); a smaller bound keeps a sidecar's memory small, and requests
/// that retries matter for are rarely larger.
pub(crate) const REPLAY_LIMIT: u64 = 64 * 1024;

/// A response, the pooled connection it came on, and the in-flight count it holds.
pub(super) type Sent = (Response<Incoming>, Option<PooledH1>, InFlight);

/// Sends `req` to an endpoint of `cluster`, and again to a new pick while `policy`
/// allows. Returns the response with `URX` when the last try was still a failure the
/// policy retries.
pub(super) async fn send(
    cluster: &ClusterRt,
    req: Request<ReqBody>,
    policy: Option<&RetryRt>,
) -> Result<(Sent, ResponseFlag), Error> {
    let Some(policy) = policy.filter(|p| p.attempts > 0) else {
        let ep = pick(cluster)?;
        return once(ep, cluster, req)
            .await
            .map(|s| (s, ResponseFlag::None))
            .map_err(|e| e.error);
    };
    let (req, head) = match req.body() {
        ReqBody::Empty => {
            let head = copy_head(&req, None);
            (req, Some(head))
        }
        ReqBody::Incoming(body, _)
            if http_body::Body::size_hint(body)
                .exact()
                .is_some_and(|n| n <= REPLAY_LIMIT) =>
        {
            // Boxed: only requests with a body pay for the larger future.
            Box::pin(read_in_full(req)).await?
        }
        _ => (req, None),
    };
    let (result, unsent) = attempt(cluster, req, policy).await;
    match verdict(policy, &result, unsent.is_some() || head.is_some(), 0) {
        Verdict::Done(flag) => result.map(|s| (s, flag)),
        // Trying again is the cold path: boxed, so the future of a request that
        // succeeds at once stays small and allocation-free.
        Verdict::Again(outcome) => {
            drop(result);
            Box::pin(again(cluster, policy, head, unsent, outcome)).await
        }
    }
}

/// What to do after a try.
enum Verdict {
    Done(ResponseFlag),
    Again(Outcome),
}

fn verdict(
    policy: &RetryRt,
    result: &Result<Sent, Error>,
    replayable: bool,
    tries: u32,
) -> Verdict {
    let outcome = match result {
        Ok((resp, ..)) => Outcome::Response {
            status: resp.status(),
            grpc_status: resp
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok()?.parse().ok()),
        },
        Err(Error::NoHealthyUpstream(_)) => return Verdict::Done(ResponseFlag::None),
        Err(Error::Connect { .. } | Error::ConnectTimeout { .. }) => Outcome::ConnectFailure,
        Err(Error::Timeout(_)) => Outcome::Timeout,
        Err(_) => Outcome::Reset,
    };
    if !policy.retriable(outcome) || !replayable {
        Verdict::Done(ResponseFlag::None)
    } else if tries >= policy.attempts {
        Verdict::Done(ResponseFlag::UpstreamRetryLimitExceeded)
    } else {
        Verdict::Again(outcome)
    }
}

/// One try on a new endpoint pick, under the per-try timeout. (Plain functions here
/// and below rather than `async fn`s, which would store the request twice.)
fn attempt<'a>(
    cluster: &'a ClusterRt,
    req: Request<ReqBody>,
    policy: &RetryRt,
) -> impl Future<Output = (Result<Sent, Error>, Option<Request<ReqBody>>)> + 'a {
    let ep = match pick(cluster) {
        Ok(ep) => ep,
        Err(e) => return Either::Left(ready((Err(e), Some(req)))),
    };
    let fut = once(ep, cluster, req);
    Either::Right(match policy.per_try_timeout {
        Some(t) => Either::Left(tokio::time::timeout(t, fut).map(move |r| match r {
            Ok(r) => split(r),
            Err(_) => (Err(Error::Timeout(t)), None),
        })),
        None => Either::Right(fut.map(split)),
    })
}

/// The tries after the first.
async fn again(
    cluster: &ClusterRt,
    policy: &RetryRt,
    head: Option<Head>,
    mut unsent: Option<Request<ReqBody>>,
    mut outcome: Outcome,
) -> Result<(Sent, ResponseFlag), Error> {
    let mut tries = 0u32;
    loop {
        tries += 1;
        tracing::debug!(cluster = %cluster.name, retry = tries, ?outcome, "retrying");
        tokio::time::sleep(RetryRt::backoff(tries)).await;
        let Some(req) = unsent.take().or_else(|| head.as_ref().map(rebuild)) else {
            unreachable!("a retry is only started with a request to send");
        };
        let (result, back) = attempt(cluster, req, policy).await;
        match verdict(policy, &result, back.is_some() || head.is_some(), tries) {
            Verdict::Done(flag) => return result.map(|s| (s, flag)),
            Verdict::Again(o) => {
                outcome = o;
                unsent = back;
            }
        }
    }
}

fn pick(cluster: &ClusterRt) -> Result<&Arc<EndpointState>, Error> {
    cluster
        .pick()
        .ok_or_else(|| Error::NoHealthyUpstream(cluster.name.to_string()))
}

fn once(
    ep: &Arc<EndpointState>,
    cluster: &ClusterRt,
    req: Request<ReqBody>,
) -> impl Future<Output = Result<Sent, SendError>> + use<> {
    let in_flight = InFlight::new(ep.clone());
    ep.send(req, cluster.connect_timeout)
        .map(move |r| r.map(|(resp, pooled)| (resp, pooled, in_flight)))
}

fn split(r: Result<Sent, SendError>) -> (Result<Sent, Error>, Option<Request<ReqBody>>) {
    match r {
        Ok(s) => (Ok(s), None),
        Err(SendError { error, unsent }) => (Err(error), unsent.map(|r| *r)),
    }
}

/// Reads a request's body in full, for a request that may have to be sent again.
async fn read_in_full(req: Request<ReqBody>) -> Result<(Request<ReqBody>, Option<Head>), Error> {
    let (parts, body) = req.into_parts();
    let data = body
        .collect()
        .await
        .map_err(|e| Error::DownstreamBody(e.to_string()))?
        .to_bytes();
    let req = Request::from_parts(parts, ReqBody::Full(Some(data.clone())));
    let head = copy_head(&req, Some(data));
    Ok((req, Some(head)))
}

/// What it takes to send a request again: its head, and its body if it had one.
struct Head {
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    headers: http::HeaderMap,
    body: Option<Bytes>,
}

fn copy_head(req: &Request<ReqBody>, body: Option<Bytes>) -> Head {
    Head {
        method: req.method().clone(),
        uri: req.uri().clone(),
        version: req.version(),
        headers: req.headers().clone(),
        body,
    }
}

fn rebuild(h: &Head) -> Request<ReqBody> {
    let body = match &h.body {
        Some(data) => ReqBody::Full(Some(data.clone())),
        None => ReqBody::Empty,
    };
    let mut req = Request::new(body);
    *req.method_mut() = h.method.clone();
    *req.uri_mut() = h.uri.clone();
    *req.version_mut() = h.version;
    *req.headers_mut() = h.headers.clone();
    req
}
