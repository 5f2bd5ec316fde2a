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
}

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
/// A gRPC request is answered as [`crate::grpc`] says.
pub(crate) async fn start(workload: &str, addr: SocketAddr) -> anyhow::Result<App> {
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
                        Ok(answer(&name, req).await.map(http_body_util::BodyExt::boxed))
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

async fn answer(name: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
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
    // Read the body to the end, so the connection can be kept alive.
    let _ = req.into_body().collect().await;
    resp.body(Full::new(Bytes::from(name.to_owned())))
        .unwrap_or_default()
}
