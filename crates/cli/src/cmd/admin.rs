//! What the debugging commands share: plain HTTP GETs to the control plane's debug
//! endpoint and to proxies' admin endpoints, finding a workload's proxy through the
//! control plane's sync table, output formats and aligned tables.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use skiff_xds::SyncRow;

/// How long to wait for any one answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// How a command prints what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum Output {
    /// Aligned tables and sentences, for people.
    #[default]
    Table,
    /// JSON, for tools.
    Json,
    /// YAML.
    Yaml,
}

/// Prints `value` as JSON or YAML.
pub(crate) fn print_structured(output: Output, value: &serde_json::Value) -> anyhow::Result<()> {
    match output {
        Output::Yaml => print!("{}", serde_saphyr::to_string(value)?),
        _ => println!("{}", serde_json::to_string_pretty(value)?),
    }
    Ok(())
}

/// GETs `path` from `addr`; `what` names the other side in errors ("the control
/// plane", "the proxy of backend.prod").
pub(crate) async fn get(addr: SocketAddr, path: &str, what: &str) -> anyhow::Result<Bytes> {
    request(addr, hyper::Method::GET, path, what).await
}

/// Sends a request without a body; the body of a successful answer.
pub(crate) async fn request(
    addr: SocketAddr,
    method: hyper::Method,
    path: &str,
    what: &str,
) -> anyhow::Result<Bytes> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .with_context(|| format!("{what} at {addr} did not answer {path} within {TIMEOUT:?}"))?
        .with_context(|| format!("cannot reach {what} at {addr}"))?;
    if !status.is_success() {
        bail!(
            "{what} at {addr} answered {path} with {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    Ok(body)
}

/// GETs JSON from the control plane's debug endpoint.
pub(crate) async fn control_json<T: serde::de::DeserializeOwned>(
    control: SocketAddr,
    path: &str,
) -> anyhow::Result<T> {
    let body = get(control, path, "the control plane's debug endpoint")
        .await
        .context("is `skiff control` running? (use --control ADDR to point elsewhere)")?;
    serde_json::from_slice(&body).with_context(|| {
        format!("the control plane at {control} answered {path} with something unexpected")
    })
}

/// The proxies the control plane knows, with their admin addresses.
pub(crate) async fn proxies(control: SocketAddr) -> anyhow::Result<Vec<SyncRow>> {
    control_json(control, "/debug/syncz").await
}

/// A proxy's admin address, when it reported one.
pub(crate) fn admin_of(row: &SyncRow) -> Option<SocketAddr> {
    row.admin.as_deref()?.parse().ok()
}

/// The proxy of `workload`: `<name>.<namespace>`, or a name only one proxy has.
pub(crate) fn find<'r>(rows: &'r [SyncRow], workload: &str) -> anyhow::Result<&'r SyncRow> {
    let exact = rows.iter().find(|r| r.proxy == workload);
    let by_name: Vec<&SyncRow> = rows.iter().filter(|r| r.name == workload).collect();
    let row = match (exact, by_name.as_slice()) {
        (Some(r), _) => r,
        (None, [r]) => *r,
        (None, []) => {
            let known: Vec<&str> = rows.iter().map(|r| r.proxy.as_str()).collect();
            bail!(
                "the control plane knows no proxy {workload:?}; its proxies: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        }
        (None, many) => {
            let ids: Vec<&str> = many.iter().map(|r| r.proxy.as_str()).collect();
            bail!(
                "{workload:?} names several proxies: {}; write <name>.<namespace>",
                ids.join(", ")
            )
        }
    };
    if !row.connected {
        bail!(
            "the proxy {} is not connected to the control plane",
            row.proxy
        );
    }
    Ok(row)
}

/// The admin address of `row`'s proxy, or why there is none.
pub(crate) fn admin_addr(row: &SyncRow) -> anyhow::Result<SocketAddr> {
    admin_of(row).with_context(|| {
        format!(
            "the proxy {} did not tell the control plane where its admin endpoint is (a proxy older than this CLI?)",
            row.proxy
        )
    })
}

/// GETs JSON from a proxy's admin endpoint.
pub(crate) async fn proxy_json(row: &SyncRow, path: &str) -> anyhow::Result<serde_json::Value> {
    let addr = admin_addr(row)?;
    let body = get(addr, path, &format!("the proxy of {}", row.proxy)).await?;
    serde_json::from_slice(&body).with_context(|| {
        format!(
            "the proxy {} answered {path} with something that is not JSON",
            row.proxy
        )
    })
}

/// A one-thread runtime for a command.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// An aligned table: the header, then one line per row, columns three spaces apart.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            text.push_str(cell);
            let pad = widths[i].saturating_sub(cell.chars().count()) + 3;
            text.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// A serialized value in one word: a string as it is, anything else as compact JSON.
pub(crate) fn word(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
