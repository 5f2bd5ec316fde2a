//! HTTP/2 connections of one endpoint under `connectionPool` limits, as Envoy's HTTP/2
//! pool keeps them: a stream goes on a connection with room for it (fewer than
//! `maxConcurrentStreams` open, not drained); without one, a new connection is opened
//! when `maxConnections` allows it (an endpoint without any connection always gets
//! one, as in Envoy), else the request waits as pending, refused at once over
//! `http1MaxPendingRequests`. A connection that carried `maxRequestsPerConnection`
//! streams or is older than `maxConnectionDuration` takes no new stream and closes
//! once its streams are done; one without a stream for `idleTimeout` is closed.
//!
//! Without limits an endpoint keeps one multiplexed connection (`upstream.rs`) and
//! none of this runs.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hyper::client::conn::http2;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Breaker, EndpointState, Slot};
use crate::forward::ReqBody;

/// The limited HTTP/2 connections of one endpoint.
#[derive(Default)]
pub(super) struct H2Pool {
    conns: Mutex<Vec<H2Conn>>,
    /// One new connection at a time per endpoint: a request that finds another being
    /// opened waits (as pending) for it rather than opening its own.
    pub(super) dialing: tokio::sync::Mutex<()>,
}

/// A connection in the pool.
struct H2Conn {
    sr: http2::SendRequest<ReqBody>,
    state: Arc<H2State>,
}

/// What the pool and the connection's watcher know of a connection.
pub(super) struct H2State {
    /// Streams open on it now.
    streams: AtomicUsize,
    /// Streams it has carried.
    uses: AtomicUsize,
    born: Instant,
    /// When its last stream ended, in milliseconds after `born`.
    idle_since_ms: AtomicU64,
    /// Told when its last stream ends.
    changed: Notify,
}

impl H2State {
    fn new() -> Arc<H2State> {
        Arc::new(H2State {
            streams: AtomicUsize::new(0),
            uses: AtomicUsize::new(0),
            born: Instant::now(),
            idle_since_ms: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    fn idle_since(&self) -> Instant {
        self.born + Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed))
    }
}

/// A stream on a limited HTTP/2 connection, counted until its response is done.
pub(crate) struct H2Stream {
    state: Arc<H2State>,
    breaker: Arc<Breaker>,
}

impl Drop for H2Stream {
    fn drop(&mut self) {
        if self.state.streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            let ms = u64::try_from(self.state.born.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.state.idle_since_ms.store(ms, Ordering::Relaxed);
            self.state.changed.notify_waiters();
        }
        // A pending request may take the stream freed.
        self.breaker.freed();
    }
}

impl H2Pool {
    /// A stream on a connection with room for one, if there is such a connection.
    /// Closed and aged connections are dropped from the pool on the way; one that
    /// reaches `maxRequestsPerConnection` with this stream leaves it (drained).
    pub(super) fn checkout(
        &self,
        b: &Arc<Breaker>,
    ) -> Option<(http2::SendRequest<ReqBody>, H2Stream)> {
        let max_streams = b.max_concurrent_streams();
        let max_uses = b.max_requests_per_connection();
        let max_age = b.max_connection_duration();
        let now = Instant::now();
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|c| {
            !c.sr.is_closed()
                && max_age.is_none_or(|d| now.saturating_duration_since(c.state.born) < d)
        });
        let i = conns
            .iter()
            .position(|c| c.state.streams.load(Ordering::Acquire) < max_streams)?;
        let c = &conns[i];
        c.state.streams.fetch_add(1, Ordering::AcqRel);
        let uses = c.state.uses.fetch_add(1, Ordering::Relaxed) + 1;
        let taken = (
            c.sr.clone(),
            H2Stream {
                state: c.state.clone(),
                breaker: b.clone(),
            },
        );
        if max_uses > 0 && uses >= max_uses {
            // Drained: it closes once its streams are done.
            conns.swap_remove(i);
        }
        Some(taken)
    }

    /// Whether the endpoint has no open connection (then one may be opened even at
    /// `maxConnections`, as Envoy guarantees every endpoint picked a connection).
    pub(super) fn is_empty(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.iter().all(|c| c.sr.is_closed())
    }

    /// Adds a connection just opened; returns its state for its watcher.
    fn add(&self, sr: http2::SendRequest<ReqBody>) -> Arc<H2State> {
        let state = H2State::new();
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.push(H2Conn {
            sr,
            state: state.clone(),
        });
        state
    }

    /// Takes the connection out of the pool (its handle dropped, it closes once its
    /// streams are done); with `only_idle`, only while it has no stream. Whether it is
    /// out.
    fn retire(&self, state: &Arc<H2State>, only_idle: bool) -> bool {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if only_idle && state.streams.load(Ordering::Acquire) > 0 {
            return false;
        }
        conns.retain(|c| !Arc::ptr_eq(&c.state, state));
        true
    }
}

/// Runs a limited connection to its end: `conn` is hyper's connection task; the
/// connection's slot of `maxConnections` is held until it ends. With `idleTimeout` or
/// `maxConnectionDuration`, a watcher takes the connection out of the pool when one is
/// reached.
pub(super) fn spawn_connection<F>(
    endpoint: &Arc<EndpointState>,
    sr: http2::SendRequest<ReqBody>,
    conn: F,
    slot: Slot,
    b: &Arc<Breaker>,
) where
    F: Future<Output = Result<(), hyper::Error>> + Send + 'static,
{
    let state = endpoint.h2_pool.add(sr);
    let watch = (b.idle_timeout().is_some() || b.max_connection_duration().is_some())
        .then(|| (Arc::downgrade(endpoint), b.clone()));
    let addr = endpoint.key.dial;
    tokio::spawn(async move {
        let mut conn = std::pin::pin!(conn);
        if let Some((endpoint, b)) = watch {
            tokio::select! {
                r = &mut conn => {
                    ended(addr, r);
                    drop(slot);
                    return;
                }
                () = watch_connection(endpoint, &state, &b) => {}
            }
        }
        // Out of the pool: the connection task ends once no handle is left.
        ended(addr, conn.await);
        drop(slot);
    });
}

fn ended(addr: std::net::SocketAddr, r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        tracing::debug!(upstream = %addr, error = %e, "upstream h2 connection ended");
    }
}

/// Resolves once the connection is out of the pool: past `maxConnectionDuration`, or
/// without a stream for `idleTimeout`.
async fn watch_connection(endpoint: Weak<EndpointState>, state: &Arc<H2State>, b: &Breaker) {
    loop {
        let changed = state.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let now = Instant::now();
        let mut due: Option<Instant> = None;
        if let Some(d) = b.max_connection_duration() {
            let at = state.born + d;
            if now >= at {
                if let Some(ep) = endpoint.upgrade() {
                    ep.h2_pool.retire(state, false);
                }
                return;
            }
            due = Some(at);
        }
        if let Some(idle) = b.idle_timeout()
            && state.streams.load(Ordering::Acquire) == 0
        {
            let at = state.idle_since() + idle;
            if now >= at {
                let Some(ep) = endpoint.upgrade() else {
                    return;
                };
                if ep.h2_pool.retire(state, true) {
                    tracing::debug!(upstream = %ep.display, ?idle, "idle h2 connection closed");
                    return;
                }
                continue;
            }
            due = Some(due.map_or(at, |d| d.min(at)));
        }
        match due {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = changed => {}
                }
            }
            None => changed.await,
        }
    }
}
