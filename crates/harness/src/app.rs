//! The test app beside each workload: an HTTP server that tells what it saw.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Response headers of the test app: who answered and what reached it.
pub mod header {
    /// The workload (`<name>.<namespace>`) whose app answered.
    pub const APP: &str = "x-app";
    /// The request's path and query, as the app received them.
    pub const PATH: &str = "x-seen-path";
    /// The request's method.
    pub const METHOD: &str = "x-seen-method";
    /// The `x-forwarded-client-cert` the app received (absent if none).
    pub const XFCC: &str = "x-seen-xfcc";
    /// The request's authority (`host` header, else the URI's) as the app received it.
    pub const HOST: &str = "x-seen-host";
    /// Each trace header the app received, as `x-seen-<name>` (`x-seen-traceparent`,
    /// `x-seen-x-b3-traceid`, …): see [`TRACE_HEADERS`].
    pub const SEEN_PREFIX: &str = "x-seen-";
    /// On a `/call/…` answer: each `x-seen-*` header of the called app's answer, as
    /// `x-next-seen-*`.
    pub const NEXT_PREFIX: &str = "x-next-seen-";
}

/// The headers an app of the mesh copies from the request it serves to the requests it
/// makes, as Istio asks apps to (and as Bookinfo's productpage does): the request id
/// and every trace context. The test app echoes each one it received.
pub const TRACE_HEADERS: [&str; 9] = [
    "x-request-id",
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
];

/// One app listener; it stops when dropped.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) hits: Arc<AtomicUsize>,
    /// The authority of every request that reached it, in order.
    pub(crate) hosts: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves HTTP/1.1 and h2c on `addr` as workload `workload`: 200, the workload's name
/// as body, and the [`header`]s. Like httpbin, `/delay/<seconds>` answers after that
/// many seconds (a fraction allowed, at most 10) and `/status/<code>` with that status.
/// `/call/<host>/<path>` makes the app a caller: it GETs `http://<host>/<path>` through
/// its sidecar (`outbound`), with the [`TRACE_HEADERS`] it received, and answers with
/// the called app's status and body, and its `x-seen-*` headers as `x-next-seen-*`.
/// A gRPC request is answered as [`crate::grpc`] says.
pub(crate) async fn start(
    workload: &str,
    addr: SocketAddr,
    outbound: SocketAddr,
) -> anyhow::Result<App> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("the app of {workload} cannot listen on {addr}: {e}"))?;
    let hits = Arc::new(AtomicUsize::new(0));
    let hosts = Arc::new(Mutex::new(Vec::new()));
    let name: Arc<str> = workload.into();
    let counter = hits.clone();
    let seen = hosts.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let name = name.clone();
            let counter = counter.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(authority(&req).to_owned());
                    let name = name.clone();
                    async move {
                        if crate::grpc::is_grpc(&req) {
                            return Ok::<_, Infallible>(crate::grpc::answer(req).await);
                        }
                        Ok(answer(&name, req, outbound)
                            .await
                            .map(http_body_util::BodyExt::boxed))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(App { hits, hosts, task })
}

fn authority(req: &Request<Incoming>) -> &str {
    req.headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
}

async fn answer(name: &str, req: Request<Incoming>, outbound: SocketAddr) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if let Some(target) = path.strip_prefix("/call/") {
        let target = target.to_owned();
        return call(name, req, outbound, &target).await;
    }
    if let Some(secs) = path.strip_prefix("/delay/")
        && let Ok(secs) = secs.parse::<f64>()
    {
        tokio::time::sleep(std::time::Duration::from_secs_f64(secs.clamp(0.0, 10.0))).await;
    }
    let status = path
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| http::StatusCode::from_u16(c).ok())
        .unwrap_or(http::StatusCode::OK);
    let mut resp = Response::builder()
        .status(status)
        .header(header::APP, name)
        .header(header::HOST, authority(&req))
        .header(header::METHOD, req.method().as_str())
        .header(
            header::PATH,
            req.uri().path_and_query().map_or("/", |p| p.as_str()),
        );
    if let Some(xfcc) = req.headers().get("x-forwarded-client-cert") {
        resp = resp.header(header::XFCC, xfcc.clone());
    }
    for name in TRACE_HEADERS {
        if let Some(v) = req.headers().get(name) {
            resp = resp.header(format!("{}{name}", header::SEEN_PREFIX), v.clone());
        }
    }
    // Read the body to the end, so the connection can be kept alive.
    let _ = req.into_body().collect().await;
    resp.body(Full::new(Bytes::from(name.to_owned())))
        .unwrap_or_default()
}

/// `/call/<host>/<path>`: the app calls `http://<host>/<path>` through its sidecar,
/// propagating the [`TRACE_HEADERS`].
async fn call(
    name: &str,
    req: Request<Incoming>,
    outbound: SocketAddr,
    target: &str,
) -> Response<Full<Bytes>> {
    let url = format!("http://{target}");
    let headers: Vec<(&str, String)> = TRACE_HEADERS
        .iter()
        .filter_map(|h| {
            let v = req.headers().get(*h)?.to_str().ok()?;
            Some((*h, v.to_owned()))
        })
        .collect();
    let borrowed: Vec<(&str, &str)> = headers.iter().map(|(h, v)| (*h, v.as_str())).collect();
    let mut resp = Response::builder().header(header::APP, name);
    for h in TRACE_HEADERS {
        if let Some(v) = req.headers().get(h) {
            resp = resp.header(format!("{}{h}", header::SEEN_PREFIX), v.clone());
        }
    }
    let _ = req.into_body().collect().await;
    match crate::client::send_with(outbound, http::Method::GET, &url, &borrowed).await {
        Ok(reply) => {
            resp = resp.status(reply.status);
            for (h, v) in &reply.headers {
                if let Some(rest) = h.as_str().strip_prefix(header::SEEN_PREFIX) {
                    resp = resp.header(format!("{}{rest}", header::NEXT_PREFIX), v.clone());
                }
            }
            resp.body(Full::new(Bytes::from(reply.body)))
                .unwrap_or_default()
        }
        Err(e) => resp
            .status(http::StatusCode::BAD_GATEWAY)
            .body(Full::new(Bytes::from(format!("{url}: {e}"))))
            .unwrap_or_default(),
    }
}
