//! Serving HTTP on a downstream connection: HTTP/1.1 and HTTP/2 (prior knowledge) with
//! hyper's server, the h2c upgrade (`http/h2c.rs`), and graceful close on drain. Each
//! request goes to [`pipeline::handle`](crate::pipeline::handle) with the connection's
//! context.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tracing::Instrument;

use crate::conn::Conn;
use crate::forward::RespBody;

pub(crate) mod h2c;

/// How long a connection closed for abuse may finish what is in flight.
const ABUSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves HTTP/1.1 and HTTP/2 (prior knowledge) on a downstream connection until it
/// closes, or until a drain: then in-flight requests finish and the connection closes
/// (HTTP/1.1 after the current response, HTTP/2 with GOAWAY).
pub(crate) async fn serve<I>(conn: Arc<Conn>, io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    serve_until(conn, io, std::future::pending()).await
}

/// [`serve`], and closed as on a drain when `stop` resolves (with the reason): a config
/// change that no longer takes this connection.
pub(crate) async fn serve_until<I>(
    conn: Arc<Conn>,
    io: I,
    stop: impl Future<Output = Arc<str>> + Send,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let span = tracing::debug_span!("http", role = conn.role.as_str());
    serve_inner(conn, io, stop).instrument(span).await
}

async fn serve_inner<I>(conn: Arc<Conn>, io: I, stop: impl Future<Output = Arc<str>>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let inputs = conn.inputs.clone();
    let mut drain = conn.drain.clone();
    let peer = conn.peer;
    let this = conn.clone();
    let served = inputs
        .http_server
        .serve_connection_with_upgrades(TokioIo::new(io), service(conn));
    tokio::pin!(served);
    let idle = async {
        match inputs.limits.idle_timeout {
            Some(timeout) => this.abandoned.idle(timeout).await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        r = served.as_mut() => r,
        () = idle => {
            tracing::debug!(%peer, "closing the connection: idle timeout");
            served.as_mut().graceful_shutdown();
            served.await
        }
        () = this.abandoned.exceeded() => {
            // A client that opens requests and resets them (HTTP/2 rapid reset) costs
            // the proxy and the app work for nothing: GOAWAY, a short wait for what is
            // in flight, then the connection is closed.
            tracing::warn!(
                %peer,
                max = inputs.limits.max_abandoned_requests,
                "closing the connection: the client abandoned too many requests"
            );
            served.as_mut().graceful_shutdown();
            match tokio::time::timeout(ABUSE_GRACE, served.as_mut()).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            }
        }
        _ = drain.signaled() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
        reason = stop => {
            tracing::info!(%peer, "closing the connection: {reason}");
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "downstream connection ended with an error");
    }
}

/// The hyper service of a downstream connection.
fn service(
    conn: Arc<Conn>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<RespBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<RespBody>, Infallible>> + Send + 'static,
> + Clone {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let span = tracing::debug_span!("request", method = %req.method(), uri = %req.uri());
        // A combinator, not an `async` block, which would hold the request twice.
        futures_util::FutureExt::map(
            crate::pipeline::handle(conn.clone(), req),
            Ok::<_, Infallible>,
        )
        .instrument(span)
    })
}
