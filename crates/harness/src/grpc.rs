//! gRPC as the test apps speak it: length-prefixed messages over HTTP/2, with the
//! status in the trailers (or, trailers-only, in the headers).
//!
//! The app answers a request with `content-type: application/grpc` on any path: it
//! reads the caller's messages to the end, then sends [`REPLIES`] messages (default:
//! as many as it read) and the status [`STATUS`] (default 0) in the trailers; with
//! [`TRAILERS_ONLY`] it sends no message and the status in the headers. Each reply
//! goes out split over two data frames, so a message spans frames.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// Request metadata: how many messages the app answers with.
pub const REPLIES: &str = "x-test-replies";
/// Request metadata: the `grpc-status` the app ends with.
pub const STATUS: &str = "x-test-grpc-status";
/// Request metadata: answer trailers-only (no message, the status in the headers).
pub const TRAILERS_ONLY: &str = "x-test-trailers-only";

/// Whether a request is gRPC (`content-type: application/grpc…`).
pub(crate) fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// One message, length-prefixed (not compressed).
pub fn frame(message: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + message.len());
    b.extend_from_slice(&[0]);
    b.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    b.extend_from_slice(message);
    b.freeze()
}

/// The messages of a whole body; an error for a body cut inside a message.
pub fn messages(mut body: Bytes) -> anyhow::Result<Vec<Bytes>> {
    let mut out = Vec::new();
    while !body.is_empty() {
        anyhow::ensure!(body.len() >= 5, "a message prefix cut short");
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        body.advance(5);
        anyhow::ensure!(body.len() >= len, "a message cut short");
        out.push(body.split_to(len));
    }
    Ok(out)
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The app's answer to a gRPC request.
pub(crate) async fn answer(req: Request<Incoming>) -> Response<BoxBody<Bytes, Infallible>> {
    let status = header(&req, STATUS).unwrap_or("0").to_owned();
    let trailers_only = header(&req, TRAILERS_ONLY).is_some();
    let replies: Option<usize> = header(&req, REPLIES).and_then(|n| n.parse().ok());
    let got = match req.into_body().collect().await {
        Ok(b) => messages(b.to_bytes()).map_or(0, |m| m.len()),
        Err(_) => 0,
    };
    let head = Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/grpc");
    if trailers_only {
        return head
            .header("grpc-status", status)
            .body(Empty::new().boxed())
            .unwrap_or_default();
    }
    let replies = replies.unwrap_or(got);
    let mut trailers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&status) {
        trailers.insert("grpc-status", v);
    }
    let mut body = Frames::default();
    for i in 0..replies {
        body.split(frame(format!("reply {i}").as_bytes()), 3);
    }
    body.0.push_back(Frame::trailers(trailers));
    head.body(body.boxed()).unwrap_or_default()
}

/// A body of frames given beforehand, each sent as its own frame.
#[derive(Debug, Default)]
struct Frames(std::collections::VecDeque<Frame<Bytes>>);

impl Frames {
    /// Adds `data` as two frames, the first of `at` bytes.
    fn split(&mut self, mut data: Bytes, at: usize) {
        let first = data.split_to(at.min(data.len()));
        self.0.push_back(Frame::data(first));
        if !data.is_empty() {
            self.0.push_back(Frame::data(data));
        }
    }
}

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a gRPC call got back.
#[derive(Debug)]
pub struct GrpcReply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The messages, in order.
    pub messages: Vec<Bytes>,
    /// The trailers, if any came.
    pub trailers: Option<HeaderMap>,
}

impl GrpcReply {
    /// The call's `grpc-status`: the trailers', else the headers' (trailers-only).
    pub fn grpc_status(&self) -> Option<&str> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| self.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
    }
}

/// One gRPC call over a new HTTP/2 connection (prior knowledge) to `proxy`: `url`
/// (its authority routes it), `requests` sent as messages each split over two data
/// frames, `metadata` as extra request headers.
pub(crate) async fn call(
    proxy: SocketAddr,
    url: &str,
    requests: &[&[u8]],
    metadata: &[(&str, &str)],
) -> anyhow::Result<GrpcReply> {
    let exchange = async {
        let stream = TcpStream::connect(proxy).await?;
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await?;
        tokio::spawn(conn);
        let mut body = Frames::default();
        for m in requests {
            body.split(frame(m), 4);
        }
        let mut req = Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header("te", "trailers");
        for (k, v) in metadata {
            req = req.header(*k, *v);
        }
        let resp = sender.send_request(req.body(body)?).await?;
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await?;
        let trailers = collected.trailers().cloned();
        anyhow::Ok(GrpcReply {
            status: parts.status,
            headers: parts.headers,
            messages: messages(collected.to_bytes())?,
            trailers,
        })
    };
    let limit = Duration::from_secs(10);
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("gRPC {url} via {proxy}: no answer within {limit:?}"))?
}
