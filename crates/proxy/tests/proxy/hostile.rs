//! Hostile input, one test per probe: oversized and endless request heads, slow
//! clients, connection floods, RFC 9112 violations, bodies that lie or break off, and
//! HTTP/2 rapid reset. Each checks that the proxy answers as documented
//! (docs/security.md), and that normal requests still work afterwards.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use skiff_model::config::*;
use skiff_proxy::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

mod h2;
mod heads;
mod idle;
mod records;
mod stream_idle;

/// How long a probe waits for the proxy before the test fails (a safety net, not a
/// measured duration).
const PATIENCE: Duration = Duration::from_secs(10);

/// A proxy with one service `backend` on port 80, started with `limits`.
async fn proxy_with(limits: Limits) -> (TestProxy, Backend, IpAddr) {
    let ip = fresh_ip();
    let b = backend("backend", ip).await;
    let config = one_service(
        ip,
        vec![route("r", vec![], to("backend"))],
        vec![cluster("backend", Protocol::Http, vec![endpoint(b.addr)])],
    );
    let p = TestProxy::start_with(ip, |o| o.limits = limits).await;
    p.proxy.apply("1", config).unwrap();
    (p, b, ip)
}

/// Writes `bytes` (ignoring a write the proxy cut short by closing), then reads until
/// the proxy closes the connection; returns what it answered.
async fn exchange(proxy: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let _ = s.write_all(bytes).await;
    read_to_close(&mut s).await
}

/// Everything the proxy sends until it closes the connection (a reset counts as a
/// close).
async fn read_to_close(s: &mut TcpStream) -> String {
    read_to_close_within(s, PATIENCE).await
}

/// [`read_to_close`], waiting at most `limit` (of the test's clock).
async fn read_to_close_within(s: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .expect("the proxy kept the connection open");
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in `answer`.
fn status(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 response: {answer:?}"))
}

/// A normal request through the proxy still works.
async fn still_serves(p: &TestProxy) {
    let r = get(p.outbound(), "http://backend/").await;
    assert_eq!(r.status, 200, "{}", r.body);
}
