//! HTTP/1.1 upgrades (WebSocket and the like): the request goes to the upstream on a
//! connection of its own, with its `Connection: upgrade` and `Upgrade` headers; when the
//! upstream answers `101 Switching Protocols`, the answer goes back with those headers
//! and both connections are joined, bytes copied each way until either side closes.
//! Any other answer is an ordinary response.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::ReqBody;
use crate::Error;
use crate::upstream::{EndpointState, InFlight};

/// Sends an upgrade request on a new connection and, on `101`, joins the two sides.
pub(super) async fn send(
    ep: &Arc<EndpointState>,
    connect_timeout: Duration,
    req: Request<ReqBody>,
    downstream: OnUpgrade,
) -> Result<(Response<Incoming>, InFlight), Error> {
    let in_flight = InFlight::new(ep.clone());
    let io = ep.connect(connect_timeout).await?;
    let addr = ep.key.dial;
    let reset = |source| Error::UpstreamReset { addr, source };
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(reset)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(upstream = %addr, error = %e, "upgrade connection ended");
        }
    });
    let mut resp = sender.send_request(req).await.map_err(reset)?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::join!(upstream, downstream) {
                (Ok(up), Ok(down)) => {
                    let (mut up, mut down) = (TokioIo::new(up), TokioIo::new(down));
                    match tokio::io::copy_bidirectional(&mut down, &mut up).await {
                        Ok((sent, received)) => {
                            tracing::debug!(upstream = %addr, sent, received, "upgraded connection closed")
                        }
                        Err(e) => {
                            tracing::debug!(upstream = %addr, error = %e, "upgraded connection failed")
                        }
                    }
                }
                (up, down) => tracing::debug!(
                    upstream = %addr,
                    upstream_ok = up.is_ok(),
                    downstream_ok = down.is_ok(),
                    "upgrade did not complete"
                ),
            }
        });
    }
    Ok((resp, in_flight))
}
