//! Opaque TCP: connect to an endpoint, copy bytes both ways, finish the connection's
//! record.

use std::sync::Arc;

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
    let copied = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut down, &mut up) => copied,
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

/// Finishes the record of a TCP connection that never reached an upstream.
pub(crate) fn failed(mut rec: Box<Record>, e: &Error) {
    tracing::debug!(error = %e, route = ?rec.route, "tcp connection failed");
    rec.flag = e.response_flag();
    rec.details = Some(e.to_string().into());
    rec.finish();
}
