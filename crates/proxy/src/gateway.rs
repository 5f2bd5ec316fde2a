//! Gateway listeners: one per `Gateway` server port, bound at `port + offset`. Requests
//! are routed like outbound ones, with the virtual hosts of that port.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::app::ProxyInputs;
use crate::drain::DrainWatch;
use crate::forward::{self, ConnCtx, ListenerKind};

/// Serves one downstream connection on gateway port `port` (as written in the Gateway).
pub(crate) async fn serve(
    inputs: Arc<ProxyInputs>,
    stream: TcpStream,
    peer: SocketAddr,
    port: u16,
    drain: DrainWatch,
) {
    let ctx = Arc::new(ConnCtx {
        inputs,
        listener: ListenerKind::Gateway { port },
        peer,
        drain,
    });
    forward::serve(ctx, stream).await;
}
