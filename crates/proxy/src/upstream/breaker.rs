//! Circuit breaking: a DestinationRule's `connectionPool` limits, per cluster and per
//! proxy, with Envoy's semantics. A request over `http2MaxRequests`, or one that must
//! wait for a connection while `http1MaxPendingRequests` others already wait, is answered
//! `503` with flag `UO` at once; nothing queues without bound. A retry over `maxRetries`
//! is not made (the last answer goes back, flagged `UO`). An opaque TCP connection over
//! `maxConnections` is refused at once.
//!
//! One [`Breaker`] per cluster name outlives snapshots (its counts stay right while
//! requests of an old snapshot finish); each snapshot build stores its limits. A cluster
//! without `connectionPool` has none and pays nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use skiff_model::config::ConnectionPool;
use tokio::sync::Notify;

/// A limit that is not set.
const UNLIMITED: usize = usize::MAX;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// `http2MaxRequests`.
    Requests,
    /// `http1MaxPendingRequests` (with every connection of `maxConnections` busy).
    Pending,
    /// `maxRetries`.
    Retries,
    /// `tcp.maxConnections` (opaque TCP connections, refused at once).
    Connections,
}

impl Overflow {
    /// The DestinationRule field, for the record's details.
    pub(crate) fn field(self) -> &'static str {
        match self {
            Overflow::Requests => "connectionPool.http.http2MaxRequests",
            Overflow::Pending => {
                "connectionPool.http.http1MaxPendingRequests (all connections of \
                 connectionPool.tcp.maxConnections busy)"
            }
            Overflow::Retries => "connectionPool.http.maxRetries",
            Overflow::Connections => "connectionPool.tcp.maxConnections",
        }
    }
}

/// The counters and limits of one cluster.
#[derive(Debug)]
pub(crate) struct Breaker {
    max_connections: AtomicUsize,
    max_pending: AtomicUsize,
    max_requests: AtomicUsize,
    max_retries: AtomicUsize,
    /// `maxConcurrentStreams` per HTTP/2 connection.
    max_streams: AtomicUsize,
    /// 0: unlimited.
    max_requests_per_connection: AtomicUsize,
    /// Milliseconds, 0: none.
    idle_timeout_ms: AtomicU64,
    /// `tcp.idleTimeout` in milliseconds; [`TCP_IDLE_UNSET`] when not set, 0 for `0s`.
    tcp_idle_timeout_ms: AtomicU64,
    max_connection_duration_ms: AtomicU64,
    /// Keepalive: time, interval (ms) and probes, 0 where unset; all 0: off.
    keepalive: [AtomicU64; 3],
    connections: AtomicUsize,
    pending: AtomicUsize,
    requests: AtomicUsize,
    retries: AtomicUsize,
    /// Woken when a connection goes idle or closes: pending requests look again.
    freed: Notify,
}

/// `tcp.idleTimeout` not set.
const TCP_IDLE_UNSET: u64 = u64::MAX;

fn limit(v: Option<u32>) -> usize {
    v.map_or(UNLIMITED, |n| n as usize)
}

fn millis(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
    })
}

impl Breaker {
    pub(crate) fn new(p: &ConnectionPool) -> Breaker {
        let b = Breaker {
            max_connections: AtomicUsize::new(UNLIMITED),
            max_pending: AtomicUsize::new(UNLIMITED),
            max_requests: AtomicUsize::new(UNLIMITED),
            max_retries: AtomicUsize::new(UNLIMITED),
            max_streams: AtomicUsize::new(UNLIMITED),
            max_requests_per_connection: AtomicUsize::new(0),
            idle_timeout_ms: AtomicU64::new(0),
            tcp_idle_timeout_ms: AtomicU64::new(TCP_IDLE_UNSET),
            max_connection_duration_ms: AtomicU64::new(0),
            keepalive: Default::default(),
            connections: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            retries: AtomicUsize::new(0),
            freed: Notify::new(),
        };
        b.set_limits(p);
        b
    }

    /// Takes the limits of a new snapshot.
    pub(crate) fn set_limits(&self, p: &ConnectionPool) {
        let r = Ordering::Relaxed;
        self.max_connections.store(limit(p.max_connections), r);
        self.max_pending.store(limit(p.max_pending_requests), r);
        self.max_requests.store(limit(p.max_requests), r);
        self.max_retries.store(limit(p.max_retries), r);
        self.max_streams.store(limit(p.max_concurrent_streams), r);
        self.max_requests_per_connection
            .store(p.max_requests_per_connection.map_or(0, |n| n as usize), r);
        self.idle_timeout_ms.store(millis(p.idle_timeout), r);
        self.tcp_idle_timeout_ms.store(
            p.tcp_idle_timeout.map_or(TCP_IDLE_UNSET, |d| {
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1)
            }),
            r,
        );
        self.max_connection_duration_ms
            .store(millis(p.max_connection_duration), r);
        let k = p.tcp_keepalive.as_ref();
        self.keepalive[0].store(millis(k.and_then(|k| k.time)), r);
        self.keepalive[1].store(millis(k.and_then(|k| k.interval)), r);
        self.keepalive[2].store(k.and_then(|k| k.probes).map_or(0, u64::from), r);
        // A raised limit may let waiting requests through.
        self.freed.notify_waiters();
    }

    /// Counts a request in flight, or refuses it over `http2MaxRequests`.
    pub(crate) fn request(self: &Arc<Self>) -> Result<Slot, Overflow> {
        self.take(&self.requests, &self.max_requests, Overflow::Requests)
    }

    /// Counts a retry in flight, or refuses it over `maxRetries`.
    pub(crate) fn retry(self: &Arc<Self>) -> Result<Slot, Overflow> {
        self.take(&self.retries, &self.max_retries, Overflow::Retries)
    }

    /// Counts a request waiting for a connection, or refuses it.
    pub(crate) fn pending(self: &Arc<Self>) -> Result<Slot, Overflow> {
        self.take(&self.pending, &self.max_pending, Overflow::Pending)
    }

    /// Counts a new connection, or refuses it at `maxConnections`.
    pub(crate) fn connection(self: &Arc<Self>) -> Result<Slot, Overflow> {
        self.take(
            &self.connections,
            &self.max_connections,
            Overflow::Connections,
        )
    }

    /// Counts a new connection over `maxConnections`: Envoy gives an endpoint it
    /// picked at least one connection whatever the limit.
    pub(crate) fn connection_anyway(self: &Arc<Self>) -> Slot {
        self.connections.fetch_add(1, Ordering::AcqRel);
        Slot {
            breaker: self.clone(),
            which: Overflow::Connections,
        }
    }

    fn take(
        self: &Arc<Self>,
        count: &AtomicUsize,
        max: &AtomicUsize,
        what: Overflow,
    ) -> Result<Slot, Overflow> {
        let max = max.load(Ordering::Relaxed);
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| what)?;
        Ok(Slot {
            breaker: self.clone(),
            which: what,
        })
    }

    /// Wakes requests waiting for a connection.
    pub(crate) fn freed(&self) {
        self.freed.notify_waiters();
    }

    /// A future that resolves at the next [`Self::freed`]; register it (`enable`)
    /// before looking for a connection, so a wake-up in between is not lost.
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }

    /// `maxConcurrentStreams` (unlimited: `usize::MAX`).
    pub(crate) fn max_concurrent_streams(&self) -> usize {
        self.max_streams.load(Ordering::Relaxed)
    }

    /// `maxRequestsPerConnection`, 0 for none.
    pub(crate) fn max_requests_per_connection(&self) -> usize {
        self.max_requests_per_connection.load(Ordering::Relaxed)
    }

    /// `tcp.idleTimeout` for opaque TCP connections: `None` when not set (then the
    /// default applies), `Some(ZERO)` when turned off.
    pub(crate) fn tcp_idle_timeout(&self) -> Option<Duration> {
        match self.tcp_idle_timeout_ms.load(Ordering::Relaxed) {
            TCP_IDLE_UNSET => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// `http.idleTimeout`.
    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        nonzero(self.idle_timeout_ms.load(Ordering::Relaxed))
    }

    /// `tcp.maxConnectionDuration`.
    pub(crate) fn max_connection_duration(&self) -> Option<Duration> {
        nonzero(self.max_connection_duration_ms.load(Ordering::Relaxed))
    }

    /// `tcp.tcpKeepalive`, when set: idle time, interval, probes.
    pub(crate) fn keepalive(&self) -> Option<(Option<Duration>, Option<Duration>, Option<u32>)> {
        let [t, i, p] = &self.keepalive;
        let (t, i, p) = (
            t.load(Ordering::Relaxed),
            i.load(Ordering::Relaxed),
            p.load(Ordering::Relaxed),
        );
        (t | i | p != 0).then(|| {
            (
                nonzero(t),
                nonzero(i),
                (p > 0).then(|| u32::try_from(p).unwrap_or(u32::MAX)),
            )
        })
    }

    /// Counts now, for `/config_dump`: connections, pending, requests, retries.
    pub(crate) fn counts(&self) -> [usize; 4] {
        let r = Ordering::Relaxed;
        [
            self.connections.load(r),
            self.pending.load(r),
            self.requests.load(r),
            self.retries.load(r),
        ]
    }
}

fn nonzero(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// One unit of a count, given back on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    breaker: Arc<Breaker>,
    which: Overflow,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let b = &self.breaker;
        let count = match self.which {
            Overflow::Requests => &b.requests,
            Overflow::Pending => &b.pending,
            Overflow::Retries => &b.retries,
            Overflow::Connections => &b.connections,
        };
        count.fetch_sub(1, Ordering::AcqRel);
        if self.which == Overflow::Connections {
            b.freed();
        }
    }
}
