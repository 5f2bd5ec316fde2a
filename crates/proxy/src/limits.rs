//! What bounds the resources one client can take: request head size and header count,
//! how long a request head may take to arrive, how long a stream may sit idle, how many
//! downstream connections are open at once, and how many requests an HTTP/2 client may
//! abandon on one connection.
//!
//! The defaults follow Envoy's as Istio sets them (60 KiB of request headers, 100
//! headers) and add what Envoy leaves open (a request head timeout, as HAProxy and
//! nginx have). Each is a [`Limits`] field, set from `skiff proxy` flags; the table in
//! `docs/security.md` lists them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// The limits a proxy enforces on what its downstreams send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line and headers) in bytes, HTTP/1 and HTTP/2;
    /// a larger one is answered `431` and the connection closed. Envoy's
    /// `max_request_headers_kb`: 60 KiB. A request line longer than this is also a
    /// `431`, as in Envoy (the URI counts toward the head).
    pub max_request_headers_bytes: usize,
    /// Most request headers (Envoy's `max_request_headers_count`: 100); more is `431`.
    pub max_request_headers: usize,
    /// How long an HTTP/1 request head may take to arrive, counted from the end of the
    /// previous response (or from accept); the connection is then closed. For HTTP/1
    /// this is also how long a keep-alive connection may sit idle between requests.
    /// `None`: no limit (Envoy's default).
    pub request_head_timeout: Option<Duration>,
    /// Most downstream connections open at once over all listeners; a connection
    /// accepted beyond it is closed at once (Envoy's overload manager
    /// `global_downstream_max_connections`). Never zero.
    pub max_downstream_connections: usize,
    /// Requests an HTTP/2 client may abandon (reset, or close before the response
    /// ended) on one connection before it is closed with GOAWAY, counted over the
    /// connection's life; the budget grows by one for every two requests that end
    /// normally, so a client that cancels now and then is not cut off.
    pub max_abandoned_requests: u32,
    /// HTTP/2 streams reset by the client before the proxy accepted them, at once
    /// (h2's `max_pending_accept_reset_streams`); more and the connection is closed
    /// with `ENHANCE_YOUR_CALM`.
    pub max_pending_accept_reset_streams: usize,
    /// HTTP/2 streams the proxy itself may reset for protocol errors on one connection
    /// (h2's `max_local_error_reset_streams`) before the connection is closed.
    pub max_local_error_reset_streams: usize,
    /// Most concurrent HTTP/2 streams per connection (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_concurrent_streams: u32,
    /// How long a peer proxy has to send the transport header of an inbound
    /// connection (10 s); then the connection is closed, logged and recorded `DPE`.
    pub transport_header_timeout: Duration,
    /// How long a downstream HTTP connection may have no request in flight before it
    /// is closed (HTTP/2 with GOAWAY). Envoy's `idle_timeout` of the HTTP connection
    /// manager, 1 h by default. (An idle HTTP/1 connection meets
    /// [`Limits::request_head_timeout`] first.) `None`: no limit.
    pub idle_timeout: Option<Duration>,
    /// How long an opaque TCP connection may carry no byte either way before both
    /// sides are closed: Envoy's TCP proxy `idle_timeout`, 1 h by default. `None`: no
    /// limit.
    pub tcp_idle_timeout: Option<Duration>,
    /// How long a request (an HTTP/2 stream, or an HTTP/1 request in flight) may see no
    /// byte of its request or response body move, either way, before it is ended:
    /// Envoy's `stream_idle_timeout`, 5 min by default. Before the response has begun
    /// the client gets `408` ("stream timeout"); after, the stream is reset (HTTP/1:
    /// the connection closed). Either way the record's flag is `SI`. `None`: no limit.
    /// It applies to gateway listeners, and to the sidecar's too when
    /// [`Limits::stream_idle_on_sidecars`] says so.
    pub stream_idle_timeout: Option<Duration>,
    /// Whether [`Limits::stream_idle_timeout`] applies to the sidecar listeners
    /// (outbound and inbound) as well as to gateways. Off by default: Istio's generated
    /// config has no stream idle timeout, and quiet long-lived gRPC streams between
    /// workloads are common; a gateway faces clients the mesh does not know, and
    /// Envoy's advice for an edge proxy is a stream idle timeout.
    pub stream_idle_on_sidecars: bool,
    /// Resident memory of the process above which new downstream connections are
    /// refused (closed at once) until it falls below 95% of this: the memory half of
    /// the overload manager (Envoy's `overload.resource_monitors` fixed heap). Sampled
    /// once a second. `None` (the default, as in Istio): no threshold.
    pub max_memory_bytes: Option<u64>,
}

/// Default for [`Limits::idle_timeout`] and [`Limits::tcp_idle_timeout`]: 1 h, as
/// Envoy.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Default for [`Limits::stream_idle_timeout`] on gateways: 5 min, as Envoy.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Default for [`Limits::max_request_headers_bytes`]: 60 KiB, as Envoy.
pub const DEFAULT_MAX_REQUEST_HEADERS_BYTES: usize = 60 * 1024;
/// Default for [`Limits::max_request_headers`]: 100, as Envoy.
pub const DEFAULT_MAX_REQUEST_HEADERS: usize = 100;
/// Default for [`Limits::request_head_timeout`]: 30 s.
pub const DEFAULT_REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`Limits::max_downstream_connections`] when the open-file limit is not
/// known.
pub const DEFAULT_MAX_DOWNSTREAM_CONNECTIONS: usize = 100_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_headers_bytes: DEFAULT_MAX_REQUEST_HEADERS_BYTES,
            max_request_headers: DEFAULT_MAX_REQUEST_HEADERS,
            request_head_timeout: Some(DEFAULT_REQUEST_HEAD_TIMEOUT),
            max_downstream_connections: DEFAULT_MAX_DOWNSTREAM_CONNECTIONS,
            max_abandoned_requests: 100,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            max_concurrent_streams: 200,
            transport_header_timeout: Duration::from_secs(10),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            tcp_idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            stream_idle_timeout: Some(DEFAULT_STREAM_IDLE_TIMEOUT),
            stream_idle_on_sidecars: false,
            max_memory_bytes: None,
        }
    }
}

/// The default downstream connection cap for a process allowed `open_files`
/// descriptors: half of them (each proxied connection holds one downstream and one
/// upstream descriptor), less a reserve for listeners, the control plane and logs.
pub fn connections_for_open_files(open_files: u64) -> usize {
    let half = open_files.saturating_sub(64) / 2;
    usize::try_from(half).unwrap_or(usize::MAX).max(16)
}

/// The count of open downstream connections, shared by every listener of a proxy.
#[derive(Debug, Default)]
pub(crate) struct ConnectionCount {
    open: Arc<AtomicUsize>,
    /// Set while the process is over [`Limits::max_memory_bytes`].
    over_memory: AtomicBool,
    /// When a refusal was last logged (seconds since the proxy started), so that a
    /// flood yields a line a second, not one per connection.
    last_warned: AtomicU64,
}

/// One open downstream connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionCount {
    /// A place for one more connection, unless `max` are open or the process is over
    /// its memory threshold.
    pub(crate) fn try_open(&self, max: usize) -> Option<ConnectionSlot> {
        if self.over_memory.load(Ordering::Relaxed) {
            return None;
        }
        let prev = self.open.fetch_add(1, Ordering::Relaxed);
        if prev >= max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(ConnectionSlot(self.open.clone()))
    }

    /// Whether new connections are refused for memory.
    pub(crate) fn over_memory(&self) -> bool {
        self.over_memory.load(Ordering::Relaxed)
    }

    /// Takes a reading of the process's resident memory against `max`: over it, new
    /// connections are refused; they are taken again below 95% of it. Returns whether
    /// the state changed.
    pub(crate) fn memory_reading(&self, rss: u64, max: u64) -> bool {
        let over = self.over_memory.load(Ordering::Relaxed);
        let now = if over {
            rss >= max / 20 * 19
        } else {
            rss > max
        };
        self.over_memory.store(now, Ordering::Relaxed);
        now != over
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Whether a refusal at `now_secs` should be logged (at most one a second).
    pub(crate) fn should_warn(&self, now_secs: u64) -> bool {
        let last = self.last_warned.load(Ordering::Relaxed);
        now_secs != last
            && self
                .last_warned
                .compare_exchange(last, now_secs, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Per downstream connection: how many of its requests started, ended normally and
/// were abandoned by the client, for [`Limits::max_abandoned_requests`] and
/// [`Limits::idle_timeout`].
#[derive(Debug, Default)]
pub(crate) struct Abandoned {
    started: AtomicU64,
    finished: AtomicU64,
    abandoned: AtomicU64,
    over: tokio::sync::Notify,
}

impl Abandoned {
    /// Counts a request that started.
    pub(crate) fn start(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests started and requests ended, in that order.
    fn tally(&self) -> (u64, u64) {
        let started = self.started.load(Ordering::Relaxed);
        let ended = self.finished.load(Ordering::Relaxed) + self.abandoned.load(Ordering::Relaxed);
        (started, ended)
    }

    /// Resolves once the connection has had no request in flight, and none start or
    /// end, for `timeout`: [`idle`] over the request tally.
    pub(crate) async fn idle(&self, timeout: Duration) {
        idle(timeout, || {
            let (started, ended) = self.tally();
            (started == ended).then_some(started)
        })
        .await
    }

    /// Counts a finished request; `abandoned` when the client went away before its
    /// response ended. Wakes [`Abandoned::exceeded`] when the budget is spent.
    pub(crate) fn count(&self, abandoned: bool, max: u32) {
        if !abandoned {
            self.finished.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let n = self.abandoned.fetch_add(1, Ordering::Relaxed) + 1;
        let budget = u64::from(max) + self.finished.load(Ordering::Relaxed) / 2;
        if n > budget {
            self.over.notify_one();
        }
    }

    /// Resolves once the client abandoned more requests than its budget allows.
    pub(crate) async fn exceeded(&self) {
        self.over.notified().await
    }
}

/// The resident memory of this process in bytes (`VmRSS` of `/proc/self/status`), or
/// `None` where it cannot be read.
pub(crate) fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resolves once `quiet` has returned the same `Some` value for a whole `timeout`.
/// `quiet` says whether nothing is in flight and, if so, a count of all activity so
/// far. It is sampled four times a timeout, so what is busy pays no clock read or timer
/// of its own: the idle end comes between `timeout` and 1.25 × `timeout` after the
/// last activity.
pub(crate) async fn idle(timeout: Duration, mut quiet: impl FnMut() -> Option<u64>) {
    let period = timeout / 4;
    let mut seen = None;
    let mut still = 0;
    loop {
        tokio::time::sleep(period).await;
        let now = quiet();
        if now.is_some() && now == seen {
            still += 1;
            if still >= 4 {
                return;
            }
        } else {
            seen = now;
            still = 0;
        }
    }
}

/// The idle watch of one request, for [`Limits::stream_idle_timeout`]: one timer,
/// made when the request is forwarded and handed on to its response body, that wakes
/// four times a timeout and compares the request's activity (the body bytes that
/// passed either way) with what it saw the time before. Moving data pays nothing: no
/// clock read and no timer reset per frame. The stream is idle once the activity stood
/// still for four wakes in a row: between 1 and 1.25 timeouts after the last byte.
#[derive(Debug)]
pub(crate) struct StreamIdle {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    period: Duration,
    timeout: Duration,
    seen: u64,
    still: u8,
}

impl StreamIdle {
    /// A watch for a stream whose activity so far is `activity`.
    pub(crate) fn new(timeout: Duration, activity: u64) -> Self {
        let period = timeout / 4;
        StreamIdle {
            sleep: Box::pin(tokio::time::sleep(period)),
            period,
            timeout,
            seen: activity,
            still: 0,
        }
    }

    /// The timeout it watches for.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Notes activity that no byte count shows (the response head arrived).
    pub(crate) fn touch(&mut self) {
        self.still = 0;
    }

    /// Ready once the stream has been idle for the timeout, `activity` being its
    /// activity now. Registers the waker when not.
    pub(crate) fn poll_idle(
        &mut self,
        cx: &mut std::task::Context<'_>,
        activity: u64,
    ) -> std::task::Poll<()> {
        use std::future::Future as _;
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return std::task::Poll::Pending;
            }
            if activity == self.seen {
                self.still += 1;
                if self.still >= 4 {
                    return std::task::Poll::Ready(());
                }
            } else {
                self.seen = activity;
                self.still = 0;
            }
            // From now, not from the last deadline: a stream not polled for a while
            // (its reader stalled) is not judged on samples it never took.
            let next = tokio::time::Instant::now() + self.period;
            self.sleep.as_mut().reset(next);
        }
    }
}

#[cfg(test)]
mod tests;
