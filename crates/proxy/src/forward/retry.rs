//! Sending a routed request to its cluster, with the route's retry policy.
//!
//! A try that failed before the request left (connect failure, a pooled connection
//! that closed first) gets the request back and can always be tried again, body and
//! all. A try that failed later (a 503, a reset, a per-try timeout) can be tried again
//! only if the request has no body: its head is kept for that, and nothing is buffered.

use std::sync::Arc;

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
    let mut next = Some(req);
    let mut tries = 0u32;
    loop {
        let Some(req) = next.take().or_else(|| head.as_ref().map(rebuild)) else {
            unreachable!("a retry is only started with a request to send");
        };
        let ep = pick(cluster)?;
        let (result, unsent) = match policy.per_try_timeout {
            Some(t) => match tokio::time::timeout(t, once(ep, cluster, req)).await {
                Ok(r) => split(r),
                Err(_) => (Err(Error::Timeout(t)), None),
            },
            None => split(once(ep, cluster, req).await),
        };
        let outcome = match &result {
            Ok((resp, ..)) => Outcome::Response {
                status: resp.status(),
                grpc_status: resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok()?.parse().ok()),
            },
            Err(Error::Connect { .. } | Error::ConnectTimeout { .. }) => Outcome::ConnectFailure,
            Err(Error::Timeout(_)) => Outcome::Timeout,
            Err(_) => Outcome::Reset,
        };
        let replayable = unsent.is_some() || head.is_some();
        if !policy.retriable(outcome) || !replayable {
            return result.map(|s| (s, ResponseFlag::None));
        }
        if tries >= policy.attempts {
            return result.map(|s| (s, ResponseFlag::UpstreamRetryLimitExceeded));
        }
        tries += 1;
        tracing::debug!(cluster = %cluster.name, retry = tries, ?outcome, "retrying");
        next = unsent;
        drop(result);
        tokio::time::sleep(RetryRt::backoff(tries)).await;
    }
}

fn pick(cluster: &ClusterRt) -> Result<&Arc<EndpointState>, Error> {
    cluster
        .pick()
        .ok_or_else(|| Error::NoHealthyUpstream(cluster.name.to_string()))
}

async fn once(
    ep: &Arc<EndpointState>,
    cluster: &ClusterRt,
    req: Request<ReqBody>,
) -> Result<Sent, SendError> {
    let in_flight = InFlight::new(ep.clone());
    let (resp, pooled) = ep.send(req, cluster.connect_timeout).await?;
    Ok((resp, pooled, in_flight))
}

fn split(r: Result<Sent, SendError>) -> (Result<Sent, Error>, Option<Request<ReqBody>>) {
    match r {
        Ok(s) => (Ok(s), None),
        Err(SendError { error, unsent }) => (Err(error), unsent),
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
