//! The push server: serves each proxy its compiled configuration over an ADS-shaped
//! stream and records what each proxy acknowledged.
//!
//! Per stream:
//! 1. The first request names the proxy (`node.id`) and the resource type. If the proxy
//!    says it already runs the version the snapshot holds for it, nothing is sent;
//!    otherwise its configuration is pushed.
//! 2. Later requests answer pushes: an ACK (the push's nonce, no `error_detail`) records
//!    the version as acknowledged; a NACK (`error_detail` set) records the reason, and
//!    the proxy keeps running its previous version. Requests naming an older nonce are
//!    stale and ignored.
//! 3. When a new snapshot is published, the proxy is pushed to only if its version
//!    differs from the one last sent on this stream.
//!
//! A proxy id the snapshot does not know (at connect time, or after a new snapshot
//! drops it) ends the stream with status `NOT_FOUND` and a message naming the proxy:
//! a proxy must never run a config meant for another, and an empty config would silently
//! blackhole its traffic. The client keeps what it runs and retries with backoff, so it
//! picks its config up once the mesh config names it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::Stream;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::proto::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use crate::proto::{DiscoveryRequest, DiscoveryResponse};
use crate::{PushSnapshot, SyncTable, XdsError};

mod gate;
mod input;
mod stream;

pub use gate::{DEFAULT_PUSH_HOLD, DEFAULT_PUSH_LIMIT, PushGate};

pub use input::{MAX_REQUEST_BYTES, printable};

/// How long a new stream may wait for its first request.
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the server pings idle HTTP/2 connections, to notice dead proxies.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is dropped.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The discovery service. Cheap to clone: clones share the snapshot channel and the
/// sync table.
#[derive(Debug, Clone)]
pub struct XdsServer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    snapshots: watch::Receiver<Arc<PushSnapshot>>,
    sync: SyncTable,
    next_stream: AtomicU64,
    /// Becomes true when the server shuts down: every stream then ends.
    stop: watch::Receiver<bool>,
    stop_tx: watch::Sender<bool>,
    first_request_timeout: Duration,
    /// How many streams push at once.
    gate: Arc<PushGate>,
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;

impl XdsServer {
    /// A server that serves the snapshots published on `snapshots` and records each
    /// proxy's state in `sync`.
    pub fn new(snapshots: watch::Receiver<Arc<PushSnapshot>>, sync: SyncTable) -> Self {
        let (stop_tx, stop) = watch::channel(false);
        XdsServer {
            shared: Arc::new(Shared {
                snapshots,
                sync,
                next_stream: AtomicU64::new(1),
                stop,
                stop_tx,
                first_request_timeout: FIRST_REQUEST_TIMEOUT,
                gate: PushGate::new(DEFAULT_PUSH_LIMIT, DEFAULT_PUSH_HOLD),
            }),
        }
    }

    /// The sync table this server writes.
    pub fn sync_table(&self) -> &SyncTable {
        &self.shared.sync
    }

    /// The tonic service, to mount in a server of one's own.
    pub fn into_service(self) -> AggregatedDiscoveryServiceServer<XdsServer> {
        AggregatedDiscoveryServiceServer::new(self).max_decoding_message_size(MAX_REQUEST_BYTES)
    }

    /// How long a new stream may wait before its first request (default 30 s); then it
    /// ends with `DEADLINE_EXCEEDED`.
    pub fn with_first_request_timeout(mut self, timeout: Duration) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.first_request_timeout = timeout;
        }
        self
    }

    /// How many pushes run at once (default [`DEFAULT_PUSH_LIMIT`], Istio's
    /// `PILOT_PUSH_THROTTLE`), and how long one may hold its place while its proxy
    /// takes no response (default [`DEFAULT_PUSH_HOLD`]). Pushes that change only
    /// endpoints go before the others.
    pub fn with_push_limit(mut self, limit: usize, hold: Duration) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.gate = PushGate::new(limit, hold);
        }
        self
    }

    /// The gate pushes pass through (how many run and wait now).
    pub fn push_gate(&self) -> &Arc<PushGate> {
        &self.shared.gate
    }

    /// A tonic server builder with the HTTP/2 keepalive this server uses, for serving
    /// [`into_service`](Self::into_service) beside other services (the CA) or over
    /// another transport (TLS). Call [`stop_streams`](Self::stop_streams) when that
    /// server shuts down.
    pub fn server_builder() -> tonic::transport::Server {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
    }

    /// Ends every open stream with status `UNAVAILABLE` (proxies keep their config and
    /// reconnect), as [`serve`](Self::serve) does on shutdown.
    pub fn stop_streams(&self) {
        self.shared.stop_tx.send_replace(true);
    }

    /// Serves on `listener`, in plain text, until `shutdown` completes. Then every open stream ends with
    /// status `UNAVAILABLE` (proxies keep their config and reconnect) and the
    /// connections close.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), XdsError> {
        let stop_tx = self.shared.stop_tx.clone();
        let local = listener.local_addr().ok();
        tracing::info!(address = ?local, "discovery server listening");
        Self::server_builder()
            .add_service(self.into_service())
            .serve_with_incoming_shutdown(incoming(listener), async move {
                shutdown.await;
                tracing::info!("discovery server shutting down");
                stop_tx.send_replace(true);
            })
            .await
            .map_err(XdsError::Serve)
    }
}

/// The connections accepted on `listener`. Accepting that fails (out of file
/// descriptors, typically) is logged and retried after a pause, instead of the busy
/// retry a bare listener stream would get from tonic.
fn incoming(
    listener: TcpListener,
) -> ReceiverStream<Result<tokio::net::TcpStream, std::io::Error>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    if tx.send(Ok(stream)).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "discovery server: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

/// The identity a caller proved (its mesh certificate's SPIFFE id), put in the request's
/// extensions by whoever terminates TLS: with it, a stream may only subscribe as a
/// proxy whose workload has that identity.
#[derive(Debug, Clone)]
pub struct CallerIdentity(pub String);

#[tonic::async_trait]
impl AggregatedDiscoveryService for XdsServer {
    type StreamAggregatedResourcesStream = ResponseStream;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let peer = request.remote_addr();
        let caller = request
            .extensions()
            .get::<CallerIdentity>()
            .map(|c| c.0.clone());
        let id = self.shared.next_stream.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(4);
        let stream = stream::ProxyStream {
            id,
            peer,
            caller,
            requests: request.into_inner(),
            responses: tx,
            snapshots: self.shared.snapshots.clone(),
            stop: self.shared.stop.clone(),
            sync: self.shared.sync.clone(),
            wanted: None,
            gate: self.shared.gate.clone(),
        };
        let span = tracing::info_span!(
            "xds_stream",
            stream = id,
            peer = ?peer,
            proxy = tracing::field::Empty
        );
        tokio::spawn(
            stream
                .run(self.shared.first_request_timeout)
                .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
