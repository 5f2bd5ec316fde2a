//! `skiff explain REQUEST_ID` and `skiff explain --last`: why a request failed, after
//! the fact.
//!
//! Every proxy keeps a ring of its recent failed requests (admin `GET /failures`). This
//! asks every proxy the control plane knows, gathers the hops of the request (same
//! `x-request-id`), picks the hop that failed (the one whose proxy raised a response
//! flag or said why, the deepest such hop when several did), and names the response
//! flag and the configuration object responsible, with file:line and the fix (see
//! `explain/why.rs`). The configuration is read from the directory the control plane
//! serves (`/debug/configz`), or `--config DIR`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::Value;
use skiff_control::ConfigStatus;

use super::admin::{self, Output};

mod provenance;
mod simulate;
mod why;

pub(crate) use provenance::Provenance;
pub(crate) use why::{Explanation, explain};

/// Arguments of `skiff explain`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The request's `x-request-id`. The proxies give one to every request that has
    /// none but, as Istio's sidecars, do not send it back to the client (not even on
    /// the answers they make themselves: 404 NR, 503 UH, 403 RBAC), so send your own
    /// with `curl -H 'x-request-id: ...'` to know it, or use `--last`. With `--from`,
    /// the URL to simulate: `http://HOST[:PORT]/PATH`.
    #[arg(
        value_name = "REQUEST_ID|URL",
        required_unless_present = "last",
        conflicts_with = "last"
    )]
    request_id: Option<String>,
    /// Simulate the request as this workload's app would send it (`<name>.<namespace>`),
    /// through the compiled configuration, without sending it.
    #[arg(long, value_name = "WORKLOAD", conflicts_with = "last")]
    from: Option<String>,
    /// With `--from`: the method.
    #[arg(
        short = 'X',
        long = "request",
        default_value = "GET",
        requires = "from"
    )]
    method: String,
    /// With `--from`: a request header, `name:value` (repeatable).
    #[arg(
        short = 'H',
        long = "header",
        value_name = "NAME:VALUE",
        requires = "from"
    )]
    headers: Vec<String>,
    /// Explain the most recent failed request any proxy saw (for a request sent
    /// without an `x-request-id` of its own).
    #[arg(long)]
    last: bool,
    /// The configuration directory to name objects from (default: the one the control
    /// plane serves).
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// The control plane's debug HTTP address.
    #[arg(long, default_value = "127.0.0.1:15014", env = "SKIFF_CONTROL_DEBUG")]
    control: SocketAddr,
}

/// One proxy's record of the request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Hop {
    /// The proxy that recorded it.
    pub(crate) proxy: String,
    /// Its record, as `/failures` gave it.
    pub(crate) failure: Value,
}

impl Hop {
    pub(crate) fn field(&self, key: &str) -> Option<&str> {
        self.failure.get(key).and_then(Value::as_str)
    }

    fn start_ms(&self) -> u64 {
        self.failure["startMs"].as_u64().unwrap_or(0)
    }

    /// What the proxy said of it: 2 for a response flag, 1 for details only.
    fn blame(&self) -> u8 {
        let flag = self.field("flag").is_some_and(|f| f != "-");
        let details = self.field("details").is_some();
        u8::from(flag) * 2 + u8::from(details)
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = admin::runtime()?;
    if let Some(from) = &args.from {
        let config_dir = match &args.config {
            Some(dir) => dir.clone(),
            None => {
                let status: ConfigStatus = runtime
                    .block_on(admin::control_json(args.control, "/debug/configz"))
                    .context("without --config DIR the configuration is the control plane's")?;
                PathBuf::from(status.config_dir)
            }
        };
        let provenance = Provenance::load(&config_dir)
            .with_context(|| format!("reading the configuration in {}", config_dir.display()))?;
        let request = simulate::Request {
            from: from.clone(),
            method: args.method.clone(),
            url: args.request_id.clone().unwrap_or_default(),
            headers: args.headers.clone(),
        };
        let result = runtime.block_on(simulate::simulate(&provenance, &request))?;
        if args.output == Output::Table {
            print!("{}", simulate::render(&result));
        } else {
            admin::print_structured(args.output, &result)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (hops, unreachable, config_dir) = runtime.block_on(async {
        let rows = admin::proxies(args.control).await?;
        let mut hops = Vec::new();
        let mut unreachable = Vec::new();
        for row in rows.iter().filter(|r| r.connected) {
            match admin::proxy_json(row, "/failures").await {
                Ok(v) => hops.extend(admin_failures(&row.proxy, &v)),
                Err(e) => unreachable.push(format!("{}: {e:#}", row.proxy)),
            }
        }
        let config_dir = match &args.config {
            Some(dir) => dir.clone(),
            None => {
                let status: ConfigStatus =
                    admin::control_json(args.control, "/debug/configz").await?;
                PathBuf::from(status.config_dir)
            }
        };
        anyhow::Ok((hops, unreachable, config_dir))
    })?;
    for u in &unreachable {
        eprintln!("warning: could not ask a proxy for its failures: {u}");
    }
    let hops = select(hops, args.request_id.as_deref())?;
    let provenance = Provenance::load(&config_dir)
        .with_context(|| format!("reading the configuration in {}", config_dir.display()))?;
    let explanation = explain(&hops, &provenance);
    if args.output != Output::Table {
        let value = serde_json::json!({ "hops": hops, "explanation": explanation });
        admin::print_structured(args.output, &value)?;
    } else {
        print!("{}", render(&hops, &explanation));
    }
    Ok(ExitCode::SUCCESS)
}

fn admin_failures(proxy: &str, v: &Value) -> Vec<Hop> {
    v["failures"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|f| Hop {
                    proxy: proxy.to_owned(),
                    failure: f.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The hops of the request asked for (or of the most recent failure), in time order,
/// the failing hop last.
pub(crate) fn select(mut all: Vec<Hop>, request_id: Option<&str>) -> anyhow::Result<Vec<Hop>> {
    let id = match request_id {
        Some(id) => id.to_owned(),
        None => {
            let Some(latest) = all.iter().max_by_key(|h| h.start_ms()) else {
                bail!(
                    "no proxy remembers a failed request (each keeps its most recent failures; none failed since it started)"
                );
            };
            match latest.field("requestId") {
                Some(id) => id.to_owned(),
                None => return Ok(vec![latest.clone()]),
            }
        }
    };
    all.retain(|h| h.field("requestId") == Some(id.as_str()));
    if all.is_empty() {
        bail!(
            "no proxy remembers a failed request with x-request-id {id:?}: it succeeded, it is older than the most recent failures the proxies keep, or its id was mistyped"
        );
    }
    all.sort_by_key(|h| {
        (
            h.blame(),
            h.field("direction") == Some("inbound"),
            h.start_ms(),
        )
    });
    Ok(all)
}

/// The hops, then the explanation.
fn render(hops: &[Hop], e: &Explanation) -> String {
    let rows: Vec<Vec<String>> = hops
        .iter()
        .map(|h| {
            let f = &h.failure;
            vec![
                h.proxy.clone(),
                admin::word(&f["direction"]),
                f["status"].to_string(),
                admin::word(&f["flag"]),
                admin::word(&f["route"]),
                admin::word(&f["cluster"]),
                admin::word(&f["upstreamHost"]),
                f["attempts"].to_string(),
            ]
        })
        .collect();
    let mut out = admin::table(
        &[
            "PROXY",
            "DIRECTION",
            "STATUS",
            "FLAGS",
            "ROUTE",
            "CLUSTER",
            "UPSTREAM",
            "ATTEMPTS",
        ],
        &rows,
    );
    out.push('\n');
    out.push_str(&e.to_string());
    out
}

#[cfg(test)]
mod tests;
