//! Upstreams: clusters and their load balancers (per snapshot), and the endpoint state
//! that outlives snapshots: connection pools and in-flight counts, keyed by endpoint.
//!
//! A snapshot's cluster holds `Arc<EndpointState>`s taken from the [`EndpointRegistry`]
//! when the snapshot is built, so a request reaches its pool without a map lookup, and a
//! config update that keeps an endpoint keeps its warm connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::Error;
use crate::forward::ReqBody;
use crate::transport::{self, Io, UpstreamTls};
use futures_util::FutureExt;
use futures_util::future::Either;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rand::Rng;
use skiff_model::config::{Cluster, Protocol};

mod breaker;
mod h2;
mod hash;
mod lb;
mod outlier;
mod tiers;

pub(crate) use breaker::{Breaker, Overflow, Slot};
pub(crate) use h2::H2Stream;
pub(crate) use outlier::Outcome;

/// How the proxy talks HTTP to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum UpstreamProto {
    /// HTTP/1.1 with a pool of keep-alive connections.
    Http1,
    /// HTTP/2: one multiplexed connection (more under `connectionPool` limits).
    Http2,
    /// `useClientProtocol`: HTTP/2 for a request that came in HTTP/2, else HTTP/1.1.
    Client,
    /// Opaque bytes: no HTTP pool.
    Opaque,
}

impl UpstreamProto {
    pub(crate) fn for_protocol(p: Protocol) -> UpstreamProto {
        match p {
            Protocol::Http | Protocol::Unspecified => UpstreamProto::Http1,
            Protocol::Http2 | Protocol::Grpc => UpstreamProto::Http2,
            Protocol::Tcp | Protocol::Tls | Protocol::Https => UpstreamProto::Opaque,
        }
    }
}

/// What identifies an endpoint's connections: where they go and who must answer, so a
/// connection made for one identity is never lent to a request for another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct EndpointKey {
    /// The address dialled: the app itself, or the peer proxy's inbound listener.
    pub(crate) dial: SocketAddr,
    /// With a peer proxy: the app port named in the transport header.
    pub(crate) target_port: Option<u16>,
    pub(crate) proto: UpstreamProto,
    /// The SPIFFE id the peer must prove (mesh mutual TLS), `None` for plain text.
    pub(crate) identity: Option<Arc<str>>,
    /// The cluster, when it has `connectionPool` limits: its connections are its own
    /// (as Envoy's pools are per cluster), so they count against its limits only.
    pub(crate) pool: Option<Arc<str>>,
}

/// Endpoint state shared by every snapshot that contains the endpoint.
#[derive(Default, Debug)]
pub(crate) struct EndpointRegistry {
    map: Mutex<HashMap<EndpointKey, Weak<EndpointState>>>,
    /// Per-cluster circuit breakers and outlier detectors, by cluster name.
    clusters: Mutex<HashMap<Arc<str>, ClusterShared>>,
    /// What this proxy tells peer proxies of itself in the transport header (see
    /// [`crate::metrics::Workload::encode_exchange`]), shared by every endpoint.
    exchange: Arc<arc_swap::ArcSwap<bytes::Bytes>>,
}

/// What one cluster keeps across snapshots.
#[derive(Default, Debug)]
struct ClusterShared {
    breaker: Weak<Breaker>,
    outlier: Weak<outlier::Detector>,
}

impl EndpointRegistry {
    /// The live state for `key`, or a fresh one. `app` is the workload's own address;
    /// `tls` how to reach it (it follows from the key's identity).
    pub(crate) fn get(
        &self,
        key: EndpointKey,
        app: SocketAddr,
        source: Option<std::net::IpAddr>,
        breaker: Option<&Arc<Breaker>>,
        tls: impl FnOnce() -> UpstreamTls,
    ) -> Arc<EndpointState> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = map.get(&key).and_then(Weak::upgrade) {
            return live;
        }
        let source = source.filter(|s| {
            !s.is_unspecified()
                && s.is_ipv4() == key.dial.is_ipv4()
                && s.is_loopback() == key.dial.ip().is_loopback()
        });
        let mut state = EndpointState::new(key.clone(), app, source, tls());
        state.breaker = breaker.cloned();
        state.exchange = self.exchange.clone();
        let state = Arc::new(state);
        map.insert(key, Arc::downgrade(&state));
        state
    }

    /// Sets what the transport header tells peer proxies of this one.
    pub(crate) fn set_exchange(&self, ext: bytes::Bytes) {
        self.exchange.store(Arc::new(ext));
    }

    /// Forgets endpoints no snapshot holds any more (their pools are already gone).
    pub(crate) fn prune(&self) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        drop(map);
        let mut clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        clusters.retain(|_, c| c.breaker.strong_count() > 0 || c.outlier.strong_count() > 0);
    }

    /// The circuit breaker of cluster `c` with its new limits, when it has
    /// `connectionPool` limits.
    pub(crate) fn breaker(&self, c: &Cluster) -> Option<Arc<Breaker>> {
        let pool = c.traffic.connection_pool.as_ref()?;
        let mut clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        let shared = clusters.entry(c.name.as_str().into()).or_default();
        if let Some(b) = shared.breaker.upgrade() {
            b.set_limits(pool);
            return Some(b);
        }
        let b = Arc::new(Breaker::new(pool));
        shared.breaker = Arc::downgrade(&b);
        Some(b)
    }

    /// The outlier detector of cluster `c` with its new settings, when it has
    /// `outlierDetection`.
    fn detector(&self, c: &Cluster) -> Option<Arc<outlier::Detector>> {
        let od = c.traffic.outlier_detection.as_ref()?;
        let mut clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        let shared = clusters.entry(c.name.as_str().into()).or_default();
        if let Some(d) = shared.outlier.upgrade() {
            d.configure(od);
            d.ensure_sweep();
            return Some(d);
        }
        let d = outlier::Detector::start(&c.name, od);
        shared.outlier = Arc::downgrade(&d);
        Some(d)
    }
}

/// Idle HTTP/1.1 connections kept per endpoint.
const MAX_IDLE: usize = 256;

/// One endpoint: its pool and load.
pub(crate) struct EndpointState {
    pub(crate) key: EndpointKey,
    /// `ip:port` of the workload, as the access log shows it.
    pub(crate) display: Box<str>,
    /// The workload's address (where its app listens).
    app: SocketAddr,
    /// Plain text or mesh mutual TLS.
    pub(crate) tls: UpstreamTls,
    /// The local address connections leave from: the workload's own, so the peer sees
    /// (and `source.ip` / `ipBlocks` match) the caller's address, not the host's.
    pub(crate) source: Option<std::net::IpAddr>,
    /// The cluster's `connectionPool` limits, when it has them (then this endpoint's
    /// pool is the cluster's own: see [`EndpointKey::pool`]).
    pub(crate) breaker: Option<Arc<Breaker>>,
    /// The workload behind it, as the `destination_*` labels of the metrics name it;
    /// set by the first snapshot that has the endpoint.
    pub(crate) workload: std::sync::OnceLock<Arc<crate::metrics::Workload>>,
    /// The proxy's transport-header extensions (the registry's).
    pub(crate) exchange: Arc<arc_swap::ArcSwap<bytes::Bytes>>,
    /// When the proxy first had this endpoint (slow start counts from here).
    joined: tokio::time::Instant,
    active: AtomicUsize,
    /// HTTP/1.1 connections open (or opening) under `connectionPool` limits.
    h1_open: AtomicUsize,
    idle: Mutex<Vec<Idle>>,
    /// A task closes idle HTTP/1.1 connections past `idleTimeout` (one at a time).
    sweeping: std::sync::atomic::AtomicBool,
    h2: Mutex<Option<http2::SendRequest<ReqBody>>>,
    h2_connect: tokio::sync::Mutex<()>,
    /// HTTP/2 connections under `connectionPool` limits (then `h2` is unused).
    h2_pool: h2::H2Pool,
}

impl std::fmt::Debug for EndpointState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointState")
            .field("key", &self.key)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl EndpointState {
    fn new(
        key: EndpointKey,
        app: SocketAddr,
        source: Option<std::net::IpAddr>,
        tls: UpstreamTls,
    ) -> Self {
        EndpointState {
            key,
            display: app.to_string().into(),
            app,
            tls,
            source,
            breaker: None,
            workload: std::sync::OnceLock::new(),
            exchange: Arc::default(),
            joined: tokio::time::Instant::now(),
            active: AtomicUsize::new(0),
            h1_open: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
            sweeping: std::sync::atomic::AtomicBool::new(false),
            h2: Mutex::new(None),
            h2_connect: tokio::sync::Mutex::new(()),
            h2_pool: h2::H2Pool::default(),
        }
    }

    /// Connections to it are mesh mutual TLS.
    pub(crate) fn is_mesh_tls(&self) -> bool {
        matches!(self.tls, UpstreamTls::Mesh { .. })
    }

    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Opens a connection ([`transport::dial`]): TCP, TLS when the endpoint asks for
    /// it, and the transport header when it is behind a peer proxy.
    pub(crate) async fn connect(&self, timeout: Duration) -> Result<Io, Error> {
        transport::dial(self, timeout).await
    }

    /// Sends a request on a pooled connection (or a new one). The returned [`Pooled`]
    /// must be released when the response body is done, so the connection goes back
    /// to the pool (HTTP/1.1) or its stream is counted as ended (HTTP/2 under limits).
    /// A failure before the request left (connect error, a connection that closed
    /// first) gives the request back, so it can be retried even with a body.
    pub(crate) fn send(
        self: &Arc<Self>,
        req: Request<ReqBody>,
        connect_timeout: Duration,
    ) -> impl Future<Output = Result<(Response<Incoming>, Option<Pooled>), SendError>> + use<> {
        // A plain function (an `async fn` would store the request twice), and owning
        // its endpoint, so the future borrows nothing.
        let this = self.clone();
        let h2 = match self.key.proto {
            UpstreamProto::Http2 => true,
            // The request is already in the upstream's form: its version says which.
            UpstreamProto::Client => req.version() == http::Version::HTTP_2,
            _ => false,
        };
        match (h2, &self.breaker) {
            (true, None) => Either::Left(Either::Left(
                this.send_h2(req, connect_timeout)
                    .map(|r| r.map(|resp| (resp, None))),
            )),
            (true, Some(b)) => {
                let b = b.clone();
                Either::Left(Either::Right(Box::pin(this.send_h2_limited(
                    b,
                    req,
                    connect_timeout,
                ))))
            }
            (false, _) => Either::Right(
                this.send_h1(req, connect_timeout)
                    .map(|r| r.map(|(resp, p)| (resp, p.map(Pooled::H1)))),
            ),
        }
    }

    async fn send_h1(
        self: Arc<Self>,
        mut req: Request<ReqBody>,
        connect_timeout: Duration,
    ) -> Result<(Response<Incoming>, Option<PooledH1>), SendError> {
        // An idle connection the server closed meanwhile hands the request back unsent;
        // then the next one (or a new one) takes it.
        while let Some(mut idle) = self.checkout_idle() {
            match idle.sr.try_send_request(req).await {
                Ok(resp) => return Ok((resp, Some(PooledH1::new(idle, self.clone())))),
                Err(mut e) => match e.take_message() {
                    Some(r) => req = r,
                    None => return Err(self.failed(self.reset(e.into_error()), None)),
                },
            }
        }
        // A new connection is the cold path: boxed, so the common case (a pooled
        // connection) keeps a small future that is cheap to move.
        Box::pin(self.send_h1_new(req, connect_timeout)).await
    }

    async fn send_h1_new(
        self: &Arc<Self>,
        mut req: Request<ReqBody>,
        connect_timeout: Duration,
    ) -> Result<(Response<Incoming>, Option<PooledH1>), SendError> {
        // Under `connectionPool` limits: a connection slot, or wait as pending for a
        // connection to come free (refused at once over `http1MaxPendingRequests`).
        let mut pending = None;
        let slot = loop {
            let Some(b) = &self.breaker else {
                break None;
            };
            let notified = b.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if pending.is_some() {
                while let Some(mut idle) = self.checkout_idle() {
                    match idle.sr.try_send_request(req).await {
                        Ok(resp) => return Ok((resp, Some(PooledH1::new(idle, self.clone())))),
                        Err(mut e) => match e.take_message() {
                            Some(r) => req = r,
                            None => return Err(self.failed(self.reset(e.into_error()), None)),
                        },
                    }
                }
            }
            if let Ok(slot) = b.connection() {
                self.h1_open.fetch_add(1, Ordering::AcqRel);
                break Some(H1Place {
                    _slot: slot,
                    endpoint: Arc::downgrade(self),
                });
            }
            // Envoy gives an endpoint it picked at least one connection, whatever the
            // limit (else idle connections to others could starve it for good).
            if self
                .h1_open
                .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                break Some(H1Place {
                    _slot: b.connection_anyway(),
                    endpoint: Arc::downgrade(self),
                });
            }
            if pending.is_none() {
                match b.pending() {
                    Ok(p) => pending = Some(p),
                    Err(o) => return Err(self.failed(self.overflow(o), Some(req))),
                }
            }
            notified.await;
        };
        drop(pending);
        let io = match self.connect(connect_timeout).await {
            Ok(io) => io,
            Err(error) => return Err(self.failed(error, Some(req))),
        };
        let (sr, conn) = match http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(io))
            .await
        {
            Ok(c) => c,
            Err(e) => return Err(self.failed(self.reset(e), Some(req))),
        };
        let addr = self.key.dial;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(upstream = %addr, error = %e, "upstream connection ended");
            }
            // The connection is gone: its slot frees one for a pending request.
            drop(slot);
        });
        let mut idle = Idle {
            sr,
            uses: 0,
            born: self.breaker.as_ref().map(|_| tokio::time::Instant::now()),
            since: None,
        };
        match idle.sr.try_send_request(req).await {
            Ok(resp) => Ok((resp, Some(PooledH1::new(idle, self.clone())))),
            Err(mut e) => {
                let unsent = e.take_message();
                Err(self.failed(self.reset(e.into_error()), unsent))
            }
        }
    }

    fn checkout_idle(&self) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(c) = idle.pop() {
            if c.sr.is_ready() && !self.expired(&c, true) {
                return Some(c);
            }
        }
        None
    }

    /// Under `connectionPool` limits: the connection served `maxRequestsPerConnection`,
    /// is older than `maxConnectionDuration`, or (`idle`) idled past `idleTimeout`.
    fn expired(&self, c: &Idle, idle: bool) -> bool {
        let Some(b) = &self.breaker else {
            return false;
        };
        let max_uses = b.max_requests_per_connection();
        if max_uses > 0 && c.uses as usize >= max_uses {
            return true;
        }
        let now = tokio::time::Instant::now();
        let past = |at: Option<tokio::time::Instant>, limit: Option<Duration>| matches!((at, limit), (Some(at), Some(limit)) if now.saturating_duration_since(at) >= limit);
        past(c.born, b.max_connection_duration()) || (idle && past(c.since, b.idle_timeout()))
    }

    fn put_idle(self: &Arc<Self>, mut c: Idle) {
        if self.breaker.is_some() {
            if self.expired(&c, false) {
                // Dropped: the connection closes, and its slot frees another.
                return;
            }
            c.since = Some(tokio::time::Instant::now());
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
        drop(idle);
        if let Some(b) = &self.breaker {
            b.freed();
            if let Some(timeout) = b.idle_timeout() {
                self.sweep_later(timeout);
            }
        }
    }

    /// Closes the idle HTTP/1.1 connections past `idleTimeout` when they pass it, as
    /// Envoy's idle timer does, rather than when the pool is next used. One task per
    /// endpoint, while it has idle connections; it holds the endpoint weakly.
    fn sweep_later(self: &Arc<Self>, first: Duration) {
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.sweeping.store(false, Ordering::Release);
            return;
        };
        let endpoint = Arc::downgrade(self);
        rt.spawn(async move {
            let mut wait = first;
            loop {
                tokio::time::sleep(wait).await;
                let Some(ep) = endpoint.upgrade() else {
                    return;
                };
                match ep.sweep() {
                    Some(next) => wait = next,
                    None => return,
                }
            }
        });
    }

    /// Drops the idle connections past `idleTimeout` (or otherwise spent); returns
    /// how long until the next one is due, or `None` (and stops sweeping) when none
    /// is left to watch.
    fn sweep(&self) -> Option<Duration> {
        let timeout = self.breaker.as_ref().and_then(|b| b.idle_timeout());
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let before = idle.len();
        idle.retain(|c| !c.sr.is_closed() && !self.expired(c, true));
        if idle.len() < before {
            tracing::debug!(upstream = %self.display, closed = before - idle.len(), "idle connections closed");
        }
        let now = tokio::time::Instant::now();
        let next = timeout.and_then(|t| {
            idle.iter()
                .filter_map(|c| c.since)
                .map(|since| (since + t).saturating_duration_since(now))
                .min()
        });
        if next.is_none() {
            // Under the lock: a connection put back from now on starts a new sweep.
            self.sweeping.store(false, Ordering::Release);
        }
        next.map(|d| d.max(Duration::from_millis(1)))
    }

    fn overflow(&self, o: Overflow) -> Error {
        Error::Overflow {
            cluster: self.key.pool.as_deref().unwrap_or("").to_owned(),
            limit: o.field(),
        }
    }

    async fn send_h2(
        self: Arc<Self>,
        req: Request<ReqBody>,
        connect_timeout: Duration,
    ) -> Result<Response<Incoming>, SendError> {
        let mut sr = match self.h2_current() {
            Some(sr) => sr,
            None => match Box::pin(self.connect_h2(connect_timeout)).await {
                Ok(sr) => sr,
                Err(error) => return Err(self.failed(error, Some(req))),
            },
        };
        let req = match sr.try_send_request(req).await {
            Ok(resp) => return Ok(resp),
            Err(mut e) => match e.take_message() {
                // The connection went away before the request was sent: one new try.
                Some(req) => {
                    self.forget_h2();
                    req
                }
                None => return Err(self.failed(self.reset(e.into_error()), None)),
            },
        };
        let mut sr = match Box::pin(self.connect_h2(connect_timeout)).await {
            Ok(sr) => sr,
            Err(error) => return Err(self.failed(error, Some(req))),
        };
        match sr.try_send_request(req).await {
            Ok(resp) => Ok(resp),
            Err(mut e) => {
                let unsent = e.take_message();
                Err(self.failed(self.reset(e.into_error()), unsent))
            }
        }
    }

    /// [`Self::send_h2`] under `connectionPool` limits (see `upstream/h2.rs`).
    async fn send_h2_limited(
        self: Arc<Self>,
        b: Arc<Breaker>,
        mut req: Request<ReqBody>,
        connect_timeout: Duration,
    ) -> Result<(Response<Incoming>, Option<Pooled>), SendError> {
        let mut pending = None;
        // Connections that closed before taking the request: after two, it fails.
        let mut gone = 0;
        loop {
            // `freed` wakes every waiter (`notify_waiters`), which a `Notified` sees
            // from its creation: no registration needed before looking.
            let notified = b.notified();
            if let Some((mut sr, stream)) = self.h2_pool.checkout(&b) {
                drop(pending.take());
                match sr.try_send_request(req).await {
                    Ok(resp) => return Ok((resp, Some(Pooled::H2(stream)))),
                    Err(mut e) => match e.take_message() {
                        Some(r) if gone < 1 => {
                            gone += 1;
                            req = r;
                            continue;
                        }
                        unsent => return Err(self.failed(self.reset(e.into_error()), unsent)),
                    },
                }
            }
            // No room on any connection: open one, one at a time per endpoint.
            if let Ok(dialing) = self.h2_pool.dialing.try_lock() {
                if let Some(slot) = b
                    .connection()
                    .ok()
                    .or_else(|| self.h2_pool.is_empty().then(|| b.connection_anyway()))
                {
                    drop(pending.take());
                    let opened = self.open_h2_limited(slot, &b, connect_timeout).await;
                    drop(dialing);
                    // Waiting requests look again (at the new connection, or dial).
                    b.freed();
                    match opened {
                        Ok(()) => continue,
                        Err(error) => return Err(self.failed(error, Some(req))),
                    }
                }
                drop(dialing);
            }
            if pending.is_none() {
                match b.pending() {
                    Ok(p) => pending = Some(p),
                    Err(o) => return Err(self.failed(self.overflow(o), Some(req))),
                }
            }
            notified.await;
        }
    }

    /// Opens a limited HTTP/2 connection holding `slot` and adds it to the pool.
    async fn open_h2_limited(
        self: &Arc<Self>,
        slot: Slot,
        b: &Arc<Breaker>,
        connect_timeout: Duration,
    ) -> Result<(), Error> {
        let io = self.connect(connect_timeout).await?;
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new()).adaptive_window(true);
        let (sr, conn) = builder
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.reset(e))?;
        h2::spawn_connection(self, sr, conn, slot, b);
        Ok(())
    }

    fn failed(&self, error: Error, unsent: Option<Request<ReqBody>>) -> SendError {
        SendError {
            error,
            unsent: unsent.map(Box::new),
        }
    }

    fn h2_current(&self) -> Option<http2::SendRequest<ReqBody>> {
        let h2 = self.h2.lock().unwrap_or_else(|e| e.into_inner());
        h2.as_ref().filter(|sr| !sr.is_closed()).cloned()
    }

    fn forget_h2(&self) {
        let mut h2 = self.h2.lock().unwrap_or_else(|e| e.into_inner());
        if h2.as_ref().is_some_and(|sr| sr.is_closed()) {
            *h2 = None;
        }
    }

    async fn connect_h2(
        &self,
        connect_timeout: Duration,
    ) -> Result<http2::SendRequest<ReqBody>, Error> {
        let _one_at_a_time = self.h2_connect.lock().await;
        if let Some(sr) = self.h2_current() {
            return Ok(sr);
        }
        let io = self.connect(connect_timeout).await?;
        let (sr, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .adaptive_window(true)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.reset(e))?;
        let addr = self.key.dial;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(upstream = %addr, error = %e, "upstream h2 connection ended");
            }
        });
        *self.h2.lock().unwrap_or_else(|e| e.into_inner()) = Some(sr.clone());
        Ok(sr)
    }

    fn reset(&self, source: hyper::Error) -> Error {
        Error::UpstreamReset {
            addr: self.key.dial,
            source,
        }
    }
}

/// An HTTP/1.1 connection's place under `connectionPool` limits: its slot of
/// `maxConnections` and its count on its endpoint, both given back when it closes.
/// (Weak: the connection's task holds it, and the endpoint holds the connection.)
struct H1Place {
    _slot: Slot,
    endpoint: Weak<EndpointState>,
}

impl Drop for H1Place {
    fn drop(&mut self) {
        // Before the slot (a field, dropped after this) wakes the pending requests.
        if let Some(e) = self.endpoint.upgrade() {
            e.h1_open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A request that failed, with the request itself when it never left.
#[derive(Debug)]
pub(crate) struct SendError {
    pub(crate) error: Error,
    /// Boxed: failures are rare, and a small error keeps every send future small.
    pub(crate) unsent: Option<Box<Request<ReqBody>>>,
}

/// An idle HTTP/1.1 connection, with what `connectionPool` limits look at (the times
/// only under limits).
struct Idle {
    sr: http1::SendRequest<ReqBody>,
    /// Requests it has served.
    uses: u32,
    /// When it was opened.
    born: Option<tokio::time::Instant>,
    /// When it went idle.
    since: Option<tokio::time::Instant>,
}

/// What a response holds of its connection until its body is done.
pub(crate) enum Pooled {
    /// An HTTP/1.1 connection, back to the pool when released.
    H1(PooledH1),
    /// A counted stream on a limited HTTP/2 connection, ended when dropped.
    H2(H2Stream),
}

impl Pooled {
    /// The response was read through: the connection may serve another request.
    pub(crate) fn release(self) {
        match self {
            Pooled::H1(p) => p.release(),
            Pooled::H2(s) => drop(s),
        }
    }
}

/// An HTTP/1.1 connection lent to one request; back to the pool once the response is
/// read through.
pub(crate) struct PooledH1 {
    conn: Idle,
    endpoint: Arc<EndpointState>,
}

impl PooledH1 {
    fn new(mut conn: Idle, endpoint: Arc<EndpointState>) -> Self {
        conn.uses = conn.uses.saturating_add(1);
        PooledH1 { conn, endpoint }
    }

    /// Returns the connection to its pool: at once when it is ready for the next
    /// request, else when it becomes ready (the connection task may not have seen the
    /// end of the response yet).
    pub(crate) fn release(self) {
        let PooledH1 { mut conn, endpoint } = self;
        if conn.sr.is_ready() {
            endpoint.put_idle(conn);
        } else if !conn.sr.is_closed()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                if conn.sr.ready().await.is_ok() {
                    endpoint.put_idle(conn);
                }
            });
        }
    }
}

/// Counts a request against its endpoint while it is in flight (for least-request),
/// and against its cluster's `http2MaxRequests` when it has one.
pub(crate) struct InFlight {
    endpoint: Arc<EndpointState>,
    _slot: Option<Slot>,
    /// What outlier detection did on this try's answer, for the record's details.
    note: Option<Box<str>>,
}

impl InFlight {
    pub(crate) fn new(endpoint: Arc<EndpointState>) -> Self {
        InFlight::with_slot(endpoint, None)
    }

    /// [`Self::new`], holding the cluster's request slot until the response is done.
    pub(crate) fn with_slot(endpoint: Arc<EndpointState>, slot: Option<Slot>) -> Self {
        endpoint.active.fetch_add(1, Ordering::Relaxed);
        InFlight {
            endpoint,
            _slot: slot,
            note: None,
        }
    }

    pub(crate) fn endpoint(&self) -> &Arc<EndpointState> {
        &self.endpoint
    }

    /// Keeps what outlier detection did on this answer.
    pub(crate) fn set_note(&mut self, note: String) {
        self.note = Some(note.into());
    }

    /// What outlier detection did on this answer, if anything.
    pub(crate) fn take_note(&mut self) -> Option<Box<str>> {
        self.note.take()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A cluster of a snapshot: its endpoints and how to choose among them, and the
/// resilience state (circuit breaker, outlier detector, hash table) when the cluster's
/// DestinationRule asks for it; `None` costs a cluster without them nothing.
#[derive(Debug)]
pub(crate) struct ClusterRt {
    pub(crate) name: Arc<str>,
    /// The service, for the metrics' `destination_service*` labels.
    pub(crate) service: Option<Arc<crate::metrics::Service>>,
    /// How its endpoints are spoken to (all alike: it follows the cluster's protocol).
    pub(crate) proto: UpstreamProto,
    pub(crate) connect_timeout: Duration,
    lb: lb::Balancer,
    /// `connectionPool` limits.
    pub(crate) breaker: Option<Arc<Breaker>>,
    /// `outlierDetection`: the detector and the monitor of each endpoint, in order.
    outlier: Option<Box<Monitored>>,
    /// `consistentHash`.
    hash: Option<Box<hash::HashTable>>,
    /// Priorities and locality weights (locality load balancing).
    tiers: Option<Box<tiers::Tiers>>,
    /// `PASSTHROUGH`: requests go to the destination the app addressed.
    passthrough: bool,
}

/// A cluster's outlier detector and the monitor of each of its endpoints, in order.
type Monitored = (Arc<outlier::Detector>, Vec<Arc<outlier::HostMonitor>>);

/// How the proxy speaks to a cluster's endpoints: by its protocol, or HTTP/2 for an
/// HTTP/1.1 port under `h2UpgradePolicy: UPGRADE`, or in the downstream's protocol
/// under `useClientProtocol` and, on a `sidecar`, for a port whose protocol is
/// detected (unnamed): as istiod sets `use_downstream_protocol` for such a port on
/// sidecars only (a gateway's clients negotiate h2 by ALPN, which the app may not
/// speak).
pub(crate) fn proto_of(c: &Cluster, sidecar: bool) -> UpstreamProto {
    let pool = c.traffic.connection_pool.as_ref();
    let upgrade = pool.is_some_and(|p| p.h2_upgrade);
    let by_port = proto_of_port(c);
    let detected = sidecar && c.protocol == Protocol::Unspecified;
    if upgrade && c.protocol == Protocol::Http {
        // Istio applies the upgrade after `useClientProtocol` (validation refuses both).
        UpstreamProto::Http2
    } else if (detected || pool.is_some_and(|p| p.use_client_protocol))
        && by_port != UpstreamProto::Opaque
    {
        UpstreamProto::Client
    } else {
        by_port
    }
}

fn proto_of_port(c: &Cluster) -> UpstreamProto {
    if c.protocol == Protocol::Https
        && matches!(c.tls, skiff_model::config::ClusterTls::IstioMutual(_))
    {
        // An `HTTPS` port reached with Istio mutual TLS (an egress gateway's 443):
        // HTTP/1.1 inside the mesh's TLS, as Envoy's router speaks to such a cluster.
        UpstreamProto::Http1
    } else {
        UpstreamProto::for_protocol(c.protocol)
    }
}

impl ClusterRt {
    pub(crate) fn new(
        c: &Cluster,
        proto: UpstreamProto,
        mut endpoints: Vec<(Arc<EndpointState>, u32)>,
        registry: &EndpointRegistry,
        breaker: Option<Arc<Breaker>>,
    ) -> Self {
        // Locality load balancing: endpoints in priority, then locality, order, so that
        // each priority and each locality is a range.
        let mut tiers = None;
        let placed = c.endpoints.len() == endpoints.len()
            && (c.traffic.locality_weighted.is_some()
                || c.endpoints.iter().any(|e| e.priority != 0));
        if placed {
            let mut order: Vec<usize> = (0..endpoints.len()).collect();
            order.sort_by(|&a, &b| {
                let (a, b) = (&c.endpoints[a], &c.endpoints[b]);
                (a.priority, &a.locality).cmp(&(b.priority, &b.locality))
            });
            let mut slots: Vec<Option<(Arc<EndpointState>, u32)>> =
                endpoints.into_iter().map(Some).collect();
            endpoints = order
                .iter()
                .map(|&i| slots[i].take().expect("each once"))
                .collect();
            let placement: Vec<tiers::Placement<'_>> = order
                .iter()
                .map(|&i| tiers::Placement {
                    priority: c.endpoints[i].priority,
                    locality: &c.endpoints[i].locality,
                })
                .collect();
            tiers = tiers::Tiers::build(
                c.lb,
                c.traffic.warmup.as_ref(),
                &endpoints,
                &placement,
                c.traffic.locality_weighted.as_ref(),
                c.traffic.consistent_hash.as_ref(),
            )
            .map(Box::new);
        }
        let outlier = registry.detector(c).map(|d| {
            let keys: Vec<(EndpointKey, &str)> = endpoints
                .iter()
                .map(|(e, _)| (e.key.clone(), &*e.display))
                .collect();
            let hosts = d.hosts_for(&keys);
            Box::new((d, hosts))
        });
        let hash = c.traffic.consistent_hash.as_ref().map(|h| {
            let names: Vec<String> = endpoints
                .iter()
                .map(|(e, _)| e.display.to_string())
                .collect();
            let weights: Vec<u32> = endpoints.iter().map(|(_, w)| (*w).max(1)).collect();
            Box::new(hash::HashTable::build(h, &names, &weights))
        });
        ClusterRt {
            name: c.name.as_str().into(),
            service: Some(crate::metrics::Service::from_host(&c.service)),
            proto,
            connect_timeout: if c.connect_timeout.is_zero() {
                Duration::from_secs(10)
            } else {
                c.connect_timeout
            },
            lb: lb::Balancer::new(c.lb, endpoints).with_warmup(c.traffic.warmup.as_ref()),
            breaker,
            outlier,
            hash,
            tiers,
            passthrough: c.lb == skiff_model::config::LbPolicy::Passthrough,
        }
    }

    /// A `PASSTHROUGH` cluster: each request goes to its original destination.
    pub(crate) fn is_passthrough(&self) -> bool {
        self.passthrough
    }

    /// For a `PASSTHROUGH` cluster: the cluster of one request, to `addr`, the
    /// destination the app addressed. An endpoint of this cluster with that IP address
    /// is reached as a balanced pick would reach it (its sidecar, its mutual TLS);
    /// another address is dialled as it is, in plain text. The cluster's request
    /// limits still apply; outlier detection does not (no endpoint is chosen).
    pub(crate) fn to_original(
        &self,
        addr: SocketAddr,
        dial: impl FnOnce() -> Arc<EndpointState>,
    ) -> ClusterRt {
        let known = (0..self.lb.len())
            .map(|i| self.lb.endpoint(i))
            .filter(|e| e.app.ip() == addr.ip())
            .min_by_key(|e| e.app.port() != addr.port());
        let endpoint = known.cloned().unwrap_or_else(dial);
        let mut one = ClusterRt::single(
            self.name.clone(),
            self.proto,
            endpoint,
            self.connect_timeout,
        );
        one.service.clone_from(&self.service);
        one.breaker.clone_from(&self.breaker);
        one
    }

    /// A cluster of one endpoint (an inbound port's app).
    /// How a request that came in `version` is spoken upstream.
    pub(crate) fn proto_for(&self, version: http::Version) -> UpstreamProto {
        match self.proto {
            UpstreamProto::Client if version == http::Version::HTTP_2 => UpstreamProto::Http2,
            UpstreamProto::Client => UpstreamProto::Http1,
            p => p,
        }
    }

    pub(crate) fn single(
        name: Arc<str>,
        proto: UpstreamProto,
        endpoint: Arc<EndpointState>,
        connect_timeout: Duration,
    ) -> Self {
        ClusterRt {
            service: Some(crate::metrics::Service::from_cluster(&name)),
            name,
            proto,
            connect_timeout,
            lb: lb::Balancer::new(
                skiff_model::config::LbPolicy::RoundRobin,
                vec![(endpoint, 1)],
            ),
            breaker: None,
            outlier: None,
            hash: None,
            tiers: None,
            passthrough: false,
        }
    }

    /// Chooses an endpoint, or `None` when the cluster has none (or none healthy).
    pub(crate) fn pick(&self) -> Option<&Arc<EndpointState>> {
        self.pick_index(None).map(|i| self.lb.endpoint(i))
    }

    /// Chooses an endpoint by index: by `hash` when the cluster hashes (and the request
    /// has the attribute), else by the cluster's balancer; ejected endpoints skipped
    /// unless the cluster is in panic.
    pub(crate) fn pick_index(&self, hash: Option<u64>) -> Option<usize> {
        let ejected = self
            .outlier
            .as_deref()
            .filter(|(d, _)| d.filtering())
            .map(|(_, hosts)| hosts);
        let usable = |i: usize| ejected.is_none_or(|h| !h[i].is_ejected());
        if let Some(t) = &self.tiers {
            return t.pick(ejected.is_some(), usable, hash);
        }
        if let Some(table) = &self.hash {
            let h = hash.unwrap_or_else(|| {
                u64::from(random_below(u32::MAX)) << 32 | u64::from(random_below(u32::MAX))
            });
            return table.lookup(h, usable);
        }
        match ejected {
            None => self.lb.pick(),
            Some(_) => self.lb.pick_where(usable),
        }
    }

    /// The endpoint at `i` (from [`Self::pick_index`]).
    pub(crate) fn endpoint(&self, i: usize) -> &Arc<EndpointState> {
        self.lb.endpoint(i)
    }

    /// The hash key of a consistent-hash cluster.
    pub(crate) fn hash_key(&self) -> Option<&skiff_model::config::HashKey> {
        self.hash.as_deref().map(|t| &t.key)
    }

    /// For outlier detection: what the endpoint at `i` answered. The detector and the
    /// endpoint's monitor, to report to once the try is over; `None` without detection.
    pub(crate) fn monitor(&self, i: usize) -> Option<HostReport> {
        let (d, hosts) = self.outlier.as_deref()?;
        Some(HostReport(d.clone(), hosts.get(i)?.clone()))
    }

    /// `/config_dump`: circuit-breaker counts and outlier ejections, when the cluster
    /// has them.
    pub(crate) fn status(&self) -> Option<serde_json::Value> {
        if self.breaker.is_none() && self.outlier.is_none() {
            return None;
        }
        let mut v = serde_json::Map::new();
        if let Some(b) = &self.breaker {
            let [connections, pending, requests, retries] = b.counts();
            v.insert(
                "circuitBreaker".into(),
                serde_json::json!({
                    "connections": connections, "pendingRequests": pending,
                    "requests": requests, "retries": retries,
                }),
            );
        }
        if let Some((d, _)) = self.outlier.as_deref() {
            v.insert("outlierDetection".into(), d.status());
        }
        Some(v.into())
    }
}

/// Where one try's outcome is reported (outlier detection).
pub(crate) struct HostReport(Arc<outlier::Detector>, Arc<outlier::HostMonitor>);

impl HostReport {
    /// Counts the outcome; returns the ejection it caused, in words, if any.
    pub(crate) fn report(&self, outcome: Outcome) -> Option<String> {
        self.0.report(&self.1, outcome)
    }
}

/// The hash of a request for a consistent-hash cluster; with a cookie key and no cookie
/// yet, also the `Set-Cookie` to answer with.
pub(crate) fn request_hash(
    key: &skiff_model::config::HashKey,
    parts: &http::request::Parts,
    source: Option<std::net::IpAddr>,
) -> (Option<u64>, Option<http::HeaderValue>) {
    let h = hash::request_hash(key, &parts.headers, parts.uri.query(), source);
    match (h, key) {
        (None, skiff_model::config::HashKey::Cookie(c)) => match hash::new_cookie(c, source) {
            Some((h, set)) => (Some(h), Some(set)),
            None => (None, None),
        },
        _ => (h, None),
    }
}

/// A uniformly random number in `0..n` (`n` > 0).
pub(crate) fn random_below(n: u32) -> u32 {
    rand::rng().random_range(0..n.max(1))
}
