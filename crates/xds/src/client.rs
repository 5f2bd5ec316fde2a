//! The proxy's side of the protocol.
//!
//! [`connect`] starts a task that keeps a stream open to the control plane. The
//! control plane sends the resources of the proxy's config that changed (see
//! `discovery.proto`); the client decodes them, applies them to what it holds, and
//! hands the config they make to a [`ConfigHandler`]; its result is the answer: `Ok`
//! is an ACK, `Err(reason)` a NACK, after which the proxy keeps running its previous
//! config. A resource that does not decode is refused alone: the client applies the
//! others and names the refused one in its NACK. When the stream breaks, the task
//! reconnects with capped exponential backoff and jitter. It resubscribes with the
//! resources it holds and their versions, so the control plane sends only what
//! changed meanwhile. While disconnected the handler is never called: the proxy serves
//! its last good config.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tracing::Instrument;

use crate::XdsError;
use crate::proto::Resource;
use crate::proto::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use crate::proto::{DiscoveryRequest, DiscoveryResponse, ErrorDetail, Node};
use crate::resource::{
    PROXY_CONFIG_TYPE_URL, PieceDigest, config_version, decode_piece, decode_proxy_config,
    piece_hash,
};
use backoff::Backoff;
use skiff_model::config::{ProxyConfig, ProxyParts, SharedConfig, SharedPiece};

mod backoff;

/// The most bytes of resource bodies one change split over several responses may
/// hold.
const MAX_CHANGE_BYTES: usize = 256 * 1024 * 1024;

/// gRPC status code INVALID_ARGUMENT, sent in a NACK's `error_detail`.
const INVALID_ARGUMENT: i32 = 3;

/// Who the proxy is, as it tells the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Proxy id: `<workload name>.<namespace>`.
    pub id: String,
    /// Facts about the proxy; [`NodeInfo::new`] sets `version` to the skiff version.
    pub metadata: BTreeMap<String, String>,
}

impl NodeInfo {
    /// A node with this id and the skiff version in its metadata.
    pub fn new(id: impl Into<String>) -> Self {
        let metadata = [("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())].into();
        NodeInfo {
            id: id.into(),
            metadata,
        }
    }

    /// Adds a fact to the metadata (e.g. `admin`: the address of the proxy's admin
    /// endpoint, which `skiff proxy-config` and `skiff explain` reach it by).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    fn to_proto(&self) -> Node {
        Node {
            id: self.id.clone(),
            metadata: self.metadata.clone().into_iter().collect(),
        }
    }
}

/// Timing of the client's connections.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// First delay before reconnecting after a failure (default 200 ms).
    pub initial_backoff: Duration,
    /// Longest delay between reconnection attempts (default 15 s).
    pub max_backoff: Duration,
    /// Time allowed for the TCP connect and HTTP/2 handshake (default 5 s).
    pub connect_timeout: Duration,
    /// HTTP/2 ping interval on the stream, to notice a control plane that vanished
    /// without closing the connection (default 30 s).
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection counts as broken
    /// (default 10 s).
    pub keepalive_timeout: Duration,
    /// Subscribe on demand: start with the services named in `subscribe` (none by
    /// default) and add others with [`XdsClient::subscriber`], instead of the whole
    /// view of the mesh (default false).
    pub on_demand: bool,
    /// With `on_demand`: the names (`host` or `host:port`) to start with.
    pub subscribe: Vec<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            on_demand: false,
            subscribe: Vec::new(),
        }
    }
}

/// The pieces of the shared part a proxy holds, by name: version and content.
type Pieces = BTreeMap<String, (String, SharedPiece)>;

/// A config pushed by the control plane: what the proxy holds once it applies the
/// resources of one response.
#[derive(Debug, Clone)]
pub struct ConfigUpdate {
    /// Its version ([`config_version`] of what the proxy holds).
    pub version: String,
    own: Arc<ProxyConfig>,
    pieces: Arc<Pieces>,
    /// The names of the resources this response added or changed.
    pub changed: Vec<String>,
    /// The names of the resources it removed.
    pub removed: Vec<String>,
}

impl ConfigUpdate {
    /// The whole configuration: the own part and the pieces joined.
    pub fn config(&self) -> ProxyConfig {
        // The client checked that the pieces join before handing them out.
        let shared = SharedConfig::from_pieces(self.pieces())
            .unwrap_or_else(|e| unreachable!("checked pieces failed to join: {e}"));
        ProxyParts {
            own: ProxyConfig::clone(&self.own),
            shared: Arc::new(shared),
        }
        .join()
    }

    /// The proxy's own part (its shared fields empty).
    pub fn own(&self) -> &ProxyConfig {
        &self.own
    }

    /// The pieces of the shared part, by name.
    pub fn pieces(&self) -> impl Iterator<Item = (&str, &SharedPiece)> {
        self.pieces
            .iter()
            .map(|(name, (_, piece))| (name.as_str(), piece))
    }
}

/// Receives the configs the control plane pushes.
///
/// `Ok(())` accepts the config (the client ACKs it); `Err(reason)` rejects it (the
/// client NACKs it with the reason, which shows in `skiff proxy-status`, and the proxy
/// must keep running what it ran before). Called on the client's task: keep it quick,
/// and do not block on I/O.
pub trait ConfigHandler: Send + 'static {
    /// Applies one update.
    fn apply(&mut self, update: ConfigUpdate) -> Result<(), String>;
}

impl<F> ConfigHandler for F
where
    F: FnMut(ConfigUpdate) -> Result<(), String> + Send + 'static,
{
    fn apply(&mut self, update: ConfigUpdate) -> Result<(), String> {
        self(update)
    }
}

/// What the client is doing, observable through [`XdsClient::status`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStatus {
    /// True while a stream to the control plane is open.
    pub connected: bool,
    /// The version the proxy runs (the last one the handler accepted).
    pub version: Option<String>,
    /// The last connection or stream error, kept after reconnecting.
    pub last_error: Option<String>,
    /// The last reason the handler gave for rejecting a config.
    pub last_nack: Option<String>,
    /// Streams opened so far (1 after the first connection).
    pub connections: u64,
    /// Configs received so far (accepted, rejected, or recognised as unchanged).
    pub responses: u64,
}

/// A running client. Dropping it stops the client.
#[derive(Debug)]
#[must_use = "dropping the XdsClient stops it"]
pub struct XdsClient {
    task: JoinHandle<()>,
    status: watch::Receiver<ClientStatus>,
    subscriber: Subscriber,
}

/// Adds names to an on-demand client's subscription. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Subscriber(mpsc::UnboundedSender<String>);

impl Subscriber {
    /// Asks the control plane for the services `name` (`host` or `host:port`, as a
    /// request's authority has it) reaches. The config that brings them arrives as
    /// any other update. Does nothing for a client that holds the whole view.
    pub fn subscribe(&self, name: &str) {
        let _ = self.0.send(name.trim().to_ascii_lowercase());
    }
}

impl XdsClient {
    /// What adds names to the subscription (on demand).
    pub fn subscriber(&self) -> Subscriber {
        self.subscriber.clone()
    }

    /// Follows the client's status.
    pub fn status(&self) -> watch::Receiver<ClientStatus> {
        self.status.clone()
    }

    /// Stops the client and closes its stream.
    pub fn shutdown(self) {
        // Drop aborts the task.
    }
}

impl Drop for XdsClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Makes the gRPC channel of one connection attempt from the endpoint the client
/// built (address, timeouts, keepalive): e.g. with a TLS connector through
/// `Endpoint::connect_with_connector`. Called again for every reconnection.
pub type ChannelFactory = Arc<
    dyn Fn(
            Endpoint,
        )
            -> Pin<Box<dyn Future<Output = Result<Channel, tonic::transport::Error>> + Send>>
        + Send
        + Sync,
>;

/// Connects to the control plane at `control` (`host:port` or `http://host:port`) as
/// `node`, in plain text, and hands every config pushed to `handler`. Must be called
/// within a tokio runtime. Fails only when the address is malformed; an unreachable
/// control plane is retried forever, with backoff.
pub fn connect(
    control: &str,
    node: NodeInfo,
    options: ClientOptions,
    handler: impl ConfigHandler,
) -> Result<XdsClient, XdsError> {
    let plain: ChannelFactory =
        Arc::new(|endpoint: Endpoint| Box::pin(async move { endpoint.connect().await }));
    connect_with(control, node, options, handler, plain)
}

/// [`connect`], with every channel made by `channel` (a TLS one, for a control plane
/// that serves xDS over TLS). The address must then be `host:port` or
/// `http://host:port`: the factory adds the TLS.
pub fn connect_with(
    control: &str,
    node: NodeInfo,
    options: ClientOptions,
    handler: impl ConfigHandler,
    channel: ChannelFactory,
) -> Result<XdsClient, XdsError> {
    let uri = if control.contains("://") {
        control.to_owned()
    } else {
        format!("http://{control}")
    };
    let endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|e| XdsError::InvalidAddress {
            address: control.to_owned(),
            reason: e.to_string(),
        })?
        .connect_timeout(options.connect_timeout)
        .http2_keep_alive_interval(options.keepalive_interval)
        .keep_alive_timeout(options.keepalive_timeout)
        .keep_alive_while_idle(true);
    let (status_tx, status) = watch::channel(ClientStatus::default());
    let span = tracing::info_span!("xds_client", proxy = %node.id, control = %uri);
    let worker = Worker {
        endpoint,
        channel,
        address: uri,
        node,
        options,
        status: status_tx,
        version: None,
        own: None,
        pieces: Arc::new(Pieces::new()),
        digest: 0,
        subscribed: std::collections::BTreeSet::new(),
    };
    let (subscriber, names) = mpsc::unbounded_channel();
    let task = tokio::spawn(worker.run(handler, names).instrument(span));
    Ok(XdsClient {
        task,
        status,
        subscriber: Subscriber(subscriber),
    })
}

struct Worker {
    endpoint: Endpoint,
    channel: ChannelFactory,
    address: String,
    node: NodeInfo,
    options: ClientOptions,
    status: watch::Sender<ClientStatus>,
    /// The version the proxy runs.
    version: Option<String>,
    /// The own part it holds, and its version.
    own: Option<(String, Arc<ProxyConfig>)>,
    /// The pieces it holds.
    pieces: Arc<Pieces>,
    /// The [`PieceDigest`] of `pieces`.
    digest: PieceDigest,
    /// On demand: the names subscribed to since the client started.
    subscribed: std::collections::BTreeSet<String>,
}

/// How to undo one response's changes.
struct Undo {
    own: Option<Option<(String, Arc<ProxyConfig>)>>,
    pieces: Vec<(String, Option<(String, SharedPiece)>)>,
    digest: PieceDigest,
}

impl Worker {
    async fn run(
        mut self,
        mut handler: impl ConfigHandler,
        mut names: mpsc::UnboundedReceiver<String>,
    ) {
        let mut backoff = Backoff::new(self.options.initial_backoff, self.options.max_backoff);
        self.subscribed.extend(
            self.options
                .subscribe
                .iter()
                .map(|n| n.trim().to_ascii_lowercase()),
        );
        loop {
            let mut got_config = false;
            let result = self
                .session(&mut handler, &mut names, &mut got_config)
                .await;
            let error = match result {
                Ok(()) => "the control plane closed the stream".to_owned(),
                Err(e) => crate::error::with_causes(&e),
            };
            self.status.send_modify(|s| {
                s.connected = false;
                s.last_error = Some(error.clone());
            });
            if got_config {
                backoff.reset();
            }
            let delay = backoff.next_delay(&mut rand::rng());
            tracing::warn!(%error, retry_in = ?delay, version = ?self.version, "disconnected from the control plane; keeping the current config");
            tokio::time::sleep(delay).await;
        }
    }

    /// One stream, until it ends. Sets `got_config` once a config has arrived.
    async fn session(
        &mut self,
        handler: &mut impl ConfigHandler,
        names: &mut mpsc::UnboundedReceiver<String>,
        got_config: &mut bool,
    ) -> Result<(), XdsError> {
        let channel: Channel = (self.channel)(self.endpoint.clone())
            .await
            .map_err(|source| XdsError::Connect {
                address: self.address.clone(),
                source,
            })?;
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let (requests, rx) = mpsc::channel(8);
        let subscribe = DiscoveryRequest {
            node: Some(self.node.to_proto()),
            type_url: PROXY_CONFIG_TYPE_URL.to_owned(),
            version_info: self.version.clone().unwrap_or_default(),
            response_nonce: String::new(),
            resource_names: vec![self.node.id.clone()],
            error_detail: None,
            initial_resource_versions: self.holds(),
            rejected_resources: Vec::new(),
            on_demand: self.options.on_demand,
            subscribe: self.subscribed.iter().cloned().collect(),
        };
        // The channel has room: this cannot block.
        let _ = requests.send(subscribe).await;
        let mut responses = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await?
            .into_inner();
        tracing::info!(resume = ?self.version, "connected to the control plane");
        self.status.send_modify(|s| {
            s.connected = true;
            s.connections += 1;
        });
        // The parts of a change split over several responses, until the last.
        let mut pending: Option<DiscoveryResponse> = None;
        loop {
            let response = tokio::select! {
                response = responses.message() => response?,
                Some(name) = names.recv() => {
                    if !self.options.on_demand || !self.subscribed.insert(name.clone()) {
                        continue;
                    }
                    tracing::info!(%name, "asking the control plane for a service on demand");
                    let more = DiscoveryRequest {
                        type_url: PROXY_CONFIG_TYPE_URL.to_owned(),
                        subscribe: vec![name],
                        ..DiscoveryRequest::default()
                    };
                    if requests.send(more).await.is_err() {
                        break;
                    }
                    continue;
                }
            };
            let Some(response) = response else {
                break;
            };
            *got_config = true;
            let response = match pending.take() {
                Some(mut whole) => {
                    whole.resources.extend(response.resources);
                    whole.removed_resources.extend(response.removed_resources);
                    whole.nonce = response.nonce;
                    whole.version_info = response.version_info;
                    whole.more = response.more;
                    whole
                }
                None => response,
            };
            if response.more {
                let size: usize = response.resources.iter().map(|r| r.body.len()).sum();
                if size > MAX_CHANGE_BYTES {
                    return Err(XdsError::Stream(tonic::Status::resource_exhausted(
                        format!(
                            "the control plane sent a change of more than {MAX_CHANGE_BYTES} bytes"
                        ),
                    )));
                }
                pending = Some(response);
                continue;
            }
            let answer = self.on_response(handler, response);
            if requests.send(answer).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// What the proxy holds, name to version (its own part under its id).
    fn holds(&self) -> std::collections::HashMap<String, String> {
        let mut holds: std::collections::HashMap<String, String> = self
            .pieces
            .iter()
            .map(|(name, (version, _))| (name.clone(), version.clone()))
            .collect();
        if let Some((version, _)) = &self.own {
            holds.insert(self.node.id.clone(), version.clone());
        }
        holds
    }

    /// Applies a response to what the proxy holds, hands the result to the handler
    /// and builds the ACK or NACK.
    fn on_response(
        &mut self,
        handler: &mut impl ConfigHandler,
        response: DiscoveryResponse,
    ) -> DiscoveryRequest {
        let nonce = response.nonce.clone();
        let sent_version = response.version_info.clone();
        let mut rejected = Vec::new();
        let result = if response.type_url != PROXY_CONFIG_TYPE_URL {
            Err(format!(
                "unexpected resource type {:?} (expected {PROXY_CONFIG_TYPE_URL})",
                response.type_url
            ))
        } else if self.version.as_deref() == Some(sent_version.as_str())
            && response.removed_resources.is_empty()
            && response
                .resources
                .iter()
                .all(|r| self.holds_version(&r.name, &r.version))
        {
            tracing::debug!(version = %sent_version, "config unchanged");
            Ok(())
        } else {
            self.apply(handler, response, &mut rejected)
        };
        let version = self
            .own
            .as_ref()
            .map(|(own, _)| config_version(own, self.digest));
        if self.own.is_some() {
            self.version = version.clone();
        }
        let error_detail = match result {
            Ok(()) => {
                tracing::info!(version = ?self.version, "config accepted");
                None
            }
            Err(reason) => {
                tracing::warn!(sent = %sent_version, runs = ?self.version, %reason, refused = rejected.len(), "config rejected; keeping what was held");
                Some(ErrorDetail {
                    code: INVALID_ARGUMENT,
                    message: reason,
                })
            }
        };
        self.status.send_modify(|s| {
            s.responses += 1;
            s.version = self.version.clone();
            if let Some(e) = &error_detail {
                s.last_nack = Some(e.message.clone());
            }
        });
        // A NACK says what the proxy holds now, so the control plane knows what
        // it kept.
        let initial_resource_versions = if error_detail.is_some() {
            self.holds()
        } else {
            Default::default()
        };
        DiscoveryRequest {
            node: None,
            type_url: PROXY_CONFIG_TYPE_URL.to_owned(),
            // An ACK names the version now held; a NACK too (what still runs).
            version_info: self.version.clone().unwrap_or_default(),
            response_nonce: nonce,
            resource_names: vec![self.node.id.clone()],
            error_detail,
            initial_resource_versions,
            rejected_resources: rejected,
            ..DiscoveryRequest::default()
        }
    }

    fn holds_version(&self, name: &str, version: &str) -> bool {
        if name == self.node.id {
            self.own.as_ref().is_some_and(|(v, _)| v == version)
        } else {
            self.pieces.get(name).is_some_and(|(v, _)| v == version)
        }
    }

    /// Applies the resources of a response; those that do not decode are refused
    /// (named in `rejected`) and the rest applied. If the handler refuses the result,
    /// everything is undone and every resource of the response counts as refused.
    fn apply(
        &mut self,
        handler: &mut impl ConfigHandler,
        response: DiscoveryResponse,
        rejected: &mut Vec<String>,
    ) -> Result<(), String> {
        let mut undo = Undo {
            own: None,
            pieces: Vec::new(),
            digest: self.digest,
        };
        let mut reasons = Vec::new();
        let mut changed = Vec::new();
        let names: Vec<String> = response
            .resources
            .iter()
            .map(|r| r.name.clone())
            .chain(response.removed_resources.iter().cloned())
            .collect();
        for resource in response.resources {
            let name = resource.name.clone();
            match self.decode(resource) {
                Ok(Decoded::Own(version, config)) => {
                    let previous = self.own.replace((version, Arc::new(*config)));
                    undo.own.get_or_insert(previous);
                    changed.push(name);
                }
                Ok(Decoded::Piece(version, piece)) => {
                    self.digest ^= piece_hash(&name, &version);
                    let pieces = Arc::make_mut(&mut self.pieces);
                    let previous = pieces.insert(name.clone(), (version, piece));
                    if let Some((old, _)) = &previous {
                        self.digest ^= piece_hash(&name, old);
                    }
                    undo.pieces.push((name.clone(), previous));
                    changed.push(name);
                }
                Err(reason) => {
                    reasons.push(reason);
                    rejected.push(name);
                }
            }
        }
        let mut removed = Vec::new();
        for name in response.removed_resources {
            if name == self.node.id {
                reasons.push("the control plane removed the proxy's own config".to_owned());
                rejected.push(name);
                continue;
            }
            if let Some(previous) = Arc::make_mut(&mut self.pieces).remove(&name) {
                self.digest ^= piece_hash(&name, &previous.0);
                undo.pieces.push((name.clone(), Some(previous)));
                removed.push(name);
            }
        }
        let joined = if self.own.is_none() {
            Err("the control plane sent pieces before the proxy's own config".to_owned())
        } else {
            SharedConfig::check_pieces(self.pieces.iter().map(|(n, (_, p))| (n.as_str(), p)))
                .map_err(|e| e.to_string())
        };
        let handled = joined.and_then(|()| {
            if changed.is_empty() && removed.is_empty() {
                return Ok(());
            }
            let (own_version, own) = self.own.clone().expect("checked above");
            handler.apply(ConfigUpdate {
                version: config_version(&own_version, self.digest),
                own,
                pieces: self.pieces.clone(),
                changed,
                removed,
            })
        });
        if let Err(reason) = handled {
            self.undo(undo);
            *rejected = names;
            return Err(reason);
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
        }
    }

    fn undo(&mut self, undo: Undo) {
        if let Some(own) = undo.own {
            self.own = own;
        }
        let pieces = Arc::make_mut(&mut self.pieces);
        for (name, previous) in undo.pieces.into_iter().rev() {
            match previous {
                Some(previous) => pieces.insert(name, previous),
                None => pieces.remove(&name),
            };
        }
        self.digest = undo.digest;
    }

    /// Decodes one resource and checks it belongs to this proxy.
    fn decode(&self, resource: Resource) -> Result<Decoded, String> {
        if resource.name == self.node.id {
            let config =
                decode_proxy_config(&resource.name, &resource.body).map_err(|e| e.to_string())?;
            if config.node.id != self.node.id {
                return Err(format!(
                    "the config is for node {:?}, not {:?}",
                    config.node.id, self.node.id
                ));
            }
            return Ok(Decoded::Own(resource.version, Box::new(config)));
        }
        let piece = decode_piece(&resource.name, &resource.body).map_err(|e| e.to_string())?;
        piece.fits(&resource.name).map_err(|e| e.to_string())?;
        Ok(Decoded::Piece(resource.version, piece))
    }
}

/// A decoded resource.
enum Decoded {
    Own(String, Box<ProxyConfig>),
    Piece(String, SharedPiece),
}

#[cfg(test)]
mod tests;
