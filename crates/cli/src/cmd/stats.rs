//! The golden metrics of the mesh, from the proxies' own metrics (no Prometheus
//! needed): the proxies are found through the control plane's `/debug/prometheus_sd`,
//! their `/stats/prometheus` is scraped every few seconds, and a short [`Window`] of
//! snapshots gives, per workload, service and edge of the service graph, requests per
//! second, success rate (not 5xx), p50/p90/p99 (Prometheus' `histogram_quantile`) and
//! the share of requests over mutual TLS. `skiff stat`, `skiff top` and `skiff
//! dashboard` read them.

use std::net::SocketAddr;

use anyhow::Context as _;
use serde::Deserialize;
use tokio::task::JoinSet;

pub(crate) mod parse;
pub(crate) mod window;

pub(crate) use window::{Delta, Golden, Node, Snapshot, Window, WorkloadId};

/// One proxy to scrape, as the control plane lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// `<workload>.<namespace>`.
    pub(crate) proxy: String,
    pub(crate) workload: WorkloadId,
    /// `sidecar` or `gateway`.
    pub(crate) kind: String,
    pub(crate) address: SocketAddr,
    pub(crate) path: String,
}

/// How the last scrape of a proxy went.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Scraped {
    pub(crate) proxy: String,
    pub(crate) namespace: String,
    pub(crate) workload: String,
    pub(crate) kind: String,
    pub(crate) address: String,
    /// Why the scrape failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SdGroup {
    targets: Vec<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

/// The targets of a `/debug/prometheus_sd` answer (Prometheus' HTTP SD format).
pub(crate) fn targets_of(sd: &[u8]) -> anyhow::Result<Vec<Target>> {
    let groups: Vec<SdGroup> = serde_json::from_slice(sd)
        .context("the control plane's /debug/prometheus_sd is not a list of target groups")?;
    let mut out = Vec::new();
    for g in groups {
        let label = |k: &str| g.labels.get(k).cloned().unwrap_or_default();
        let proxy = label("proxy");
        let namespace = label("namespace");
        let name = proxy
            .strip_suffix(&format!(".{namespace}"))
            .unwrap_or(&proxy)
            .to_owned();
        let path = Some(label("__metrics_path__"))
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/metrics".to_owned());
        for t in &g.targets {
            let Ok(address) = t.parse() else {
                continue;
            };
            out.push(Target {
                proxy: proxy.clone(),
                workload: WorkloadId {
                    namespace: namespace.clone(),
                    name: name.clone(),
                },
                kind: label("kind"),
                address,
                path: path.clone(),
            });
        }
    }
    Ok(out)
}

/// Finds the proxies through the control plane and scrapes them.
#[derive(Debug)]
pub(crate) struct Scraper {
    control: SocketAddr,
    started: tokio::time::Instant,
}

impl Scraper {
    pub(crate) fn new(control: SocketAddr) -> Scraper {
        Scraper {
            control,
            started: tokio::time::Instant::now(),
        }
    }

    /// The proxies the control plane lists, without scraping them.
    pub(crate) async fn list(&self) -> anyhow::Result<Vec<Scraped>> {
        let sd = super::admin::get(
            self.control,
            "/debug/prometheus_sd",
            "the control plane's debug endpoint",
        )
        .await
        .context("is `skiff control` running? (use --control ADDR to point elsewhere)")?;
        Ok(targets_of(&sd)?
            .into_iter()
            .map(|t| Scraped {
                proxy: t.proxy,
                namespace: t.workload.namespace,
                workload: t.workload.name,
                kind: t.kind,
                address: t.address.to_string(),
                error: None,
            })
            .collect())
    }

    /// Asks the control plane for the proxies, scrapes each at once, and adds up what
    /// they said. A proxy that does not answer is reported, not fatal; a control
    /// plane that does not answer is.
    pub(crate) async fn scrape(&self) -> anyhow::Result<(Snapshot, Vec<Scraped>)> {
        let sd = super::admin::get(
            self.control,
            "/debug/prometheus_sd",
            "the control plane's debug endpoint",
        )
        .await
        .context("is `skiff control` running? (use --control ADDR to point elsewhere)")?;
        let targets = targets_of(&sd)?;
        let mut tasks = JoinSet::new();
        for (i, t) in targets.iter().enumerate() {
            let t = t.clone();
            tasks.spawn(async move {
                let what = format!("the proxy of {}", t.proxy);
                let got = super::admin::get(t.address, &t.path, &what)
                    .await
                    .and_then(|body| {
                        let text = std::str::from_utf8(&body)
                            .with_context(|| format!("{what} sent metrics that are not UTF-8"))?;
                        parse::parse(text, Snapshot::wanted)
                            .map_err(|e| anyhow::anyhow!("{what} sent unreadable metrics: {e}"))
                    });
                (i, got)
            });
        }
        let mut results: Vec<Option<anyhow::Result<Vec<parse::Sample>>>> =
            targets.iter().map(|_| None).collect();
        while let Some(done) = tasks.join_next().await {
            if let Ok((i, got)) = done {
                results[i] = Some(got);
            }
        }
        let mut snapshot = Snapshot {
            at: self.started.elapsed(),
            ..Snapshot::default()
        };
        let mut scraped = Vec::new();
        for (t, got) in targets.iter().zip(results) {
            let error = match got {
                Some(Ok(samples)) => {
                    snapshot.add_samples(&samples);
                    None
                }
                Some(Err(e)) => Some(format!("{e:#}")),
                None => Some("the scrape did not finish".to_owned()),
            };
            scraped.push(Scraped {
                proxy: t.proxy.clone(),
                namespace: t.workload.namespace.clone(),
                workload: t.workload.name.clone(),
                kind: t.kind.clone(),
                address: t.address.to_string(),
                error,
            });
        }
        Ok((snapshot, scraped))
    }
}

/// `scraped/known` proxies of a workload, `None` when it has none (a caller outside
/// the mesh).
pub(crate) fn meshed(scraped: &[Scraped], w: &WorkloadId) -> Option<(usize, usize)> {
    let mine: Vec<&Scraped> = scraped
        .iter()
        .filter(|s| s.workload == w.name && s.namespace == w.namespace)
        .collect();
    (!mine.is_empty()).then(|| {
        (
            mine.iter().filter(|s| s.error.is_none()).count(),
            mine.len(),
        )
    })
}

/// `12.3`, `0.57`, `1234`: a figure in about three digits.
pub(crate) fn figure(x: f64) -> String {
    if x == 0.0 {
        "0".to_owned()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// `97.50%`, `-` without requests.
pub(crate) fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |x| format!("{:.2}%", x * 100.0))
}

/// `12ms`, `0.75ms`, `-` without observations.
pub(crate) fn millis(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |x| format!("{}ms", figure(x)))
}

/// A [`Golden`] for JSON: every figure with its unit in the name; quantiles and shares
/// are `null` without requests.
pub(crate) fn golden_json(g: &Golden) -> serde_json::Value {
    serde_json::json!({
        "requests": g.requests(),
        "successes": g.successes(),
        "seconds": g.seconds,
        "rps": g.rps(),
        "success_rate": g.success_rate(),
        "p50_ms": g.quantile(0.5),
        "p90_ms": g.quantile(0.9),
        "p99_ms": g.quantile(0.99),
        "mtls_share": g.mtls_share(),
    })
}

#[cfg(test)]
mod tests;
