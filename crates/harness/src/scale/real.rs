//! Real proxies: one `skiff proxy` process per workload, each on its workload's own
//! loopback address with its own bootstrap token, as `skiff up` starts them. What
//! each has applied is read from the control plane's `/debug/syncz`: the version it
//! acknowledged and, per change, the propagation the control plane measured (from
//! the file event to the proxy's ACK).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use skiff_identity::{BootstrapTokens, SpiffeId};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::MeshShape;
use super::process::{Control, Usage, usage};

/// The running proxies. Dropping them kills them.
#[derive(Debug)]
pub struct Fleet {
    children: Vec<Child>,
}

/// One proxy's row of `/debug/syncz`, as far as the harness reads it.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// Its status (`SYNCED`, `STALE`, …).
    pub status: String,
    /// The generation of its newest change, whether it applied it, and how long that
    /// took.
    pub change: Option<(u64, bool, Option<Duration>)>,
}

impl Fleet {
    /// Starts one `skiff proxy` per workload of `shape` against `control`.
    pub fn start(
        skiff: &Path,
        control: &Control,
        root: &Path,
        tokens: &BootstrapTokens,
        shape: &MeshShape,
        logs: &Path,
        args: &[String],
    ) -> anyhow::Result<Fleet> {
        std::fs::create_dir_all(logs)?;
        let mut children = Vec::new();
        for (j, w) in shape.workloads().iter().enumerate() {
            let id = SpiffeId::new("cluster.local", &w.namespace, &w.service_account)?;
            let log = std::fs::File::create(logs.join(format!("{}.log", w.id)))?;
            let child = Command::new(skiff)
                .arg("proxy")
                .arg("--id")
                .arg(&w.id)
                .arg("--control")
                .arg(control.xds.to_string())
                .arg("--address")
                .arg(shape.address(j).to_string())
                .arg("--ca-root")
                .arg(root)
                .arg("--service-account")
                .arg(&w.service_account)
                .args(args)
                .env("SKIFF_BOOTSTRAP_TOKEN", tokens.token_for(&id))
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {}", skiff.display()))?;
            children.push(child);
        }
        Ok(Fleet { children })
    }

    /// How many proxies run.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// True when none runs.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// The CPU time and RSS of every proxy still running.
    pub fn usage(&self) -> Vec<Usage> {
        self.children
            .iter()
            .filter_map(|c| c.id())
            .filter_map(|pid| usage(pid).ok())
            .collect()
    }
}

/// Every proxy's row, by reading `/debug/syncz`.
pub async fn rows(control: &Control) -> anyhow::Result<Vec<Row>> {
    let (_, body) = control.get("/debug/syncz").await?;
    let page: serde_json::Value = serde_json::from_str(&body).context("/debug/syncz")?;
    let rows = page
        .as_array()
        .or_else(|| page["proxies"].as_array())
        .context("no rows in /debug/syncz")?;
    Ok(rows
        .iter()
        .map(|r| Row {
            status: r["status"].as_str().unwrap_or_default().to_owned(),
            change: r["lastChange"].as_object().map(|c| {
                (
                    c.get("generation").and_then(|g| g.as_u64()).unwrap_or(0),
                    c.get("state").and_then(|s| s.as_str()) == Some("APPLIED"),
                    c.get("propagationMs")
                        .and_then(|p| p.as_u64())
                        .map(Duration::from_millis),
                )
            }),
        })
        .collect())
}

/// Waits until `count` proxies are `SYNCED`, or `timeout`; returns how many are.
pub async fn wait_synced(control: &Control, count: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let synced = rows(control)
            .await
            .map(|rows| rows.iter().filter(|r| r.status == "SYNCED").count())
            .unwrap_or(0);
        if synced >= count || Instant::now() > deadline {
            return synced;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The newest change generation any proxy has seen.
pub async fn newest_change(control: &Control) -> anyhow::Result<u64> {
    Ok(rows(control)
        .await?
        .iter()
        .filter_map(|r| r.change.map(|c| c.0))
        .max()
        .unwrap_or(0))
}

/// Waits until every one of `count` proxies applied a change newer than `after`, or
/// `timeout`; returns the propagation of each proxy that did, sorted.
pub async fn wait_applied(
    control: &Control,
    after: u64,
    count: usize,
    timeout: Duration,
) -> Vec<Duration> {
    let deadline = Instant::now() + timeout;
    loop {
        let applied: Vec<Duration> = rows(control)
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|r| match r.change {
                Some((generation, true, Some(took))) if generation > after => Some(took),
                _ => None,
            })
            .collect();
        if applied.len() >= count || Instant::now() > deadline {
            let mut applied = applied;
            applied.sort();
            return applied;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
