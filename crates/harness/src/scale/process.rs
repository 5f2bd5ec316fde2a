//! The control plane as a child process, and what the kernel says it costs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Kernel clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// A running `skiff control`.
#[derive(Debug)]
pub struct Control {
    child: tokio::process::Child,
    /// The xDS/CA port.
    pub xds: SocketAddr,
    /// The debug port.
    pub debug: SocketAddr,
}

/// CPU time and resident memory of a process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes: with the pages of the binary, which processes of
    /// one binary share.
    pub rss_bytes: u64,
    /// The anonymous part of the resident set (heap and stacks): what this process
    /// holds alone.
    pub anon_bytes: u64,
    /// Proportional set size: its own pages, plus each page it shares divided by the
    /// number of processes sharing it; what it costs the machine (0 when the kernel
    /// does not say).
    pub pss_bytes: u64,
}

impl Control {
    /// Starts `skiff control` on `config` with its ports on free loopback ports, and
    /// waits until it answers `/ready`. Its log goes to `log`.
    pub async fn start(
        skiff: &Path,
        config: &Path,
        secret_file: &Path,
        log: &Path,
        extra_args: &[String],
    ) -> anyhow::Result<Self> {
        let xds = free_port()?;
        let debug = free_port()?;
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot write {}", log.display()))?;
        let child = tokio::process::Command::new(skiff)
            .arg("control")
            .arg("--config")
            .arg(config)
            .arg("--xds-listen")
            .arg(xds.to_string())
            .arg("--debug-listen")
            .arg(debug.to_string())
            .arg("--bootstrap-secret-file")
            .arg(secret_file)
            .args(extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", skiff.display()))?;
        let mut control = Control { child, xds, debug };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        loop {
            if let Some(status) = control.child.try_wait()? {
                bail!(
                    "skiff control exited with {status} before it was ready; see {}",
                    log.display()
                );
            }
            if let Ok((200, _)) = control.get("/ready").await {
                return Ok(control);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("skiff control was not ready within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its CPU time and RSS now.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        let pid = self.child.id().context("skiff control has exited")?;
        usage(pid)
    }

    /// `GET path` on the debug port: the status and the body.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let mut stream = TcpStream::connect(self.debug).await?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.debug
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").context("no HTTP head")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no HTTP status")?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Ok((status, body))
    }

    /// How long the latest reload took, from `/debug/configz`.
    pub async fn reload_duration(&self) -> anyhow::Result<Duration> {
        let (_, body) = self.get("/debug/configz").await?;
        let status: serde_json::Value = serde_json::from_str(&body)?;
        let ms = status["reloadDurationMs"]
            .as_u64()
            .context("no reloadDurationMs in /debug/configz")?;
        Ok(Duration::from_millis(ms))
    }

    /// The sum of the samples of `metric` (all label sets) on `/metrics`.
    pub async fn metric(&self, metric: &str) -> anyhow::Result<f64> {
        let (_, body) = self.get("/metrics").await?;
        Ok(sum_metric(&body, metric))
    }
}

/// Adds up every sample of `name` (with any labels) in a Prometheus text page.
pub fn sum_metric(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = match rest.as_bytes().first() {
                Some(b'{') => &rest[rest.find('}')? + 1..],
                Some(b' ') => rest,
                _ => return None,
            };
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// CPU time and RSS of process `pid`, from `/proc`.
pub fn usage(pid: u32) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').context("malformed /proc stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after `)`.
    let ticks = |i: usize| -> f64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
    let cpu_seconds = (ticks(11) + ticks(12)) / TICKS_PER_SECOND;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let pss_kib = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|rollup| {
            rollup
                .lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    Ok(Usage {
        cpu_seconds,
        rss_bytes: kib("VmRSS:") * 1024,
        anon_bytes: kib("RssAnon:") * 1024,
        pss_bytes: pss_kib * 1024,
    })
}

/// A loopback port free now.
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// The `skiff` binary beside this one (both are built into the same target
/// directory), unless given.
pub fn default_skiff() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .context("no directory for the current binary")?;
    let skiff = dir.join("skiff");
    if !skiff.exists() {
        bail!(
            "{} does not exist: build it (cargo build --release -p skiff) or pass --skiff",
            skiff.display()
        );
    }
    Ok(skiff)
}
