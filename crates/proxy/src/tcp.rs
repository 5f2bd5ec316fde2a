//! Opaque TCP: connect to an endpoint, copy bytes both ways, finish the connection's
//! record. As Envoy's TCP proxy does, under the cluster's `connectionPool`: a
//! connection over `tcp.maxConnections` is refused at once (flag `UO`); one with no
//! byte either way for `tcp.idleTimeout` (default 1 hour; `0s`: never) is closed; one
//! open for `tcp.maxConnectionDuration` is closed (flag `DT`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::record::{BytesIn, Record};
use crate::transport::Io;
use crate::upstream::{ClusterRt, EndpointState, Outcome, Slot};
use crate::{Error, ResponseFlag};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Picks an endpoint of `cluster` and connects to it (with the transport header when it
/// is behind a peer proxy).
/// Outlier detection, when the cluster has it, counts the connect: a failure is a
/// local-origin failure, a connection made is a success (Envoy's final connect success
/// of its TCP proxy).
/// Under `tcp.maxConnections` the connection's slot comes with it, held until it ends.
pub(crate) async fn connect(
    cluster: &ClusterRt,
) -> Result<(Io, Arc<EndpointState>, Option<Slot>), Error> {
    let slot = match &cluster.breaker {
        None => None,
        Some(b) => Some(b.connection().map_err(|o| Error::Overflow {
            cluster: cluster.name.to_string(),
            limit: o.field(),
        })?),
    };
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
    Ok((stream?, ep, slot))
}

/// Names the route and cluster a TCP connection takes in its record.
pub(crate) fn routed(rec: &mut Record, route: &Arc<str>, cluster: &Arc<str>) {
    rec.route = Some(route.clone());
    rec.cluster = Some(cluster.clone());
}

/// Copies bytes both ways until both directions are closed, then finishes the record;
/// `slot` (the connection's of `maxConnections`) is given back then.
pub(crate) async fn splice<D, U>(
    down: D,
    up: U,
    upstream: Arc<EndpointState>,
    slot: Option<Slot>,
    rec: Box<Record>,
) where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    splice_until(down, up, upstream, slot, rec, std::future::pending()).await
}

/// [`splice`], cut short when `stop` resolves (with the reason, which the record keeps):
/// a policy change that no longer allows the connection.
pub(crate) async fn splice_until<D, U>(
    mut down: D,
    mut up: U,
    upstream: Arc<EndpointState>,
    slot: Option<Slot>,
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
    let idle = upstream
        .breaker
        .as_ref()
        .and_then(|b| b.tcp_idle_timeout())
        // Without a DestinationRule's: the proxy's own (`--tcp-idle-timeout`, 1 h).
        .unwrap_or_else(|| {
            rec.conn
                .inputs
                .limits
                .tcp_idle_timeout
                .unwrap_or(Duration::ZERO)
        });
    // `tcp.maxConnectionDuration`: Envoy's `max_downstream_connection_duration`.
    let max_duration = upstream
        .breaker
        .as_ref()
        .and_then(|b| b.max_connection_duration());
    let activity = Activity::new();
    let mut down = Watched {
        inner: &mut down,
        activity: &activity,
    };
    let mut up = Watched {
        inner: &mut up,
        activity: &activity,
    };
    let copied = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut down, &mut up) => copied,
        reason = stop => {
            tracing::info!(upstream = %upstream.display, "connection closed: {reason}");
            rec.details = Some(reason);
            Ok((0, 0))
        }
        () = activity.idle_for(idle), if !idle.is_zero() => {
            tracing::debug!(upstream = %upstream.display, ?idle, "idle TCP connection closed");
            rec.details = Some(format!("idle timeout: no bytes either way for {idle:?}").into());
            Ok((0, 0))
        }
        () = tokio::time::sleep(max_duration.unwrap_or_default()), if max_duration.is_some() => {
            tracing::debug!(upstream = %upstream.display, ?max_duration, "TCP connection at its maximum duration closed");
            rec.flag = ResponseFlag::DurationTimeout;
            rec.details = Some(
                format!(
                    "max connection duration: open for {:?} (connectionPool.tcp.maxConnectionDuration)",
                    max_duration.unwrap_or_default()
                )
                .into(),
            );
            Ok((0, 0))
        }
    };
    drop(slot);
    let (flag, sent, received) = match copied {
        Ok((to_up, to_down)) => (rec.flag, to_up, to_down),
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

/// Finishes the record of a TCP connection that never reached an upstream.
pub(crate) fn failed(mut rec: Box<Record>, e: &Error) {
    tracing::debug!(error = %e, route = ?rec.route, "tcp connection failed");
    rec.flag = e.response_flag();
    rec.details = Some(e.to_string().into());
    rec.finish();
}

/// When bytes last moved on a connection, in milliseconds since it was opened.
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once no byte has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A stream that marks [`Activity`] whenever it reads bytes.
struct Watched<'a, S> {
    inner: &'a mut S,
    activity: &'a Activity,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut *this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
