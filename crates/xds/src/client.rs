//! The proxy's side of the protocol.
//!
//! [`connect`] starts a task that keeps a stream open to the control plane. Each config
//! pushed to the proxy goes to a [`ConfigHandler`]; its result is the answer: `Ok` is an
//! ACK, `Err(reason)` a NACK, after which the proxy keeps running its previous config.
//! When the stream breaks, the task reconnects with capped exponential backoff and
//! jitter. It resubscribes with the version the proxy runs, so the control plane does
//! not send an unchanged config again; if it does anyway, the client recognises the
//! version and acknowledges it without calling the handler. While disconnected the
//! handler is never called: the proxy serves its last good config.

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
use crate::proto::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use crate::proto::{DiscoveryRequest, DiscoveryResponse, ErrorDetail, Node};
use crate::resource::{
    PROXY_CONFIG_TYPE_URL, SHARED_RESOURCE, decode_proxy_config, decode_shared_config,
};
use backoff::Backoff;
use skiff_model::config::{ProxyConfig, ProxyParts};

mod backoff;

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
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

/// A config pushed by the control plane.
#[derive(Debug, Clone)]
pub struct ConfigUpdate {
    /// The proxy's new configuration.
    pub config: ProxyConfig,
    /// Its version (a hash of its encoding).
    pub version: String,
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
}

impl XdsClient {
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
    };
    let task = tokio::spawn(worker.run(handler).instrument(span));
    Ok(XdsClient { task, status })
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
}

impl Worker {
    async fn run(mut self, mut handler: impl ConfigHandler) {
        let mut backoff = Backoff::new(self.options.initial_backoff, self.options.max_backoff);
        loop {
            let mut got_config = false;
            let result = self.session(&mut handler, &mut got_config).await;
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
        while let Some(response) = responses.message().await? {
            *got_config = true;
            let answer = self.on_response(handler, response);
            if requests.send(answer).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Hands a response to the handler and builds the ACK or NACK.
    fn on_response(
        &mut self,
        handler: &mut impl ConfigHandler,
        response: DiscoveryResponse,
    ) -> DiscoveryRequest {
        let version = response.version_info.clone();
        let nonce = response.nonce.clone();
        let result = if self.version.as_deref() == Some(version.as_str()) {
            tracing::debug!(%version, "config unchanged");
            Ok(())
        } else {
            self.check(response).and_then(|config| {
                handler.apply(ConfigUpdate {
                    config,
                    version: version.clone(),
                })
            })
        };
        let error_detail = match result {
            Ok(()) => {
                tracing::info!(%version, "config accepted");
                self.version = Some(version.clone());
                None
            }
            Err(reason) => {
                tracing::warn!(%version, %reason, "config rejected; keeping the current one");
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
        DiscoveryRequest {
            node: None,
            type_url: PROXY_CONFIG_TYPE_URL.to_owned(),
            // An ACK names the version accepted; a NACK the version still running.
            version_info: self.version.clone().unwrap_or_default(),
            response_nonce: nonce,
            resource_names: vec![self.node.id.clone()],
            error_detail,
        }
    }

    /// Checks that a response carries this proxy's config and decodes it.
    fn check(&self, response: DiscoveryResponse) -> Result<ProxyConfig, String> {
        if response.type_url != PROXY_CONFIG_TYPE_URL {
            return Err(format!(
                "unexpected resource type {:?} (expected {PROXY_CONFIG_TYPE_URL})",
                response.type_url
            ));
        }
        // The proxy's own part, and the part it shares with proxies that see the
        // mesh alike; a control plane may also send the whole config as one resource.
        let (own, shared) = match response.resources.as_slice() {
            [own] => (own, None),
            [own, shared] if shared.name == SHARED_RESOURCE => (own, Some(shared)),
            [_, other] => {
                return Err(format!(
                    "unexpected second resource {:?} (expected {SHARED_RESOURCE:?})",
                    other.name
                ));
            }
            other => {
                return Err(format!(
                    "expected the proxy's config and its shared part, got {} resources",
                    other.len()
                ));
            }
        };
        if own.name != self.node.id {
            return Err(format!(
                "the control plane sent the config of {:?} to proxy {:?}",
                own.name, self.node.id
            ));
        }
        let config = decode_proxy_config(&own.name, &own.body).map_err(|e| e.to_string())?;
        let config = match shared {
            None => config,
            Some(shared) => ProxyParts {
                own: config,
                shared: Arc::new(decode_shared_config(&shared.body).map_err(|e| e.to_string())?),
            }
            .join(),
        };
        if config.node.id != self.node.id {
            return Err(format!(
                "the config is for node {:?}, not {:?}",
                config.node.id, self.node.id
            ));
        }
        Ok(config)
    }
}
