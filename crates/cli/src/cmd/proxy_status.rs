//! `skiff proxy-status`: whether every proxy runs the config the control plane has
//! for it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use skiff_control::{ConfigStatus, Finding, KEPT_NOTE};
use skiff_xds::{ChangeRow, ChangeState, SyncRow, SyncStatus};

use super::admin::{self, Output};

/// How long to wait for the control plane.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Arguments of `skiff proxy-status`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The control plane's debug HTTP address.
    #[arg(long, default_value = "127.0.0.1:15014", env = "SKIFF_CONTROL_DEBUG")]
    control: SocketAddr,
    /// `table` (the default), or the sync table as `json` or `yaml`: one object per
    /// proxy, as `/debug/syncz` gives it (`lastChange.propagationMs` is the
    /// PROPAGATION column).
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: Output,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let body = runtime.block_on(fetch(args.control, "/debug/syncz"))?;
    let rows: Vec<SyncRow> = serde_json::from_slice(&body).with_context(|| {
        format!(
            "the control plane at {} answered /debug/syncz with something that is not a sync table",
            args.control
        )
    })?;
    if args.output != Output::Table {
        return admin::print_structured(args.output, &serde_json::to_value(&rows)?);
    }
    print!("{}", render(&rows));
    // The configuration's errors under the table: a proxy can be SYNCED with a config
    // that leaves a broken resource out, and this says which and why.
    let status = runtime
        .block_on(fetch(args.control, "/debug/configz"))
        .and_then(|body| {
            serde_json::from_slice::<ConfigStatus>(&body).with_context(|| {
                format!(
                    "the control plane at {} answered /debug/configz with something that is not a config status",
                    args.control
                )
            })
        });
    match status {
        Ok(status) => print!("{}", render_config(&status)),
        Err(error) => println!("(the configuration's status is unknown: {error:#})"),
    }
    Ok(())
}

/// The lines under the table: every error of the configuration with its file, line
/// and field, and which resources serve their last good version.
fn render_config(status: &ConfigStatus) -> String {
    let mut out = String::new();
    if status.errors.is_empty() {
        return out;
    }
    let kept: Vec<&Finding> = status
        .warnings
        .iter()
        .filter(|w| w.message.contains(KEPT_NOTE))
        .collect();
    out.push_str(&format!(
        "\nconfiguration errors in {} ({}): the resources they are in are left out, every other change is served\n",
        status.config_dir,
        status.errors.len()
    ));
    for error in &status.errors {
        out.push_str(&format!("  error: {error}\n"));
    }
    for finding in kept {
        out.push_str(&format!("  kept:  {finding}\n"));
    }
    out
}

/// GETs `path` from the debug endpoint and returns the body of a 200 answer.
pub(crate) async fn fetch(addr: SocketAddr, path: &str) -> anyhow::Result<Bytes> {
    let unreachable = || {
        format!(
            "cannot reach the control plane's debug endpoint at {addr}: is `skiff control` running? (use --control ADDR to point elsewhere)"
        )
    };
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .with_context(|| format!("{} (no answer within {TIMEOUT:?})", unreachable()))?
        .with_context(unreachable)?;
    if !status.is_success() {
        bail!(
            "the control plane at {addr} answered {path} with {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    Ok(body)
}

/// The table, one line per proxy.
fn render(rows: &[SyncRow]) -> String {
    let header = [
        "NAME",
        "NAMESPACE",
        "SENT",
        "ACKED",
        "STATUS",
        "AGE",
        "PROPAGATION",
    ];
    let lines: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let status = match (r.status, &r.nack) {
                (SyncStatus::Nack, Some(reason)) => format!("NACK: {reason}"),
                (status, _) => status.label().to_owned(),
            };
            [
                r.name.clone(),
                r.namespace.clone(),
                r.sent.clone().unwrap_or_else(|| "-".into()),
                r.acked.clone().unwrap_or_else(|| "-".into()),
                status,
                r.last_push_age_ms.map_or_else(|| "-".into(), age),
                r.last_change
                    .as_ref()
                    .map_or_else(|| "-".into(), propagation),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push_line = |cells: &[&str]| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 3;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    };
    push_line(&header);
    for line in &lines {
        let cells: Vec<&str> = line.iter().map(String::as_str).collect();
        push_line(&cells);
    }
    if rows.is_empty() {
        out.push_str(
            "(no proxies: the control plane's snapshot is empty and no proxy is connected)\n",
        );
    }
    out
}

/// How the newest config change that affected the proxy reached it: the time from the
/// change seen to the proxy's ACK (`120ms`, `1.4s`), or where it stands
/// (`waiting:3s` since the change was seen, `nack`, `disconnected`, `expired`).
fn propagation(change: &ChangeRow) -> String {
    match (change.state, change.propagation_ms) {
        (ChangeState::Applied, Some(ms)) => precise(ms),
        (ChangeState::Applied, None) => "applied".into(),
        (ChangeState::Waiting, _) => format!("waiting:{}", age(change.seen_age_ms)),
        (ChangeState::Nack, _) => "nack".into(),
        (ChangeState::Disconnected, _) => "disconnected".into(),
        (ChangeState::Expired, _) => "expired".into(),
    }
}

/// `850ms`, `1.4s`, `42.0s`, then as [`age`].
fn precise(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => age(ms),
    }
}

/// `850ms`, `12s`, `3m4s`, `2h3m`, `5d4h`.
fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests;
