//! Opaque TCP: connect to an endpoint, copy bytes both ways, log one line.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::access_log::AccessLog;
use crate::upstream::{ClusterRt, EndpointState};
use crate::{Error, ResponseFlag};

/// Picks an endpoint of `cluster` and connects to it (with the transport header when it
/// is behind a peer proxy).
pub(crate) async fn connect(cluster: &ClusterRt) -> Result<(TcpStream, Arc<EndpointState>), Error> {
    let ep = cluster
        .pick()
        .ok_or_else(|| Error::NoHealthyUpstream(cluster.name.to_string()))?
        .clone();
    let stream = ep.connect_tcp(cluster.connect_timeout).await?;
    Ok((stream, ep))
}

/// Where a TCP connection's log line says it went.
#[derive(Debug)]
pub(crate) struct Names {
    pub(crate) route: Arc<str>,
    pub(crate) cluster: Arc<str>,
}

/// Copies bytes both ways until both directions are closed, then logs the connection.
pub(crate) async fn splice<D, U>(
    log: &AccessLog,
    mut down: D,
    mut up: U,
    upstream: &EndpointState,
    names: &Names,
    start: (SystemTime, Instant),
) where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (flag, sent, received) = match tokio::io::copy_bidirectional(&mut down, &mut up).await {
        Ok((to_up, to_down)) => (ResponseFlag::None, to_up, to_down),
        Err(e) => {
            tracing::debug!(upstream = %upstream.display, error = %e, "tcp proxy ended with an error");
            (ResponseFlag::UpstreamConnectionTermination, 0, 0)
        }
    };
    log.tcp(
        start.0,
        start.1,
        flag,
        sent,
        received,
        Some(&upstream.display),
        &names.route,
        &names.cluster,
    );
}

/// Logs a TCP connection that never reached an upstream.
pub(crate) fn failed(log: &AccessLog, start: (SystemTime, Instant), e: &Error, names: &Names) {
    tracing::debug!(error = %e, route = %names.route, "tcp connection failed");
    log.tcp(
        start.0,
        start.1,
        e.response_flag(),
        0,
        0,
        None,
        &names.route,
        &names.cluster,
    );
}

pub(crate) fn now() -> (SystemTime, Instant) {
    (SystemTime::now(), Instant::now())
}
