//! The proxy as a whole: its shared inputs, its listeners, config updates and drain.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use skiff_model::config::{ProxyConfig, ProxyKind};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tracing::Instrument;

use crate::Error;
use crate::access_log::{AccessLog, AccessLogTarget};
use crate::config::Snapshot;
use crate::conn::{Conn, Role};
use crate::drain::{self, DrainTrigger, DrainWatch};
use crate::upstream::EndpointRegistry;

/// How a proxy is started; the config it serves comes later, through [`Proxy::apply`].
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Proxy id (`<workload>.<namespace>`), for logs; a config for another id is
    /// served but warned about.
    pub id: String,
    /// Address for every listener. Default: the config's `node.address`, else
    /// 127.0.0.1. The admin listener, which must answer before any config, uses this
    /// or 127.0.0.1.
    pub address: Option<IpAddr>,
    /// Outbound listener port (Istio: 15001). 0 picks a free port.
    pub outbound_port: u16,
    /// Inbound listener port (Istio: 15006). 0 picks a free port.
    pub inbound_port: u16,
    /// Admin port (Istio: 15000). 0 picks a free port.
    pub admin_port: u16,
    /// More ports that answer like the admin port, where Istio's tools and habits
    /// expect them: 15020 (the pilot-agent's, where a Job posts `/quitquitquit` and
    /// Prometheus scrapes `/stats/prometheus`), 15021 (`/healthz/ready`) and 15090
    /// (Envoy's `/stats/prometheus`). A port that cannot be opened is warned about.
    pub agent_ports: Vec<u16>,
    /// Added to every gateway port, so an unprivileged gateway can serve port 80 on
    /// 8080.
    pub gateway_port_offset: u16,
    /// Where access-log lines go.
    pub access_log: AccessLogTarget,
    /// How they are written: skiff's line (default), Istio's default text, or JSON.
    pub access_log_format: crate::AccessLogFormat,
    /// Istio's standard metrics (`istio_requests_total`, …), served with the process
    /// metrics at `/stats/prometheus` on the admin ports. On by default; off only to
    /// measure what they cost.
    pub metrics: bool,
    /// How long a drain waits for open connections before giving up.
    pub drain_timeout: Duration,
    /// Runtime for the admin listener (default: the runtime `start` runs on).
    pub admin_runtime: Option<tokio::runtime::Handle>,
    /// This workload's mesh identity: its certificate (rotated in place through
    /// [`MeshTls::rotate`](skiff_identity::MeshTls::rotate)) and the trust bundle. With
    /// it, the proxy speaks mutual TLS to peer proxies whose endpoints ask for it and
    /// accepts mutual TLS inbound; without it, every hop is plain text, and an inbound
    /// port whose PeerAuthentication is STRICT refuses every connection.
    pub mesh_tls: Option<skiff_identity::MeshTls>,
    /// Where DestinationRule `credentialName`s are read from in local mode: a directory
    /// per name holding `tls.crt`, `tls.key` and `ca.crt`, as a Kubernetes TLS secret.
    pub credentials_dir: Option<std::path::PathBuf>,
    /// What bounds the resources a downstream can take (head size, header count, head
    /// timeout, open connections, abandoned HTTP/2 requests).
    pub limits: crate::Limits,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            id: String::new(),
            address: None,
            outbound_port: 15001,
            inbound_port: 15006,
            admin_port: 15000,
            agent_ports: vec![15020, 15021, 15090],
            gateway_port_offset: 0,
            access_log: AccessLogTarget::Stdout,
            access_log_format: crate::AccessLogFormat::Skiff,
            metrics: true,
            drain_timeout: Duration::from_secs(5),
            admin_runtime: None,
            mesh_tls: None,
            credentials_dir: None,
            limits: crate::Limits::default(),
        }
    }
}

/// What the whole data path shares, read-mostly.
#[derive(Debug)]
pub(crate) struct ProxyInputs {
    snapshot: ArcSwapOption<Snapshot>,
    pub(crate) endpoints: EndpointRegistry,
    pub(crate) access_log: Arc<AccessLog>,
    /// Recent failed requests, for `skiff explain` (`GET /failures`).
    pub(crate) failures: crate::failures::Failures,
    /// Istio's standard metrics, when on.
    pub(crate) metrics: Option<Arc<crate::metrics::Metrics>>,
    pub(crate) http_server: auto::Builder<TokioExecutor>,
    /// This workload's mesh identity, if it has one.
    pub(crate) mesh: Option<skiff_identity::MeshTls>,
    /// The keys of every `jwksUri`, shared by all snapshots.
    pub(crate) jwks: crate::authn::JwksCache,
    /// Bumped on every accepted config, for what re-checks open connections.
    changes: tokio::sync::watch::Sender<u64>,
    /// What bounds a downstream.
    pub(crate) limits: crate::Limits,
    /// Downstream connections open now, over all listeners.
    pub(crate) connections: crate::limits::ConnectionCount,
    /// When the proxy started.
    pub(crate) started: std::time::Instant,
    /// Trace spans and context propagation.
    pub(crate) tracing: crate::trace::Tracing,
    /// With on-demand discovery: what asks the control plane for a service the
    /// proxy has no config for.
    pub(crate) on_demand: std::sync::OnceLock<skiff_xds::Subscriber>,
    /// The names asked for on demand, and when first: a name asked for longer than
    /// the wait ago brought nothing, and requests to it no longer wait (the control
    /// plane keeps the subscription and sends the service if it appears).
    pub(crate) asked: Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl ProxyInputs {
    pub(crate) fn new(
        access_log: Arc<AccessLog>,
        http_server: auto::Builder<TokioExecutor>,
        mesh: Option<skiff_identity::MeshTls>,
        limits: crate::Limits,
    ) -> Arc<ProxyInputs> {
        Arc::new(ProxyInputs {
            snapshot: ArcSwapOption::empty(),
            endpoints: EndpointRegistry::default(),
            access_log,
            failures: crate::failures::Failures::default(),
            metrics: None,
            http_server,
            mesh,
            jwks: crate::authn::JwksCache::new(),
            changes: tokio::sync::watch::Sender::new(0),
            limits,
            connections: crate::limits::ConnectionCount::default(),
            started: std::time::Instant::now(),
            tracing: crate::trace::Tracing::default(),
            on_demand: std::sync::OnceLock::new(),
            asked: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Tells of every config swapped in after this call.
    pub(crate) fn config_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The snapshot new requests use.
    pub(crate) fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.load_full()
    }
}

/// A running proxy. Cheap to clone; every clone is the same proxy.
#[derive(Debug, Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    inputs: Arc<ProxyInputs>,
    /// What `/stats/prometheus` shows.
    registry: prometheus_client::registry::Registry,
    options: ProxyOptions,
    data: tokio::runtime::Handle,
    admin_addr: SocketAddr,
    state: Mutex<State>,
    quit: Notify,
    /// The endpoints named by DNS and what they resolved to.
    dns: Arc<crate::dns::Names>,
}

#[derive(Debug)]
struct State {
    listen_ip: Option<IpAddr>,
    outbound: Option<(SocketAddr, oneshot::Sender<()>)>,
    inbound: Option<(SocketAddr, oneshot::Sender<()>)>,
    gateway: BTreeMap<u16, (SocketAddr, oneshot::Sender<()>)>,
    rejected: Option<(String, String)>,
    drain_watch: Option<DrainWatch>,
    drain_trigger: Option<DrainTrigger>,
    /// The config in service as it came, when it has endpoints named by DNS: applied
    /// again when what a name resolves to changes.
    dns_config: Option<(String, ProxyConfig)>,
}

impl Proxy {
    /// Starts a proxy without config: the admin listener answers at once (not ready);
    /// the data listeners open with the first accepted config. Data-path tasks run on
    /// the runtime this is called on.
    pub async fn start(options: ProxyOptions) -> Result<Proxy, Error> {
        let limits = &options.limits;
        let mut http_server = auto::Builder::new(TokioExecutor::new());
        let mut h1 = http_server.http1();
        h1.timer(TokioTimer::new())
            // The head timeout arms a timer per request head (hyper allocates it), a
            // cost Envoy avoids by having none; without it a slow client holds a
            // connection and its buffer forever.
            .header_read_timeout(limits.request_head_timeout)
            // The read buffer's bound is the head's: a head that fills it is a 431.
            // (Bodies stream through it in pieces, so it bounds them not.)
            .max_buf_size(limits.max_request_headers_bytes.max(8192))
            .keep_alive(true)
            // One flat buffer per write: a plain send(2), cheaper in the kernel than
            // writev(2) for the small messages a proxy mostly carries.
            .writev(false);
        if limits.max_request_headers != crate::limits::DEFAULT_MAX_REQUEST_HEADERS {
            // hyper keeps 100 header slots on the stack; another count puts them on
            // the heap for every request, so it is only set when asked for.
            h1.max_headers(limits.max_request_headers);
        }
        http_server
            .http2()
            .timer(TokioTimer::new())
            .adaptive_window(true)
            .max_header_list_size(
                u32::try_from(limits.max_request_headers_bytes).unwrap_or(u32::MAX),
            )
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_pending_accept_reset_streams(limits.max_pending_accept_reset_streams)
            .max_local_error_reset_streams(limits.max_local_error_reset_streams);
        let mut registry = prometheus_client::registry::Registry::default();
        let mut inputs = ProxyInputs::new(
            AccessLog::with_format(options.access_log.clone(), options.access_log_format),
            http_server,
            options.mesh_tls.clone(),
            options.limits.clone(),
        );
        if options.metrics {
            let metrics = crate::metrics::Metrics::register(&mut registry);
            Arc::get_mut(&mut inputs).expect("not shared yet").metrics = Some(metrics);
        }
        inputs.tracing.stats.register(&mut registry);
        if let Some(max) = options.limits.max_memory_bytes {
            tokio::spawn(watch_memory(Arc::downgrade(&inputs), max));
        }
        let admin_ip = options.address.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let admin = bind(SocketAddr::new(admin_ip, options.admin_port))?;
        let admin_addr = admin.local_addr().map_err(Error::Io)?;
        let (trigger, watch) = drain::channel();
        let proxy = Proxy {
            shared: Arc::new(Shared {
                inputs,
                registry,
                data: tokio::runtime::Handle::current(),
                admin_addr,
                state: Mutex::new(State {
                    listen_ip: None,
                    outbound: None,
                    inbound: None,
                    gateway: BTreeMap::new(),
                    rejected: None,
                    drain_watch: Some(watch),
                    drain_trigger: Some(trigger),
                    dns_config: None,
                }),
                quit: Notify::new(),
                dns: Arc::default(),
                options,
            }),
        };
        let admin_rt = proxy
            .shared
            .options
            .admin_runtime
            .clone()
            .unwrap_or_else(tokio::runtime::Handle::current);
        let mut listeners = vec![admin];
        for &port in &proxy.shared.options.agent_ports {
            match bind(SocketAddr::new(admin_ip, port)) {
                Ok(l) => listeners.push(l),
                Err(e) => tracing::warn!(error = %e, "admin endpoints not served on this port"),
            }
        }
        for listener in listeners {
            let p = proxy.clone();
            admin_rt.spawn(async move {
                match TcpListener::from_std(listener) {
                    Ok(l) => crate::admin::serve(l, p).await,
                    Err(e) => tracing::error!(error = %e, "admin listener failed"),
                }
            });
        }
        tracing::info!(id = %proxy.shared.options.id, admin = %admin_addr, "proxy started; waiting for config");
        Ok(proxy)
    }

    /// Turns on on-demand discovery: an outbound request whose authority no virtual
    /// host takes first asks the control plane for it through `subscriber` and waits
    /// (up to 5 s) for the config that brings it. Once per proxy.
    pub fn set_on_demand(&self, subscriber: skiff_xds::Subscriber) {
        let _ = self.shared.inputs.on_demand.set(subscriber);
    }

    /// Validates, compiles and swaps in a config. On error nothing changes and the
    /// error is the reason to send back (NACK). This is the one update path for the
    /// xDS client and the file source.
    pub fn apply(&self, version: impl Into<String>, config: ProxyConfig) -> Result<(), Error> {
        let version = version.into();
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let result = self.apply_locked(&mut state, version.clone(), config);
        match &result {
            Ok(()) => state.rejected = None,
            Err(e) => {
                tracing::warn!(version, reason = %e, "config rejected; keeping the previous one");
                state.rejected = Some((version, e.to_string()));
            }
        }
        result
    }

    fn apply_locked(
        &self,
        state: &mut State,
        version: String,
        config: ProxyConfig,
    ) -> Result<(), Error> {
        let opts = &self.shared.options;
        let inputs = &self.shared.inputs;
        if state.drain_watch.is_none() {
            return Err(Error::config("proxy", "draining; no more updates"));
        }
        if !opts.id.is_empty() && !config.node.id.is_empty() && config.node.id != opts.id {
            tracing::warn!(ours = %opts.id, config = %config.node.id, "config is for another proxy id");
        }
        let wanted_ip = opts
            .address
            .or(config.node.address)
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let ip = *state.listen_ip.get_or_insert(wanted_ip);
        if ip != wanted_ip {
            tracing::warn!(%ip, %wanted_ip, "node address changed; listeners stay where they are");
        }
        let sidecar = config.node.kind == ProxyKind::Sidecar;
        // Endpoints named by DNS: the addresses found so far (the config as it came is
        // kept, to be applied again when they change).
        let (config, as_given, new_name) = match self.shared.dns.expand(&config) {
            Some((expanded, new)) => (expanded, Some((version.clone(), config)), new),
            None => (config, None, false),
        };
        let build = crate::config::BuildInputs {
            registry: &inputs.endpoints,
            mesh: opts.mesh_tls.as_ref(),
            keys: &inputs.jwks,
            credentials: opts.credentials_dir.as_deref(),
        };
        inputs
            .access_log
            .set_telemetry(&config.telemetry, config.mesh_access_log.as_ref());
        inputs.tracing.set(&config.telemetry, &config.node);
        if let Some(m) = &inputs.metrics {
            m.set_node(&config.node);
            m.set_telemetry(&config.telemetry);
            inputs.endpoints.set_exchange(m.exchange());
        }
        let snapshot = Snapshot::build(version, config, ip, &build)?;

        // Open what is new before swapping, so a port in use rejects the update.
        let mut opened: Vec<(Role, std::net::TcpListener)> = Vec::new();
        if sidecar && state.outbound.is_none() {
            opened.push((
                Role::Outbound,
                bind(SocketAddr::new(ip, opts.outbound_port))?,
            ));
            opened.push((Role::Inbound, bind(SocketAddr::new(ip, opts.inbound_port))?));
        }
        let wanted: Vec<u16> = snapshot.served_gateway_ports().collect();
        for &port in &wanted {
            if !state.gateway.contains_key(&port) {
                let at = port.checked_add(opts.gateway_port_offset).ok_or_else(|| {
                    Error::config(
                        format!("gateway port {port}"),
                        format!(
                            "port plus offset {} is above 65535",
                            opts.gateway_port_offset
                        ),
                    )
                })?;
                opened.push((Role::Gateway(port), bind(SocketAddr::new(ip, at))?));
            }
        }

        let previous = inputs.snapshot.swap(Some(Arc::new(snapshot)));
        state.dns_config = as_given;
        if state.dns_config.is_some() {
            self.start_resolver();
            if new_name {
                self.shared.dns.wake.notify_one();
            }
        }
        inputs.changes.send_modify(|n| *n += 1);
        let current = inputs.current();
        if let Some(s) = &current {
            let old_warnings = previous.as_ref().map(|p| p.warnings());
            if old_warnings != Some(s.warnings()) {
                for w in s.warnings() {
                    tracing::warn!(version = s.version(), "{w}");
                }
            }
            tracing::info!(version = s.version(), "config applied");
        }
        drop(previous);
        inputs.endpoints.prune();

        let gone: Vec<u16> = state
            .gateway
            .keys()
            .filter(|p| !wanted.contains(p))
            .copied()
            .collect();
        for port in gone {
            if let Some((addr, stop)) = state.gateway.remove(&port) {
                tracing::info!(port, %addr, "gateway port closed");
                let _ = stop.send(());
            }
        }
        let Some(drain) = state.drain_watch.clone() else {
            return Ok(()); // draining: no new listeners
        };
        for (role, listener) in opened {
            let addr = listener.local_addr().map_err(Error::Io)?;
            let (stop_tx, stop_rx) = oneshot::channel();
            match role {
                Role::Outbound => state.outbound = Some((addr, stop_tx)),
                Role::Inbound => state.inbound = Some((addr, stop_tx)),
                Role::Gateway(port) => {
                    state.gateway.insert(port, (addr, stop_tx));
                }
            }
            tracing::info!(?role, %addr, "listening");
            let inputs = inputs.clone();
            let drain = drain.clone();
            let _enter = self.shared.data.enter();
            let listener = TcpListener::from_std(listener).map_err(Error::Io)?;
            self.shared
                .data
                .spawn(accept_loop(listener, role, inputs, drain, stop_rx));
        }
        Ok(())
    }

    /// Resolves the config's DNS names on a task of its own, until the proxy is gone.
    fn start_resolver(&self) {
        if !self.shared.dns.start() {
            return;
        }
        let weak = Arc::downgrade(&self.shared);
        let names = self.shared.dns.clone();
        self.shared.data.spawn(async move {
            loop {
                if weak.strong_count() == 0 {
                    return;
                }
                if names.resolve_all().await {
                    let Some(shared) = weak.upgrade() else {
                        return;
                    };
                    Proxy { shared }.reapply_dns();
                }
                let wait = names.next_round();
                tokio::select! {
                    () = names.wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
        });
    }

    /// Applies the config in service again with what its DNS names resolve to now.
    fn reapply_dns(&self) {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some((version, config)) = state.dns_config.clone() else {
            return;
        };
        match self.apply_locked(&mut state, version.clone(), config) {
            Ok(()) => tracing::info!(version, "DNS answers changed; endpoints updated"),
            Err(e) => {
                tracing::warn!(version, reason = %e, "DNS answers changed but the config could not be applied again")
            }
        }
    }

    /// The snapshot in service, if any config was accepted.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.shared.inputs.current()
    }

    /// Ready once a config was accepted.
    pub fn is_ready(&self) -> bool {
        self.shared.inputs.current().is_some()
    }

    /// The workload's mesh identity, if it was started with one (for `/certs`).
    pub fn mesh_tls(&self) -> Option<&skiff_identity::MeshTls> {
        self.shared.options.mesh_tls.as_ref()
    }

    /// The last rejected update (version, reason), until an update is accepted.
    pub fn last_rejected(&self) -> Option<(String, String)> {
        self.lock().rejected.clone()
    }

    /// The proxy's id, `<name>.<namespace>`.
    pub fn id(&self) -> &str {
        &self.shared.options.id
    }

    /// The recent failed requests, oldest first (`GET /failures`).
    pub(crate) fn recent_failures(&self) -> Vec<crate::failures::Failure> {
        self.shared.inputs.failures.list()
    }

    /// Where the admin listener is.
    pub fn admin_addr(&self) -> SocketAddr {
        self.shared.admin_addr
    }

    /// The metrics in the Prometheus text format (version 0.0.4), as
    /// `/stats/prometheus` serves them.
    pub fn prometheus_text(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.shared.registry)
        {
            tracing::warn!(error = %e, "metrics could not be encoded");
        }
        out
    }

    /// Where the outbound listener is (after the first config).
    pub fn outbound_addr(&self) -> Option<SocketAddr> {
        self.lock().outbound.as_ref().map(|(a, _)| *a)
    }

    /// Where the inbound listener is (after the first config).
    pub fn inbound_addr(&self) -> Option<SocketAddr> {
        self.lock().inbound.as_ref().map(|(a, _)| *a)
    }

    /// Where a gateway port (as written in the Gateway) is served.
    pub fn gateway_addr(&self, port: u16) -> Option<SocketAddr> {
        self.lock().gateway.get(&port).map(|(a, _)| *a)
    }

    /// Every open gateway listener: the port as written in the Gateway, and the address
    /// it is served on.
    pub fn gateway_addrs(&self) -> Vec<(u16, SocketAddr)> {
        self.lock()
            .gateway
            .iter()
            .map(|(p, (a, _))| (*p, *a))
            .collect()
    }

    /// Asks the owner of the proxy to drain and stop (what `/quitquitquit` does).
    pub fn request_shutdown(&self) {
        self.shared.quit.notify_one();
    }

    /// Resolves when someone called [`Proxy::request_shutdown`].
    pub async fn shutdown_requested(&self) {
        self.shared.quit.notified().await;
    }

    /// Drains: listeners stop accepting, connections finish their requests and close.
    /// Returns whether all connections closed within the drain timeout.
    pub async fn drain(&self) -> bool {
        let trigger = {
            let mut state = self.lock();
            state.drain_watch = None;
            state.gateway.clear();
            state.outbound = None;
            state.inbound = None;
            state.drain_trigger.take()
        };
        let Some(trigger) = trigger else { return true };
        tracing::info!(timeout = ?self.shared.options.drain_timeout, "draining");
        let done = trigger.drain(self.shared.options.drain_timeout).await;
        if !done {
            tracing::warn!("drain deadline passed with connections still open");
        }
        self.shared.inputs.access_log.flush();
        done
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Binds a listening socket with address reuse, so a restarted proxy does not wait
/// for old connections in TIME_WAIT.
fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, Error> {
    let err = |source| Error::Bind { addr, source };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(1024).map_err(err)?;
    Ok(socket.into())
}

/// The memory half of the overload manager: once a second, the process's resident
/// memory against `max`; over it, listeners refuse new connections. Ends with the proxy.
async fn watch_memory(inputs: std::sync::Weak<ProxyInputs>, max: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inputs) = inputs.upgrade() else {
            return;
        };
        let Some(rss) = crate::limits::resident_memory() else {
            tracing::warn!("cannot read the resident memory: the memory threshold is not applied");
            return;
        };
        if inputs.connections.memory_reading(rss, max) {
            if inputs.connections.over_memory() {
                tracing::warn!(
                    rss,
                    max,
                    "refusing new connections: resident memory is over the threshold"
                );
            } else {
                tracing::info!(
                    rss,
                    max,
                    "taking new connections again: resident memory is below the threshold"
                );
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    role: Role,
    inputs: Arc<ProxyInputs>,
    mut drain: DrainWatch,
    mut stop: oneshot::Receiver<()>,
) {
    let local = listener
        .local_addr()
        .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(?role, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = drain.signaled() => break,
            _ = &mut stop => break,
        };
        let Some(slot) = inputs
            .connections
            .try_open(inputs.limits.max_downstream_connections)
        else {
            // Overloaded: closed at once, before it costs a task or a buffer.
            drop(stream);
            let secs = inputs.started.elapsed().as_secs();
            if inputs.connections.should_warn(secs) {
                if inputs.connections.over_memory() {
                    tracing::warn!(
                        ?role,
                        %peer,
                        "refusing connections: resident memory is over the threshold"
                    );
                } else {
                    tracing::warn!(
                        ?role,
                        %peer,
                        open = inputs.connections.open(),
                        max = inputs.limits.max_downstream_connections,
                        "refusing connections: the downstream connection limit is reached"
                    );
                }
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(local);
        let conn = Conn::accepted(inputs.clone(), role, peer, local, drain.clone());
        let span = tracing::debug_span!("downstream", role = role.as_str(), %peer);
        tokio::spawn(
            async move {
                let _slot = slot;
                match role {
                    Role::Outbound => crate::outbound::serve(conn, stream).await,
                    Role::Inbound => crate::inbound::serve(conn, stream).await,
                    Role::Gateway(port) => crate::gateway::serve(conn, stream, port).await,
                }
            }
            .instrument(span),
        );
    }
    tracing::debug!(?role, "listener closed");
}
