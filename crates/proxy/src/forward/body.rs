//! The two body types of the data path, without boxing: what goes upstream and what
//! goes back downstream. The downstream body also finishes the exchange when it ends:
//! it returns the upstream connection to its pool, ends the in-flight count and finishes
//! the record.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::ResponseFlag;
use crate::limits::StreamIdle;
use crate::record::{BodyBroke, BodyCounter, Record, grpc};
use crate::upstream::{InFlight, Pooled};

/// A request body on its way upstream.
#[derive(Debug)]
pub(crate) enum ReqBody {
    /// No body.
    Empty,
    /// The downstream's body, streamed and counted (bytes; gRPC messages).
    Incoming(Incoming, Option<BodyCounter>),
    /// A body read in full beforehand, so that a retry can send it again.
    Full(Option<Bytes>),
}

impl ReqBody {
    pub(crate) fn new(body: Incoming, counter: Option<BodyCounter>) -> Self {
        if body.is_end_stream() {
            ReqBody::Empty
        } else {
            ReqBody::Incoming(body, counter)
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ReqBody::Incoming(body, counter) => {
                let polled = Pin::new(body).poll_frame(cx);
                if let (Some(c), Poll::Ready(Some(r))) = (counter, &polled) {
                    match r {
                        Ok(frame) => {
                            if let Some(data) = frame.data_ref() {
                                c.data(data);
                            }
                        }
                        Err(e) => c.tally.broke(broke_how(e)),
                    }
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Full(data) => data.is_none(),
            ReqBody::Incoming(b, _) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ReqBody::Incoming(b, _) => b.size_hint(),
        }
    }
}

/// Bad chunked framing (hyper's decoder says invalid data or input) or a client that
/// went away (end of file, reset, anything else).
fn broke_how(e: &hyper::Error) -> BodyBroke {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
                    BodyBroke::BadFraming
                }
                _ => BodyBroke::Gone,
            };
        }
        source = s.source();
    }
    BodyBroke::Gone
}

#[derive(Debug)]
enum Inner {
    Full(Option<Bytes>),
    Upstream(Incoming),
}

/// A response body on its way downstream.
pub(crate) struct RespBody {
    inner: Inner,
    bytes: u64,
    /// A gRPC response's messages, counted as they pass.
    frames: Option<grpc::Frames>,
    pooled: Option<Pooled>,
    in_flight: Option<InFlight>,
    rec: Option<Box<Record>>,
    /// The route timeout, which covers the whole response as Envoy's does.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The stream idle timeout's watch, taken on from the request.
    idle: Option<StreamIdle>,
}

/// Why a response body stopped early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error(transparent)]
    Upstream(#[from] hyper::Error),
    #[error("route timeout expired while the response was streaming")]
    Timeout,
    #[error("stream idle timeout: no request or response bytes for {0:?}")]
    StreamIdle(std::time::Duration),
}

impl std::fmt::Debug for RespBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl RespBody {
    /// A body made here (errors, redirects, direct responses).
    pub(crate) fn full(bytes: Bytes, rec: Option<Box<Record>>) -> Self {
        RespBody {
            inner: Inner::Full((!bytes.is_empty()).then_some(bytes)),
            bytes: 0,
            frames: None,
            pooled: None,
            in_flight: None,
            rec,
            deadline: None,
            idle: None,
        }
    }

    /// The upstream's body, with what to release when it ends.
    pub(crate) fn upstream(
        body: Incoming,
        pooled: Option<Pooled>,
        in_flight: Option<InFlight>,
        rec: Option<Box<Record>>,
    ) -> Self {
        RespBody {
            inner: Inner::Upstream(body),
            bytes: 0,
            frames: rec
                .as_deref()
                .is_some_and(Record::is_grpc)
                .then(grpc::Frames::default),
            pooled,
            in_flight,
            rec,
            deadline: None,
            idle: None,
        }
    }

    /// Ends the body with an error (and flag `UT`) if it is not done by `deadline`.
    pub(crate) fn with_deadline(mut self, deadline: Option<tokio::time::Instant>) -> Self {
        if let Some(d) = deadline
            && !self.inner_done()
        {
            self.deadline = Some(Box::pin(tokio::time::sleep_until(d)));
        }
        self
    }

    /// Resets the stream (flag `SI`) when no byte of the request or the response
    /// moves for the stream idle timeout, `idle` counting since the request.
    pub(crate) fn with_idle(mut self, idle: Option<StreamIdle>) -> Self {
        if !self.inner_done() {
            self.idle = idle;
        }
        self
    }

    /// Bytes that moved either way so far: the stream's activity.
    fn activity(&self) -> u64 {
        self.bytes + self.rec.as_ref().map_or(0, |r| r.bytes_in())
    }

    fn inner_done(&self) -> bool {
        match &self.inner {
            Inner::Full(b) => b.is_none(),
            Inner::Upstream(b) => b.is_end_stream(),
        }
    }

    /// Releases the connection and writes the log line; idempotent.
    fn finish(&mut self, complete: bool) {
        if let Some(p) = self.pooled.take()
            && complete
        {
            p.release();
        }
        self.in_flight = None;
        if let Some(mut r) = self.rec.take() {
            if !complete && r.flag == ResponseFlag::None {
                r.flag = ResponseFlag::DownstreamConnectionTermination;
            }
            r.bytes_out = self.bytes;
            if let Some(f) = &self.frames {
                r.response_messages = f.messages;
            }
            r.finish();
        }
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Upstream(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(BodyError::from))),
        };
        if polled.is_pending()
            && let Some(d) = &mut this.deadline
            && d.as_mut().poll(cx).is_ready()
        {
            if let Some(e) = this.rec.as_deref_mut() {
                e.flag = ResponseFlag::UpstreamTimeout;
            }
            this.finish(false);
            return Poll::Ready(Some(Err(BodyError::Timeout)));
        }
        if polled.is_pending() && this.idle.is_some() {
            let activity = this.activity();
            if let Some(i) = &mut this.idle
                && i.poll_idle(cx, activity).is_ready()
            {
                let timeout = i.timeout();
                tracing::debug!(?timeout, "resetting the stream: stream idle timeout");
                if let Some(e) = this.rec.as_deref_mut() {
                    e.flag = ResponseFlag::StreamIdleTimeout;
                }
                this.idle = None;
                this.finish(false);
                return Poll::Ready(Some(Err(BodyError::StreamIdle(timeout))));
            }
        }
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                    if let Some(f) = &mut this.frames {
                        f.feed(d);
                    }
                } else if let Some(t) = frame.trailers_ref()
                    && let Some(r) = this.rec.as_deref_mut()
                    && r.is_grpc()
                    && let Some(code) = grpc::status_in(t)
                {
                    r.grpc_status = Some(code);
                }
                if this.inner_done() {
                    this.finish(true);
                }
            }
            Poll::Ready(None) => this.finish(true),
            Poll::Ready(Some(Err(_))) => {
                if let Some(e) = this.rec.as_deref_mut() {
                    e.flag = ResponseFlag::UpstreamConnectionTermination;
                }
                this.finish(false)
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner_done()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
            Inner::Upstream(b) => b.size_hint(),
        }
    }
}

impl Drop for RespBody {
    fn drop(&mut self) {
        let complete = self.inner_done();
        self.finish(complete);
    }
}
