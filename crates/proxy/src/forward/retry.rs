//! Sending a routed request to its cluster, with the route's retry policy.
//!
//! A try that failed before the request left (connect failure, a pooled connection
//! that closed first) gets the request back and can always be tried again, body and
//! all. A try that failed later (a 503, a reset, a per-try timeout) can be tried again
//! only if the request has no body: its head is kept for that, and nothing is buffered.

use std::future::{Future, ready};
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::Either;

use http::{Request, Response};
use hyper::body::Incoming;

use super::ReqBody;
use crate::config::RetryRt;
use crate::config::retry::Outcome;
use crate::upstream::{ClusterRt, EndpointState, InFlight, PooledH1, SendError};
use crate::{Error, ResponseFlag};

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
    let head = matches!(req.body(), ReqBody::Empty).then(|| copy_head(&req));
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

/// What it takes to send a bodyless request again.
struct Head {
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    headers: http::HeaderMap,
}

fn copy_head(req: &Request<ReqBody>) -> Head {
    Head {
        method: req.method().clone(),
        uri: req.uri().clone(),
        version: req.version(),
        headers: req.headers().clone(),
    }
}

fn rebuild(h: &Head) -> Request<ReqBody> {
    let mut req = Request::new(ReqBody::Empty);
    *req.method_mut() = h.method.clone();
    *req.uri_mut() = h.uri.clone();
    *req.version_mut() = h.version;
    *req.headers_mut() = h.headers.clone();
    req
}
