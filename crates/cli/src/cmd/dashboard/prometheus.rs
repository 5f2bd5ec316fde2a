//! `skiff dashboard --prometheus URL`: the same figures from a Prometheus server that
//! scrapes the proxies, asked in PromQL as Kiali asks it: the `increase` of
//! `istio_requests_total` and of the duration buckets over the window, summed by the
//! labels the graph needs; the per-service charts from a range query of the rate.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::cmd::stats::parse::Sample;
use crate::cmd::stats::{Delta, Snapshot};

/// The labels of an edge, and so of every query's `sum by`.
const BY: &str = "reporter, source_workload, source_workload_namespace, destination_workload, destination_workload_namespace, destination_service, destination_service_namespace, connection_security_policy";

/// A Prometheus server's HTTP API.
#[derive(Debug, Clone)]
pub(crate) struct Prometheus {
    addr: SocketAddr,
    /// The URL's path, without a trailing `/` (a Prometheus behind a prefix).
    prefix: String,
    url: String,
}

impl Prometheus {
    /// `http://host:port[/prefix]`; the host is resolved once.
    pub(crate) async fn new(url: &str) -> anyhow::Result<Prometheus> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("--prometheus {url}: only http:// URLs are read"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let authority = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&authority)
            .await
            .with_context(|| format!("--prometheus {url}: cannot resolve {authority}"))?
            .next()
            .with_context(|| format!("--prometheus {url}: {authority} has no address"))?;
        let path = path.trim_end_matches('/');
        Ok(Prometheus {
            addr,
            prefix: if path.is_empty() {
                String::new()
            } else {
                format!("/{path}")
            },
            url: url.to_owned(),
        })
    }

    async fn api(&self, path_and_query: &str) -> anyhow::Result<Value> {
        let what = format!("the Prometheus server at {}", self.url);
        let body = crate::cmd::admin::get(
            self.addr,
            &format!("{}{path_and_query}", self.prefix),
            &what,
        )
        .await?;
        let v: Value = serde_json::from_slice(&body)
            .with_context(|| format!("{what} did not answer with JSON"))?;
        if v["status"] != "success" {
            bail!("{what}: {}", v["error"].as_str().unwrap_or("an error"));
        }
        Ok(v["data"]["result"].clone())
    }

    /// An instant query: each series' labels and value.
    async fn query(&self, q: &str) -> anyhow::Result<Vec<(Vec<(String, String)>, f64)>> {
        let result = self
            .api(&format!("/api/v1/query?query={}", encode(q)))
            .await?;
        Ok(result
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let value = s["value"][1]
                    .as_str()
                    .and_then(crate::cmd::stats::parse::number)
                    .unwrap_or(f64::NAN);
                (labels(&s["metric"]), value)
            })
            .collect())
    }

    /// What happened over the last `window`, as the scraper's [`Delta`].
    pub(crate) async fn delta(&self, window: Duration) -> anyhow::Result<Delta> {
        let range = format!("{}s", window.as_secs().max(1));
        let requests = self
            .query(&format!(
                "sum by ({BY}, response_code) (increase(istio_requests_total[{range}]))"
            ))
            .await?;
        let buckets = self
            .query(&format!(
                "sum by ({BY}, le) (increase(istio_request_duration_milliseconds_bucket[{range}]))"
            ))
            .await?;
        let mut samples = Vec::new();
        for (name, list) in [
            ("istio_requests_total", requests),
            ("istio_request_duration_milliseconds_bucket", buckets),
        ] {
            for (labels, value) in list {
                if value.is_finite() {
                    samples.push(Sample {
                        name: name.to_owned(),
                        labels,
                        value,
                    });
                }
            }
        }
        let mut snapshot = Snapshot::default();
        snapshot.add_samples(&samples);
        Ok(Delta {
            seconds: window.as_secs_f64(),
            series: snapshot
                .series
                .into_iter()
                .filter(|(_, c)| c.requests > 0.0)
                .collect(),
        })
    }

    /// Requests per second into each service (its workloads' reports) over `span`, one
    /// point per `step`: `(host, namespace) → [(seconds ago, rps)]`.
    pub(crate) async fn service_rates(
        &self,
        span: Duration,
        step: Duration,
    ) -> anyhow::Result<Vec<((String, String), Vec<(f64, f64)>)>> {
        let end = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let start = end - span.as_secs_f64();
        let q = "sum by (destination_service, destination_service_namespace) (rate(istio_requests_total{reporter=\"destination\"}[1m]))";
        let result = self
            .api(&format!(
                "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={}",
                encode(q),
                step.as_secs().max(1)
            ))
            .await?;
        Ok(result
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let m = &s["metric"];
                let l = |k: &str| m[k].as_str().unwrap_or("").to_owned();
                let points = s["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| {
                        let at = p[0].as_f64()?;
                        let v = p[1].as_str().and_then(crate::cmd::stats::parse::number)?;
                        Some((end - at, v))
                    })
                    .collect();
                (
                    (l("destination_service"), l("destination_service_namespace")),
                    points,
                )
            })
            .collect())
    }
}

fn labels(metric: &Value) -> Vec<(String, String)> {
    metric
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
        .collect()
}

/// Percent-encodes a query parameter's value.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
