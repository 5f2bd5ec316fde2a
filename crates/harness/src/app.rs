//! The test app beside each workload: an HTTP server that tells what it saw.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
}

/// One app listener; it stops when dropped.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves HTTP/1.1 and h2c on `addr` as workload `workload`: 200, the workload's name
/// as body, and the [`header`]s.
pub(crate) async fn start(workload: &str, addr: SocketAddr) -> anyhow::Result<App> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("the app of {workload} cannot listen on {addr}: {e}"))?;
    let hits = Arc::new(AtomicUsize::new(0));
    let name: Arc<str> = workload.into();
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let name = name.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let name = name.clone();
                    async move { Ok::<_, Infallible>(answer(&name, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(App { hits, task })
}

async fn answer(name: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut resp = Response::builder()
        .header(header::APP, name)
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
