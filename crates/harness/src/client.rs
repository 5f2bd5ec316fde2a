//! Requests as a workload's app sends them, and as a proxy without mutual TLS would.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How long one request may take before the harness calls it failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A response, read to the end.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: StatusCode,
    /// The response headers (the test app's are in [`crate::header`]).
    pub headers: HeaderMap,
    /// The body, as text.
    pub body: String,
}

impl Reply {
    /// A header's value as text, `""` when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// One request on a new connection to `proxy` (an outbound listener), in absolute
/// form, as an app with `HTTP_PROXY` set sends it.
pub(crate) async fn send(proxy: SocketAddr, method: Method, url: &str) -> anyhow::Result<Reply> {
    send_with(proxy, method, url, &[]).await
}

/// As [`send`], with extra request headers.
pub(crate) async fn send_with(
    proxy: SocketAddr,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Reply> {
    let exchange = async {
        let stream = TcpStream::connect(proxy).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut req = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::<Bytes>::default())?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("{url} via {proxy}: no answer within {REQUEST_TIMEOUT:?}"))?
}

/// The transport header naming `port`, then a plain-text HTTP/1.1 request, to an
/// inbound listener; what came back until the server closed (empty: refused).
pub(crate) async fn plaintext(inbound: SocketAddr, port: u16) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(inbound).await?;
    let header = skiff_proxy::transport_header::TransportHeader { target_port: port }.encode();
    stream.write_all(&header).await?;
    // The server may refuse before reading the request: a failed write is an answer.
    let _ = stream
        .write_all(b"GET /plain HTTP/1.1\r\nhost: plain\r\nconnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(REQUEST_TIMEOUT, stream.read_to_end(&mut out)).await;
    if read.is_err() {
        anyhow::bail!(
            "plain text to {inbound} (port {port}): no answer and no close within {REQUEST_TIMEOUT:?}"
        );
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}
