//! Opaque TCP: connect to an endpoint, copy bytes both ways, finish the connection's
//! record.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::ReadBuf;

use crate::record::{BytesIn, Record};
use crate::transport::Io;
use crate::upstream::{ClusterRt, EndpointState, Outcome};
use crate::{Error, ResponseFlag};
use tokio::io::{AsyncRead, AsyncWrite};

/// Picks an endpoint of `cluster` and connects to it (with the transport header when it
/// is behind a peer proxy).
/// Outlier detection, when the cluster has it, counts the connect: a failure is a
/// local-origin failure, a connection made is a success (Envoy's final connect success
/// of its TCP proxy).
pub(crate) async fn connect(cluster: &ClusterRt) -> Result<(Io, Arc<EndpointState>), Error> {
    let i = cluster
        .pick_index(None)
        .ok_or_else(|| Error::NoHealthyUpstream(cluster.name.to_string()))?;
    let ep = cluster.endpoint(i).clone();
    let stream = ep.connect(cluster.connect_timeout).await;
    if let Some(m) = cluster.monitor(i) {
        m.report(match &stream {
            Ok(_) => Outcome::Status(200),
            Err(e) => Outcome::LocalFailure {
                timeout: matches!(e, Error::ConnectTimeout { .. }),
            },
        });
    }
    Ok((stream?, ep))
}

/// Names the route and cluster a TCP connection takes in its record.
pub(crate) fn routed(rec: &mut Record, route: &Arc<str>, cluster: &Arc<str>) {
    rec.route = Some(route.clone());
    rec.cluster = Some(cluster.clone());
}

/// Copies bytes both ways until both directions are closed, then finishes the record.
pub(crate) async fn splice<D, U>(down: D, up: U, upstream: Arc<EndpointState>, rec: Box<Record>)
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    splice_until(down, up, upstream, rec, std::future::pending()).await
}

/// [`splice`], cut short when `stop` resolves (with the reason, which the record keeps):
/// a policy change that no longer allows the connection.
pub(crate) async fn splice_until<D, U>(
    mut down: D,
    mut up: U,
    upstream: Arc<EndpointState>,
    mut rec: Box<Record>,
    stop: impl Future<Output = Arc<str>>,
) where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    rec.upstream = Some(upstream.clone());
    if let Some(m) = &rec.conn.inputs.metrics {
        m.tcp_opened(&rec);
        rec.tcp_opened = true;
    }
    let moved = AtomicU64::new(0);
    let mut down = Moved {
        io: &mut down,
        moved: &moved,
    };
    let tcp_idle_timeout = rec.conn.inputs.limits.tcp_idle_timeout;
    let idle = async {
        match tcp_idle_timeout {
            Some(timeout) => {
                crate::limits::idle(timeout, || Some(moved.load(Ordering::Relaxed))).await;
                timeout
            }
            None => std::future::pending().await,
        }
    };
    let copied = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut down, &mut up) => copied,
        timeout = idle => {
            let reason = format!("idle timeout: no byte either way for {}s", timeout.as_secs());
            tracing::debug!(upstream = %upstream.display, "connection closed: {reason}");
            rec.details = Some(reason.into());
            Ok((0, 0))
        }
        reason = stop => {
            tracing::info!(upstream = %upstream.display, "connection closed: {reason}");
            rec.details = Some(reason);
            Ok((0, 0))
        }
    };
    let (flag, sent, received) = match copied {
        Ok((to_up, to_down)) => (ResponseFlag::None, to_up, to_down),
        Err(e) => {
            tracing::debug!(upstream = %upstream.display, error = %e, "tcp proxy ended with an error");
            (ResponseFlag::UpstreamConnectionTermination, 0, 0)
        }
    };
    rec.flag = flag;
    rec.bytes_in = BytesIn::Known(sent);
    rec.bytes_out = received;
    rec.upstream = Some(upstream);
    rec.finish();
}

/// The downstream side of a splice, counting the reads and writes that move bytes, so
/// the idle timeout can tell a quiet connection from a busy one.
struct Moved<'a, T> {
    io: &'a mut T,
    moved: &'a AtomicU64,
}

impl<T: AsyncRead + Unpin> AsyncRead for Moved<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut *self.io).poll_read(cx, buf);
        if buf.filled().len() != before {
            self.moved.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Moved<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut *self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }
}

/// Finishes the record of a TCP connection that never reached an upstream.
pub(crate) fn failed(mut rec: Box<Record>, e: &Error) {
    tracing::debug!(error = %e, route = ?rec.route, "tcp connection failed");
    rec.flag = e.response_flag();
    rec.details = Some(e.to_string().into());
    rec.finish();
}
