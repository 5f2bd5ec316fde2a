//! The record: one value per finished HTTP request or TCP connection.
//!
//! A record is started when a request (or a TCP connection) is first seen, filled in by
//! the phases it passes through (route, cluster, upstream host, status, response flag,
//! bytes) and finished exactly once: when the response body ends, when the request is
//! dropped (the client went away: `DC`), or when the TCP connection closes. Finishing
//! hands it to its writers — the metrics, the access log and the ring of recent
//! failures (`failures.rs`), the traces (`trace.rs`) — and every
//! request is recorded whether or not a writer is on. The connection context it holds
//! gives the writers the downstream address and both identities without copying them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use http::{HeaderValue, Method, Uri, Version};

use crate::ResponseFlag;

const X_REQUEST_ID: &str = "x-request-id";
use crate::conn::Conn;
use crate::upstream::EndpointState;

pub(crate) mod grpc;

/// How many request body bytes the downstream sent.
#[derive(Debug)]
pub(crate) enum BytesIn {
    /// No body; for TCP, counted by the copy loop.
    Known(u64),
    /// Counted as the body streams (whatever its declared length).
    Counted(Arc<BodyTally>),
}

/// A request body as it streamed: the bytes that passed, and whether the downstream
/// broke it off.
#[derive(Debug, Default)]
pub(crate) struct BodyTally {
    pub(crate) bytes: AtomicU64,
    /// gRPC messages begun (only a gRPC request's body counts them).
    pub(crate) messages: AtomicU64,
    broke: AtomicU8,
}

/// What counts a request body as it streams: its tally and, for gRPC, its messages.
#[derive(Debug)]
pub(crate) struct BodyCounter {
    pub(crate) tally: Arc<BodyTally>,
    pub(crate) frames: Option<grpc::Frames>,
}

impl BodyCounter {
    /// Counts one data frame.
    pub(crate) fn data(&mut self, data: &[u8]) {
        self.tally
            .bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if let Some(f) = &mut self.frames {
            f.feed(data);
            self.tally.messages.store(f.messages, Ordering::Relaxed);
        }
    }
}

/// How a downstream request body broke off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyBroke {
    /// The client went away (or stopped) before the body ended.
    Gone,
    /// The body's framing (chunked encoding) was invalid.
    BadFraming,
}

impl BodyTally {
    /// Notes that the body broke off.
    pub(crate) fn broke(&self, how: BodyBroke) {
        let v = match how {
            BodyBroke::Gone => 1,
            BodyBroke::BadFraming => 2,
        };
        self.broke.store(v, Ordering::Relaxed);
    }

    fn how(&self) -> Option<BodyBroke> {
        match self.broke.load(Ordering::Relaxed) {
            1 => Some(BodyBroke::Gone),
            2 => Some(BodyBroke::BadFraming),
            _ => None,
        }
    }
}

/// The head of an HTTP request, as the record keeps it.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) host: Option<HeaderValue>,
    /// `content-type: application/grpc…`: `request_protocol` is `grpc`.
    pub(crate) grpc: bool,
    /// The headers Istio's access-log formats show, when one is on.
    pub(crate) istio: Option<Box<crate::access_log::istio::Headers>>,
    /// Every request header, only while an access-log filter reads them.
    pub(crate) headers: Option<Box<http::HeaderMap>>,
}

impl RequestHead {
    /// The authority: from the URI, else the `Host` header.
    pub(crate) fn authority(&self) -> Option<&str> {
        match (self.uri.authority(), &self.host) {
            (Some(a), _) => Some(a.as_str()),
            (None, Some(h)) => h.to_str().ok(),
            (None, None) => None,
        }
    }
}

/// One HTTP request or TCP connection, filled in as it goes.
#[derive(Debug)]
pub(crate) struct Record {
    /// The downstream connection it came on.
    pub(crate) conn: Arc<Conn>,
    /// Wall-clock start, for the log line.
    pub(crate) start: SystemTime,
    /// Monotonic start, for the duration.
    pub(crate) started: Instant,
    /// `None` for a TCP connection.
    pub(crate) request: Option<RequestHead>,
    /// The status sent downstream (0 for TCP, or when none was sent).
    pub(crate) status: u16,
    pub(crate) flag: ResponseFlag,
    pub(crate) bytes_in: BytesIn,
    pub(crate) bytes_out: u64,
    pub(crate) upstream: Option<Arc<EndpointState>>,
    pub(crate) route: Option<Arc<str>>,
    pub(crate) cluster: Option<Arc<str>>,
    /// The destination service, when the cluster's is known up front (else the
    /// metrics derive it from `cluster`).
    pub(crate) service: Option<Arc<crate::metrics::Service>>,
    /// A TCP connection already counted as opened by the metrics.
    pub(crate) tcp_opened: bool,
    /// Why the proxy refused or ended it, in words (as Envoy's response code details):
    /// "plaintext connection refused: PeerAuthentication prod/default is STRICT".
    pub(crate) details: Option<Arc<str>>,
    /// Upstream tries made (Envoy's `UPSTREAM_REQUEST_ATTEMPT_COUNT`); 0 when none.
    pub(crate) attempts: u32,
    /// The retry policy's attempts were used up (`URX`, beside the last failure's flag).
    pub(crate) retries_exhausted: bool,
    /// `x-request-id`: set when the request is forwarded (the value it went with) or,
    /// on the paths where the proxy answers itself, from the request. A shared handle
    /// on the header's bytes, not a copy.
    pub(crate) request_id: Option<HeaderValue>,
    /// The request's span, when it is sampled.
    pub(crate) span: Option<Box<crate::trace::Started>>,
    /// A gRPC response's `grpc-status` (trailers over headers), 0–16 or
    /// [`grpc::INVALID`]; `None` when none came.
    pub(crate) grpc_status: Option<u8>,
    /// gRPC messages of the response that passed downstream.
    pub(crate) response_messages: u64,
}

impl Record {
    fn new(conn: &Arc<Conn>, request: Option<RequestHead>, flag: ResponseFlag) -> Box<Record> {
        Box::new(Record {
            conn: conn.clone(),
            start: SystemTime::now(),
            started: Instant::now(),
            request,
            status: 0,
            flag,
            bytes_in: BytesIn::Known(0),
            bytes_out: 0,
            upstream: None,
            route: None,
            cluster: None,
            service: None,
            tcp_opened: false,
            details: None,
            attempts: 0,
            retries_exhausted: false,
            request_id: None,
            span: None,
            grpc_status: None,
            response_messages: 0,
        })
    }

    /// Starts the record of an HTTP request. Until something else is said, a request
    /// that is dropped was abandoned by its client (`DC`).
    pub(crate) fn http<B>(conn: &Arc<Conn>, req: &http::Request<B>) -> Pending {
        // Balanced by the count in `finish`: the connection's requests in flight.
        conn.abandoned.start();
        let head = RequestHead {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            host: req.headers().get(http::header::HOST).cloned(),
            grpc: req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc")),
            istio: conn
                .inputs
                .access_log
                .wants_headers()
                .then(|| crate::access_log::istio::Headers::of(req.headers())),
            headers: (conn.inputs.access_log.wants_all_headers()
                || conn
                    .inputs
                    .metrics
                    .as_ref()
                    .is_some_and(|m| m.wants_headers()))
            .then(|| Box::new(req.headers().clone())),
        };
        Pending(Some(Record::new(
            conn,
            Some(head),
            ResponseFlag::DownstreamConnectionTermination,
        )))
    }

    /// Starts the record of a TCP connection.
    pub(crate) fn tcp(conn: &Arc<Conn>) -> Box<Record> {
        Record::new(conn, None, ResponseFlag::None)
    }

    /// Request body bytes received.
    pub(crate) fn bytes_in(&self) -> u64 {
        match &self.bytes_in {
            BytesIn::Known(n) => *n,
            BytesIn::Counted(c) => c.bytes.load(Ordering::Relaxed),
        }
    }

    /// Whether this is a gRPC request (`content-type: application/grpc…`).
    pub(crate) fn is_grpc(&self) -> bool {
        self.request.as_ref().is_some_and(|h| h.grpc)
    }

    /// The code `grpc_response_status` shows, as Envoy's `getGrpcStatus` finds it:
    /// `None` (empty) for a request that is not gRPC or got no response at all.
    pub(crate) fn grpc_label(&self) -> Option<u8> {
        if !self.is_grpc() {
            return None;
        }
        self.grpc_status
            .or_else(|| (self.status != 0).then(|| grpc::from_http(self.status)))
    }

    /// gRPC messages of the request that passed upstream.
    pub(crate) fn request_messages(&self) -> u64 {
        match &self.bytes_in {
            BytesIn::Known(_) => 0,
            BytesIn::Counted(c) => c.messages.load(Ordering::Relaxed),
        }
    }

    /// Whether the downstream broke its request body off, and how.
    pub(crate) fn body_broke(&self) -> Option<BodyBroke> {
        match &self.bytes_in {
            BytesIn::Known(_) => None,
            BytesIn::Counted(c) => c.how(),
        }
    }

    /// Hands the finished record to its writers.
    pub(crate) fn finish(self: Box<Self>) {
        if let Some(m) = &self.conn.inputs.metrics {
            match &self.request {
                Some(head) => m.http(&self, head.grpc),
                None => m.tcp_closed(&self, self.tcp_opened),
            }
        }
        if self.request.is_some() {
            let gone = self.flag == ResponseFlag::DownstreamConnectionTermination;
            let max = self.conn.inputs.limits.max_abandoned_requests;
            self.conn.abandoned.count(gone, max);
        }
        self.conn.inputs.access_log.write(&self);
        self.conn.inputs.failures.write(&self);
        if let Some(s) = &self.span {
            crate::trace::finish(s, &self);
        }
    }
}

/// A record not finished yet. Dropping it finishes it, so a request whose future is
/// dropped (the client went away) is still recorded, flagged `DC`; handing it to the
/// response body ([`Pending::take`]) finishes it when the body ends.
#[derive(Debug, Default)]
pub(crate) struct Pending(Option<Box<Record>>);

impl Pending {
    /// Drops the record without logging it: the request is served again from the
    /// start.
    pub(crate) fn discard(mut self) {
        self.0 = None;
    }

    pub(crate) fn record(&mut self) -> Option<&mut Record> {
        self.0.as_deref_mut()
    }

    /// Request body bytes received so far (0 without a record).
    pub(crate) fn bytes_in(&self) -> u64 {
        self.0.as_ref().map_or(0, |r| r.bytes_in())
    }

    /// Sets status and flag. A delay injected earlier stays the flag unless something
    /// went wrong after it.
    pub(crate) fn respond(&mut self, status: u16, flag: ResponseFlag) {
        if let Some(r) = self.record() {
            r.status = status;
            if !(flag == ResponseFlag::None && r.flag == ResponseFlag::DelayInjected) {
                r.flag = flag;
            }
        }
    }

    /// Notes how the upstream tries went.
    pub(crate) fn tries(&mut self, attempts: u32, exhausted: bool) {
        if let Some(r) = self.record() {
            r.attempts = attempts;
            r.retries_exhausted = exhausted;
        }
    }

    /// Notes the request's `x-request-id`, for the ring of failures. Called where the
    /// proxy answers a request itself (cold paths); a forwarded request's id is noted
    /// as it is forwarded.
    pub(crate) fn note_request_id(&mut self, headers: &http::HeaderMap) {
        if let Some(r) = self.record()
            && r.request_id.is_none()
        {
            r.request_id = headers.get(X_REQUEST_ID).cloned();
        }
    }

    /// Hands the record to the response body, which finishes it when the body is done.
    pub(crate) fn take(&mut self) -> Option<Box<Record>> {
        self.0.take()
    }

    /// The tally of a request body, counted as it streams (a declared length is what
    /// the client promised, not what arrived).
    pub(crate) fn count_body<B: http_body::Body>(&mut self, body: &B) -> Option<BodyCounter> {
        let r = self.record()?;
        if body.is_end_stream() {
            return None;
        }
        let c = Arc::new(BodyTally::default());
        r.bytes_in = BytesIn::Counted(c.clone());
        Some(BodyCounter {
            tally: c,
            frames: r.is_grpc().then(grpc::Frames::default),
        })
    }

    /// Notes the `grpc-status` of a gRPC response's headers (a trailers-only
    /// response's status is there).
    pub(crate) fn note_grpc_headers(&mut self, headers: &http::HeaderMap) {
        if let Some(r) = self.record()
            && r.is_grpc()
            && let Some(code) = grpc::status_in(headers)
        {
            r.grpc_status = Some(code);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            r.finish();
        }
    }
}
