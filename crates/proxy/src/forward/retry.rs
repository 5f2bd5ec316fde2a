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

use futures_util::FutureExt;
use futures_util::future::Either;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use super::ReqBody;
use crate::config::RetryRt;
use crate::config::retry::Outcome;
use crate::upstream::{ClusterRt, InFlight, Outcome as Health, PooledH1, SendError, Slot};
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
    hash: Option<u64>,
) -> Result<(Sent, ResponseFlag), Error> {
    let Some(policy) = policy.filter(|p| p.attempts > 0) else {
        let ep = pick(cluster, hash)?;
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
    let (result, unsent) = attempt(cluster, req, policy, hash).await;
    match verdict(policy, &result, unsent.is_some() || head.is_some(), 0) {
        Verdict::Done(flag) => result.map(|s| (s, flag)),
        // Trying again is the cold path: boxed, so the future of a request that
        // succeeds at once stays small and allocation-free.
        Verdict::Again(outcome) => match retry_slot(cluster) {
            Err(()) => result.map(|s| (s, ResponseFlag::UpstreamOverflow)),
            Ok(slot) => {
                drop(result);
                Box::pin(again(cluster, policy, head, unsent, outcome, slot, hash)).await
            }
        },
    }
}

/// A retry's slot under `connectionPool.http.maxRetries`: `Err` when the cluster has
/// as many retries in flight as it allows (then, as Envoy, the last answer stands,
/// flagged `UO`).
fn retry_slot(cluster: &ClusterRt) -> Result<Option<Slot>, ()> {
    match &cluster.breaker {
        None => Ok(None),
        Some(b) => b.retry().map(Some).map_err(|_| ()),
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
        // Envoy retries neither: no endpoint, or a circuit breaker's refusal.
        Err(Error::NoHealthyUpstream(_) | Error::Overflow { .. }) => {
            return Verdict::Done(ResponseFlag::None);
        }
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
    hash: Option<u64>,
) -> impl Future<Output = (Result<Sent, Error>, Option<Request<ReqBody>>)> + 'a {
    let ep = match pick(cluster, hash) {
        Ok(ep) => ep,
        Err(e) => return Either::Left(ready((Err(e), Some(req)))),
    };
    let fut = once(ep, cluster, req);
    Either::Right(match policy.per_try_timeout {
        Some(t) => Either::Left(tokio::time::timeout(t, fut).map(move |r| match r {
            Ok(r) => split(r),
            Err(_) => {
                // A try that timed out is a local-origin failure of its endpoint.
                if let Some(m) = cluster.monitor(ep) {
                    m.report(Health::LocalFailure { timeout: true });
                }
                (Err(Error::Timeout(t)), None)
            }
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
    mut slot: Option<Slot>,
    hash: Option<u64>,
) -> Result<(Sent, ResponseFlag), Error> {
    let mut tries = 0u32;
    loop {
        tries += 1;
        let _retrying = slot.take();
        tracing::debug!(cluster = %cluster.name, retry = tries, ?outcome, "retrying");
        tokio::time::sleep(RetryRt::backoff(tries)).await;
        let Some(req) = unsent.take().or_else(|| head.as_ref().map(rebuild)) else {
            unreachable!("a retry is only started with a request to send");
        };
        let (result, back) = attempt(cluster, req, policy, hash).await;
        match verdict(policy, &result, back.is_some() || head.is_some(), tries) {
            Verdict::Done(flag) => return result.map(|s| (s, flag)),
            Verdict::Again(o) => {
                drop(_retrying);
                match retry_slot(cluster) {
                    Err(()) => return result.map(|s| (s, ResponseFlag::UpstreamOverflow)),
                    Ok(s) => slot = s,
                }
                outcome = o;
                unsent = back;
            }
        }
    }
}

/// The index of the endpoint for the next try.
fn pick(cluster: &ClusterRt, hash: Option<u64>) -> Result<usize, Error> {
    cluster
        .pick_index(hash)
        .ok_or_else(|| Error::NoHealthyUpstream(cluster.name.to_string()))
}

/// One try on endpoint `i`: under the cluster's request limit when it has one, its
/// outcome counted by outlier detection when the cluster has it.
fn once(
    i: usize,
    cluster: &ClusterRt,
    req: Request<ReqBody>,
) -> impl Future<Output = Result<Sent, SendError>> + use<> {
    let ep = cluster.endpoint(i);
    let slot = match &cluster.breaker {
        None => None,
        Some(b) => match b.request() {
            Ok(s) => Some(s),
            Err(o) => {
                let error = Error::Overflow {
                    cluster: cluster.name.to_string(),
                    limit: o.field(),
                };
                return Either::Left(ready(Err(SendError {
                    error,
                    unsent: Some(Box::new(req)),
                })));
            }
        },
    };
    let mut in_flight = InFlight::with_slot(ep.clone(), slot);
    let monitor = cluster.monitor(i);
    Either::Right(ep.send(req, cluster.connect_timeout).map(move |r| {
        if let Some(m) = monitor {
            let outcome = match &r {
                Ok((resp, _)) => Some(Health::Status(resp.status().as_u16())),
                Err(e) => match e.error {
                    Error::Overflow { .. } => None,
                    Error::Timeout(_) => Some(Health::LocalFailure { timeout: true }),
                    _ => Some(Health::LocalFailure { timeout: false }),
                },
            };
            if let Some(note) = outcome.and_then(|o| m.report(o)) {
                in_flight.set_note(note);
            }
        }
        r.map(|(resp, pooled)| (resp, pooled, in_flight))
    }))
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
