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

mod lb;

/// How the proxy talks HTTP to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum UpstreamProto {
    /// HTTP/1.1 with a pool of keep-alive connections.
    Http1,
    /// HTTP/2: one multiplexed connection.
    Http2,
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
}

/// Endpoint state shared by every snapshot that contains the endpoint.
#[derive(Default, Debug)]
pub(crate) struct EndpointRegistry {
    map: Mutex<HashMap<EndpointKey, Weak<EndpointState>>>,
}

impl EndpointRegistry {
    /// The live state for `key`, or a fresh one. `app` is the workload's own address;
    /// `tls` how to reach it (it follows from the key's identity).
    pub(crate) fn get(
        &self,
        key: EndpointKey,
        app: SocketAddr,
        source: Option<std::net::IpAddr>,
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
        let state = Arc::new(EndpointState::new(key.clone(), app, source, tls()));
        map.insert(key, Arc::downgrade(&state));
        state
    }

    /// Forgets endpoints no snapshot holds any more (their pools are already gone).
    pub(crate) fn prune(&self) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
    }
}

/// Idle HTTP/1.1 connections kept per endpoint.
const MAX_IDLE: usize = 256;

/// One endpoint: its pool and load.
pub(crate) struct EndpointState {
    pub(crate) key: EndpointKey,
    /// `ip:port` of the workload, as the access log shows it.
    pub(crate) display: Box<str>,
    /// Plain text or mesh mutual TLS.
    pub(crate) tls: UpstreamTls,
    /// The local address connections leave from: the workload's own, so the peer sees
    /// (and `source.ip` / `ipBlocks` match) the caller's address, not the host's.
    pub(crate) source: Option<std::net::IpAddr>,
    active: AtomicUsize,
    idle: Mutex<Vec<http1::SendRequest<ReqBody>>>,
    h2: Mutex<Option<http2::SendRequest<ReqBody>>>,
    h2_connect: tokio::sync::Mutex<()>,
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
            tls,
            source,
            active: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(None),
            h2_connect: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Opens a connection ([`transport::dial`]): TCP, TLS when the endpoint asks for
    /// it, and the transport header when it is behind a peer proxy.
    pub(crate) async fn connect(&self, timeout: Duration) -> Result<Io, Error> {
        transport::dial(self, timeout).await
    }

    /// Sends a request on a pooled connection (or a new one). For HTTP/1.1 the returned
    /// [`PooledH1`] must be released when the response body is done, so the connection
    /// goes back to the pool. A failure before the request left (connect error, a
    /// connection that closed first) gives the request back, so it can be retried even
    /// with a body.
    pub(crate) fn send(
        self: &Arc<Self>,
        req: Request<ReqBody>,
        connect_timeout: Duration,
    ) -> impl Future<Output = Result<(Response<Incoming>, Option<PooledH1>), SendError>> + use<>
    {
        // A plain function (an `async fn` would store the request twice), and owning
        // its endpoint, so the future borrows nothing.
        let this = self.clone();
        match self.key.proto {
            UpstreamProto::Http2 => Either::Left(
                this.send_h2(req, connect_timeout)
                    .map(|r| r.map(|resp| (resp, None))),
            ),
            _ => Either::Right(this.send_h1(req, connect_timeout)),
        }
    }

    async fn send_h1(
        self: Arc<Self>,
        mut req: Request<ReqBody>,
        connect_timeout: Duration,
    ) -> Result<(Response<Incoming>, Option<PooledH1>), SendError> {
        // An idle connection the server closed meanwhile hands the request back unsent;
        // then the next one (or a new one) takes it.
        while let Some(mut sr) = self.checkout_idle() {
            match sr.try_send_request(req).await {
                Ok(resp) => return Ok((resp, Some(PooledH1::new(sr, self.clone())))),
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
        req: Request<ReqBody>,
        connect_timeout: Duration,
    ) -> Result<(Response<Incoming>, Option<PooledH1>), SendError> {
        let io = match self.connect(connect_timeout).await {
            Ok(io) => io,
            Err(error) => return Err(self.failed(error, Some(req))),
        };
        let (mut sr, conn) = match http1::Builder::new()
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
        });
        match sr.try_send_request(req).await {
            Ok(resp) => Ok((resp, Some(PooledH1::new(sr, self.clone())))),
            Err(mut e) => {
                let unsent = e.take_message();
                Err(self.failed(self.reset(e.into_error()), unsent))
            }
        }
    }

    fn checkout_idle(&self) -> Option<http1::SendRequest<ReqBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(sr) = idle.pop() {
            if sr.is_ready() {
                return Some(sr);
            }
        }
        None
    }

    fn put_idle(&self, sr: http1::SendRequest<ReqBody>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(sr);
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

/// A request that failed, with the request itself when it never left.
#[derive(Debug)]
pub(crate) struct SendError {
    pub(crate) error: Error,
    /// Boxed: failures are rare, and a small error keeps every send future small.
    pub(crate) unsent: Option<Box<Request<ReqBody>>>,
}

/// An HTTP/1.1 connection lent to one request; back to the pool once the response is
/// read through.
pub(crate) struct PooledH1 {
    sr: http1::SendRequest<ReqBody>,
    endpoint: Arc<EndpointState>,
}

impl PooledH1 {
    fn new(sr: http1::SendRequest<ReqBody>, endpoint: Arc<EndpointState>) -> Self {
        PooledH1 { sr, endpoint }
    }

    /// Returns the connection to its pool: at once when it is ready for the next
    /// request, else when it becomes ready (the connection task may not have seen the
    /// end of the response yet).
    pub(crate) fn release(self) {
        let PooledH1 { mut sr, endpoint } = self;
        if sr.is_ready() {
            endpoint.put_idle(sr);
        } else if !sr.is_closed()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                if sr.ready().await.is_ok() {
                    endpoint.put_idle(sr);
                }
            });
        }
    }
}

/// Counts a request against its endpoint while it is in flight (for least-request).
pub(crate) struct InFlight(Arc<EndpointState>);

impl InFlight {
    pub(crate) fn new(endpoint: Arc<EndpointState>) -> Self {
        endpoint.active.fetch_add(1, Ordering::Relaxed);
        InFlight(endpoint)
    }

    pub(crate) fn endpoint(&self) -> &Arc<EndpointState> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A cluster of a snapshot: its endpoints and how to choose among them.
#[derive(Debug)]
pub(crate) struct ClusterRt {
    pub(crate) name: Arc<str>,
    /// How its endpoints are spoken to (all alike: it follows the cluster's protocol).
    pub(crate) proto: UpstreamProto,
    pub(crate) connect_timeout: Duration,
    lb: lb::Balancer,
}

impl ClusterRt {
    pub(crate) fn new(c: &Cluster, endpoints: Vec<(Arc<EndpointState>, u32)>) -> Self {
        ClusterRt {
            name: c.name.as_str().into(),
            proto: UpstreamProto::for_protocol(c.protocol),
            connect_timeout: if c.connect_timeout.is_zero() {
                Duration::from_secs(10)
            } else {
                c.connect_timeout
            },
            lb: lb::Balancer::new(c.lb, endpoints),
        }
    }

    /// A cluster of one endpoint (an inbound port's app).
    pub(crate) fn single(
        name: Arc<str>,
        proto: UpstreamProto,
        endpoint: Arc<EndpointState>,
        connect_timeout: Duration,
    ) -> Self {
        ClusterRt {
            name,
            proto,
            connect_timeout,
            lb: lb::Balancer::new(
                skiff_model::config::LbPolicy::RoundRobin,
                vec![(endpoint, 1)],
            ),
        }
    }

    /// Chooses an endpoint, or `None` when the cluster has none.
    pub(crate) fn pick(&self) -> Option<&Arc<EndpointState>> {
        self.lb.pick()
    }
}

/// A uniformly random number in `0..n` (`n` > 0).
pub(crate) fn random_below(n: u32) -> u32 {
    rand::rng().random_range(0..n.max(1))
}
