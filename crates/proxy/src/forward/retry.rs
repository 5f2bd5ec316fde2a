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
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use futures_util::FutureExt;
use futures_util::future::Either;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use super::ReqBody;
use crate::Error;
use crate::config::RetryRt;
use crate::config::retry::Outcome;
use crate::upstream::{ClusterRt, InFlight, Outcome as Health, Pooled, SendError, Slot};

/// Largest request body kept for sending again. Envoy keeps up to its connection
/// buffer limit (1 MiB); a smaller bound keeps a sidecar's memory small, and requests
/// that retries matter for are rarely larger.
pub(crate) const REPLAY_LIMIT: u64 = 64 * 1024;

/// A response, the pooled connection it came on, and the in-flight count it holds.
pub(super) type Sent = (Response<Incoming>, Option<Pooled>, InFlight);

/// How the tries of a request went: for the record.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    /// Tries made (the first one included); 0 when none could be made.
    pub(crate) attempts: u32,
    /// The policy would have tried again but its attempts were used up (`URX`).
    pub(crate) exhausted: bool,
    /// The policy would have tried again but the cluster's `maxRetries` were all in
    /// flight: the last answer stands, flagged `UO`, as in Envoy.
    pub(crate) overflow: bool,
    /// The cluster's index of the endpoint the last try went to, when one was picked:
    /// the upstream host of a request that failed (`UF`, a reset, a per-try timeout).
    pub(crate) last: Option<usize>,
}

/// The tries made so far, kept outside the tries' future: when the route's timeout
/// drops that future (`UT`), the record still names the endpoint the last try went to.
/// Two relaxed atomics on the request's stack, no allocation.
#[derive(Debug)]
pub(crate) struct Seen {
    attempts: AtomicU32,
    last: AtomicUsize,
}

impl Default for Seen {
    fn default() -> Self {
        Seen {
            attempts: AtomicU32::new(0),
            last: AtomicUsize::new(usize::MAX),
        }
    }
}

impl Seen {
    fn tried(&self, ep: usize) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        self.last.store(ep, Ordering::Relaxed);
    }

    /// The tally of tries cut short: how many were started, and the last endpoint.
    pub(crate) fn tally(&self) -> Tally {
        let last = self.last.load(Ordering::Relaxed);
        Tally {
            attempts: self.attempts.load(Ordering::Relaxed),
            last: (last != usize::MAX).then_some(last),
            ..Tally::default()
        }
    }
}

/// Sends `req` to an endpoint of `cluster`, and again to a new pick while `policy`
/// allows. The tally says how many tries it took and whether the last one was still a
/// failure the policy retries (`URX`), whatever that failure was; `seen` follows the
/// tries as they start.
pub(super) async fn send(
    cluster: &ClusterRt,
    req: Request<ReqBody>,
    policy: Option<&RetryRt>,
    hash: Option<u64>,
    seen: &Seen,
) -> (Result<Sent, Error>, Tally) {
    let Some(policy) = policy.filter(|p| p.attempts > 0) else {
        let ep = match pick(cluster, hash) {
            Ok(ep) => ep,
            Err(e) => return (Err(e), Tally::default()),
        };
        seen.tried(ep);
        let r = once(ep, cluster, req).await.map_err(|e| e.error);
        return (
            r,
            Tally {
                attempts: 1,
                last: Some(ep),
                ..Tally::default()
            },
        );
    };
    let (req, head) = match req.body() {
        ReqBody::Empty => {
            let head = copy_head(&req, None);
            (req, Some(head))
        }
        ReqBody::Full(data) => {
            let head = copy_head(&req, data.clone());
            (req, Some(head))
        }
        ReqBody::Incoming(body, _)
            if http_body::Body::size_hint(body)
                .exact()
                .is_some_and(|n| n <= REPLAY_LIMIT) =>
        {
            // Boxed: only requests with a body pay for the larger future.
            match Box::pin(read_in_full(req)).await {
                Ok(r) => r,
                Err(e) => return (Err(e), Tally::default()),
            }
        }
        _ => (req, None),
    };
    let (result, unsent, last) = attempt(cluster, req, policy, hash, seen).await;
    match verdict(policy, &result, unsent.is_some() || head.is_some(), 0) {
        Verdict::Done(exhausted) => (
            result,
            Tally {
                attempts: 1,
                exhausted,
                overflow: false,
                last,
            },
        ),
        // Trying again is the cold path: boxed, so the future of a request that
        // succeeds at once stays small and allocation-free.
        Verdict::Again(outcome) => match retry_slot(cluster) {
            Err(()) => (
                result,
                Tally {
                    attempts: 1,
                    exhausted: false,
                    overflow: true,
                    last,
                },
            ),
            Ok(slot) => {
                drop(result);
                Box::pin(again(
                    cluster, policy, head, unsent, outcome, slot, hash, seen,
                ))
                .await
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
    /// Stop; `true` when the policy wanted another try but had none left.
    Done(bool),
    Again(Outcome),
}

fn verdict(
    policy: &RetryRt,
    result: &Result<Sent, Error>,
    replayable: bool,
    retries: u32,
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
        Err(Error::NoHealthyUpstream(_) | Error::Overflow { .. }) => return Verdict::Done(false),
        Err(Error::Connect { .. } | Error::ConnectTimeout { .. }) => Outcome::ConnectFailure,
        Err(Error::Timeout(_)) => Outcome::Timeout,
        Err(Error::UpstreamReset { source, .. }) => Outcome::Reset {
            refused: refused_stream(source),
        },
        Err(_) => Outcome::Reset { refused: false },
    };
    if !policy.retriable(outcome) || !replayable {
        Verdict::Done(false)
    } else if retries >= policy.attempts {
        Verdict::Done(true)
    } else {
        Verdict::Again(outcome)
    }
}

/// Whether an upstream error is an HTTP/2 `REFUSED_STREAM` (the server did not process
/// the request).
fn refused_stream(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = s.source();
    }
    false
}

/// What a try gave: its result, the request when it was not sent, and the index of
/// the endpoint picked for it.
type Tried = (Result<Sent, Error>, Option<Request<ReqBody>>, Option<usize>);

/// One try on a new endpoint pick, under the per-try timeout. (Plain functions here
/// and below rather than `async fn`s, which would store the request twice.)
fn attempt<'a>(
    cluster: &'a ClusterRt,
    req: Request<ReqBody>,
    policy: &RetryRt,
    hash: Option<u64>,
    seen: &Seen,
) -> impl Future<Output = Tried> + 'a {
    let ep = match pick(cluster, hash) {
        Ok(ep) => ep,
        Err(e) => return Either::Left(ready((Err(e), Some(req), None))),
    };
    seen.tried(ep);
    let fut = once(ep, cluster, req);
    Either::Right(match policy.per_try_timeout {
        Some(t) => Either::Left(tokio::time::timeout(t, fut).map(move |r| match r {
            Ok(r) => split(r, ep),
            Err(_) => {
                // A try that timed out is a local-origin failure of its endpoint.
                if let Some(m) = cluster.monitor(ep) {
                    m.report(Health::LocalFailure { timeout: true });
                }
                (Err(Error::Timeout(t)), None, Some(ep))
            }
        })),
        None => Either::Right(fut.map(move |r| split(r, ep))),
    })
}

/// The tries after the first.
#[allow(clippy::too_many_arguments)] // reason: the state of the first try, handed on as is
async fn again(
    cluster: &ClusterRt,
    policy: &RetryRt,
    head: Option<Head>,
    mut unsent: Option<Request<ReqBody>>,
    mut outcome: Outcome,
    mut slot: Option<Slot>,
    hash: Option<u64>,
    seen: &Seen,
) -> (Result<Sent, Error>, Tally) {
    let mut retries = 0u32;
    loop {
        retries += 1;
        let retrying = slot.take();
        tracing::debug!(cluster = %cluster.name, retry = retries, ?outcome, "retrying");
        tokio::time::sleep(policy.backoff(retries)).await;
        let Some(req) = unsent.take().or_else(|| head.as_ref().map(rebuild)) else {
            unreachable!("a retry is only started with a request to send");
        };
        let (result, back, last) = attempt(cluster, req, policy, hash, seen).await;
        match verdict(policy, &result, back.is_some() || head.is_some(), retries) {
            Verdict::Done(exhausted) => {
                return (
                    result,
                    Tally {
                        attempts: retries + 1,
                        exhausted,
                        overflow: false,
                        last,
                    },
                );
            }
            Verdict::Again(o) => {
                drop(retrying);
                match retry_slot(cluster) {
                    Err(()) => {
                        return (
                            result,
                            Tally {
                                attempts: retries + 1,
                                exhausted: false,
                                overflow: true,
                                last,
                            },
                        );
                    }
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

fn split(r: Result<Sent, SendError>, ep: usize) -> Tried {
    match r {
        Ok(s) => (Ok(s), None, Some(ep)),
        Err(SendError { error, unsent }) => (Err(error), unsent.map(|r| *r), Some(ep)),
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
