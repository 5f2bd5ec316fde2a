//! Calling the target service: URL parsing, the HTTP proxy from the environment, and a
//! pooled HTTP/1.1 client that speaks absolute-form to that proxy.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::header::{HeaderMap, HeaderName};
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// Request headers copied from the incoming request to the calls to the targets: those
/// Istio's Bookinfo productpage propagates (the request id, every trace context it
/// knows, `user-agent`, `cookie`, `authorization`, `jwt`), `end-user` (which
/// productpage sets for a signed-in user and Istio's routing tasks match on), and the
/// canary marker of skiff's own demo; so routing rules and traces follow a request from
/// hop to hop.
pub(super) const FORWARDED_HEADERS: &[&str] = &[
    "end-user",
    "x-canary",
    "x-request-id",
    // W3C Trace Context.
    "traceparent",
    "tracestate",
    // B3 (Zipkin), single and multi header.
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    // Lightstep, Datadog, Google Cloud, gRPC binary, SkyWalking.
    "x-ot-span-context",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "sw8",
    // The user and their session.
    "user-agent",
    "cookie",
    "authorization",
    "jwt",
];

/// Largest target answer read; a longer one is an error.
const MAX_ANSWER: usize = 1 << 20;

/// The service to call: an `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    uri: Uri,
}

impl Target {
    /// Parses `http://host[:port][/path]`, or the same without the scheme.
    pub(super) fn parse(raw: &str) -> anyhow::Result<Target> {
        let with_scheme = if raw.contains("://") {
            raw.to_owned()
        } else {
            format!("http://{raw}")
        };
        let uri: Uri = with_scheme
            .parse()
            .with_context(|| format!("--target {raw:?} is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!(
                "--target {raw:?}: scheme {other} is not supported, use http:// (the mesh adds TLS between proxies)"
            ),
            None => bail!("--target {raw:?} has no scheme"),
        }
        if uri.host().is_none_or(str::is_empty) {
            bail!("--target {raw:?} has no host");
        }
        // `http://host` has no path; ask for `/` like a browser does.
        let uri = if uri.path_and_query().is_none() {
            format!("{with_scheme}/").parse()?
        } else {
            uri
        };
        Ok(Target { uri })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.uri.fmt(f)
    }
}

/// Reads the proxy from `HTTP_PROXY`, then `http_proxy`. Returns `host:port`.
pub(super) fn proxy_from(vars: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<String>> {
    let Some((var, value)) = ["HTTP_PROXY", "http_proxy"]
        .into_iter()
        .find_map(|var| vars(var).filter(|v| !v.trim().is_empty()).map(|v| (var, v)))
    else {
        return Ok(None);
    };
    let value = value.trim();
    let with_scheme = if value.contains("://") {
        value.to_owned()
    } else {
        format!("http://{value}")
    };
    let uri: Uri = with_scheme
        .parse()
        .with_context(|| format!("{var}={value:?} is not a proxy URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("{var}={value:?}: only http:// proxies are supported");
    }
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        bail!("{var}={value:?} has no host");
    };
    Ok(Some(format!("{host}:{}", uri.port_u16().unwrap_or(80))))
}

/// A pooled HTTP/1.1 client for the target, direct or through the HTTP proxy.
#[derive(Debug, Clone)]
pub(super) struct TargetClient {
    client: Client<Connector, Empty<Bytes>>,
    proxy: Option<Arc<str>>,
    timeout: Duration,
}

impl TargetClient {
    /// A client that uses the proxy set in the environment, if any.
    pub(super) fn from_env(timeout: Duration) -> anyhow::Result<TargetClient> {
        let proxy = proxy_from(|var| std::env::var(var).ok())?;
        for var in ["NO_PROXY", "no_proxy"] {
            if std::env::var_os(var).is_some() {
                tracing::warn!(
                    var,
                    "{var} is set but sample-app does not read it: every target call goes through the proxy"
                );
            }
        }
        Ok(TargetClient::new(proxy, timeout))
    }

    /// A client through `proxy` (`host:port`), or direct when `None`.
    pub(super) fn new(proxy: Option<String>, timeout: Duration) -> TargetClient {
        let proxy: Option<Arc<str>> = proxy.map(Arc::from);
        let connector = Connector {
            proxy: proxy.clone(),
        };
        let client = Client::builder(TokioExecutor::new()).build(connector);
        TargetClient {
            client,
            proxy,
            timeout,
        }
    }

    /// The proxy in use (`host:port`), if any.
    pub(super) fn proxy(&self) -> Option<&str> {
        self.proxy.as_deref()
    }

    /// GETs the target, copying [`FORWARDED_HEADERS`] from `incoming`. A non-2xx
    /// answer is an error that carries the status and the body (its first line on the
    /// error's line, the rest indented below).
    pub(super) async fn call(
        &self,
        target: &Target,
        incoming: &HeaderMap,
    ) -> anyhow::Result<String> {
        let mut request = Request::get(target.uri.clone()).body(Empty::new())?;
        for name in FORWARDED_HEADERS {
            let name = HeaderName::from_static(name);
            for value in incoming.get_all(&name) {
                request.headers_mut().append(name.clone(), value.clone());
            }
        }
        let via = match &self.proxy {
            Some(proxy) => format!(" via proxy {proxy}"),
            None => String::new(),
        };
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
                .to_bytes();
            anyhow::Ok((status, body))
        };
        let (status, body) = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                let mut reason = error.to_string();
                let mut source = error.source();
                while let Some(inner) = source {
                    reason.push_str(": ");
                    reason.push_str(&inner.to_string());
                    source = inner.source();
                }
                bail!("calling {target}{via}: {reason}");
            }
            Err(_) => bail!("calling {target}{via}: no answer within {:?}", self.timeout),
        };
        let text = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            // The first line names the failure; the rest (a nested sample app's
            // answer) follows, indented, so a failure deep in a chain shows where.
            let mut lines = text.lines();
            let first_line = lines.next().unwrap_or("").trim();
            let rest: String = lines.map(|l| format!("\n  {l}")).collect();
            bail!("{target}{via} answered {status}: {first_line}{rest}");
        }
        Ok(text)
    }
}

/// Opens TCP connections to the proxy when there is one, else to the URI's authority.
#[derive(Debug, Clone)]
struct Connector {
    proxy: Option<Arc<str>>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (address, proxied) = match &self.proxy {
            Some(proxy) => (proxy.to_string(), true),
            None => (
                format!(
                    "{}:{}",
                    uri.host().unwrap_or_default(),
                    uri.port_u16().unwrap_or(80)
                ),
                false,
            ),
        };
        Box::pin(async move {
            let tcp = TcpStream::connect(&address)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("connect to {address}: {e}")))?;
            tcp.set_nodelay(true)?;
            Ok(Stream {
                io: TokioIo::new(tcp),
                proxied,
            })
        })
    }
}

/// A TCP connection that tells the client whether it leads to a proxy; through a proxy
/// the client keeps the request URI in absolute form (`GET http://host/path`).
#[derive(Debug)]
struct Stream {
    io: TokioIo<TcpStream>,
    proxied: bool,
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new().proxy(self.proxied)
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
