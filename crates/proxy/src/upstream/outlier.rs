//! Outlier detection: a DestinationRule's `outlierDetection`, per cluster and per proxy,
//! as Envoy runs it (`source/common/upstream/outlier_detection_impl.cc`).
//!
//! Every answer of an endpoint is counted as it comes: consecutive 5xx, consecutive
//! gateway errors (502, 503, 504) and, with `splitExternalLocalOriginErrors`,
//! consecutive local-origin failures (connect failures, resets, timeouts; without the
//! split they count as a 503, a timeout as a 504). When a count reaches its threshold
//! the endpoint is ejected, unless `maxEjectionPercent` of the cluster is ejected
//! already (Envoy compares the share ejected *before* this one, so one endpoint can
//! always go). Every `interval` a sweep returns the endpoints whose time is up:
//! `baseEjectionTime` × the endpoint's ejection multiplier, at most Envoy's
//! `max_ejection_time` (300 s). The multiplier grows by one per ejection and shrinks by
//! one per sweep that finds the endpoint healthy. The balancer skips ejected endpoints
//! unless fewer than `minHealthPercent` are healthy (Envoy's panic mode: then it
//! balances over all of them).
//!
//! The counts are atomics on the endpoint's monitor; only an ejection and the sweep take
//! the detector's lock. The detector outlives snapshots (keyed by cluster name), so an
//! ejection survives a config push.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use skiff_model::config::OutlierDetection;
use tokio::time::Instant;

use super::EndpointKey;

/// What one try of a request told about its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The endpoint answered with this status.
    Status(u16),
    /// The connection failed, was reset, or the try timed out, before an answer.
    LocalFailure {
        /// It was a timeout (a 504 without the split).
        timeout: bool,
    },
}

/// Why an endpoint was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Consecutive5xx,
    ConsecutiveGateway,
    ConsecutiveLocalOrigin,
}

impl Kind {
    fn describe(self, n: u32) -> String {
        match self {
            Kind::Consecutive5xx => format!("{n} consecutive 5xx (consecutive5xxErrors)"),
            Kind::ConsecutiveGateway => {
                format!("{n} consecutive gateway errors (consecutiveGatewayErrors)")
            }
            Kind::ConsecutiveLocalOrigin => {
                format!("{n} consecutive local-origin failures (consecutiveLocalOriginFailures)")
            }
        }
    }
}

/// The state of one endpoint in one cluster.
#[derive(Debug)]
pub(crate) struct HostMonitor {
    display: Box<str>,
    ejected: AtomicBool,
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    /// Envoy's `eject_time_backoff`: the multiplier of the base ejection time.
    backoff: AtomicU32,
    ejections: AtomicU64,
    /// Milliseconds since the detector's epoch.
    last_ejection: AtomicU64,
}

impl HostMonitor {
    fn new(display: &str) -> Self {
        HostMonitor {
            display: display.into(),
            ejected: AtomicBool::new(false),
            consecutive_5xx: AtomicU32::new(0),
            consecutive_gateway: AtomicU32::new(0),
            consecutive_local: AtomicU32::new(0),
            backoff: AtomicU32::new(0),
            ejections: AtomicU64::new(0),
            last_ejection: AtomicU64::new(0),
        }
    }

    /// Ejected now.
    pub(crate) fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }
}

/// The settings, as atomics so that a snapshot build can change them under readers.
#[derive(Debug, Default)]
struct Settings {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    split: AtomicBool,
    interval_ms: AtomicU64,
    base_ms: AtomicU64,
    max_ms: AtomicU64,
    max_percent: AtomicU32,
    min_health_percent: AtomicU32,
}

/// One cluster's outlier detector.
#[derive(Debug)]
pub(crate) struct Detector {
    cluster: Box<str>,
    settings: Settings,
    epoch: Instant,
    /// Endpoints ejected now.
    ejected: AtomicUsize,
    /// Endpoints of the cluster.
    size: AtomicUsize,
    hosts: Mutex<HashMap<EndpointKey, Arc<HostMonitor>>>,
    /// The sweep task runs (it needs a runtime, which a build may not have).
    sweeping: AtomicBool,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Detector {
    /// A detector, with its sweep running when a runtime is at hand.
    pub(crate) fn start(cluster: &str, od: &OutlierDetection) -> Arc<Detector> {
        let d = Arc::new(Detector {
            cluster: cluster.into(),
            settings: Settings::default(),
            epoch: Instant::now(),
            ejected: AtomicUsize::new(0),
            size: AtomicUsize::new(0),
            hosts: Mutex::new(HashMap::new()),
            sweeping: AtomicBool::new(false),
        });
        d.configure(od);
        d.ensure_sweep();
        d
    }

    /// Starts the sweep if it is not running yet and a runtime is at hand.
    pub(crate) fn ensure_sweep(self: &Arc<Self>) {
        if self.sweeping.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current()
            && !self.sweeping.swap(true, Ordering::AcqRel)
        {
            rt.spawn(sweep(Arc::downgrade(self)));
        }
    }

    /// Takes the settings of a new snapshot.
    pub(crate) fn configure(&self, od: &OutlierDetection) {
        let s = &self.settings;
        let r = Ordering::Relaxed;
        s.consecutive_5xx.store(od.consecutive_5xx, r);
        s.consecutive_gateway.store(od.consecutive_gateway, r);
        s.consecutive_local.store(od.consecutive_local_origin, r);
        s.split.store(od.split_local_origin, r);
        s.interval_ms.store(ms(od.interval).max(1), r);
        s.base_ms.store(ms(od.base_ejection_time), r);
        s.max_ms.store(ms(od.max_ejection_time), r);
        s.max_percent.store(od.max_ejection_percent.min(100), r);
        s.min_health_percent
            .store(od.min_health_percent.min(100), r);
    }

    /// The monitors of a snapshot's endpoints, in order; endpoints no longer in the
    /// cluster are forgotten (an ejected one no longer counts as ejected).
    pub(crate) fn hosts_for(&self, endpoints: &[(EndpointKey, &str)]) -> Vec<Arc<HostMonitor>> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let out: Vec<Arc<HostMonitor>> = endpoints
            .iter()
            .map(|(key, display)| {
                hosts
                    .entry(key.clone())
                    .or_insert_with(|| Arc::new(HostMonitor::new(display)))
                    .clone()
            })
            .collect();
        hosts.retain(|key, _| endpoints.iter().any(|(k, _)| k == key));
        let ejected = hosts.values().filter(|h| h.is_ejected()).count();
        self.ejected.store(ejected, Ordering::Relaxed);
        self.size.store(hosts.len(), Ordering::Relaxed);
        out
    }

    /// True when some endpoint is ejected and the healthy share is not below
    /// `minHealthPercent`: then the balancer must skip ejected endpoints.
    pub(crate) fn filtering(&self) -> bool {
        let ejected = self.ejected.load(Ordering::Relaxed);
        if ejected == 0 {
            return false;
        }
        let size = self.size.load(Ordering::Relaxed).max(1);
        let min = self.settings.min_health_percent.load(Ordering::Relaxed) as usize;
        // Envoy's panic mode: healthy% < threshold balances over every endpoint.
        (size - ejected.min(size)) * 100 >= min * size
    }

    /// Counts an answer of `host`. Returns what to say in the record when this answer
    /// ejected it.
    pub(crate) fn report(&self, host: &HostMonitor, outcome: Outcome) -> Option<String> {
        let s = &self.settings;
        let r = Ordering::Relaxed;
        let status = match outcome {
            Outcome::Status(code) => {
                if s.split.load(r) {
                    host.consecutive_local.store(0, r);
                }
                code
            }
            Outcome::LocalFailure { timeout } => {
                if s.split.load(r) {
                    let threshold = s.consecutive_local.load(r);
                    let n = host.consecutive_local.fetch_add(1, r) + 1;
                    if threshold > 0 && n == threshold {
                        host.consecutive_local.store(0, r);
                        return self.eject(host, Kind::ConsecutiveLocalOrigin, n);
                    }
                    return None;
                }
                if timeout { 504 } else { 503 }
            }
        };
        if !(500..600).contains(&status) {
            // Cheap when nothing was counted: no write to a shared line.
            if host.consecutive_5xx.load(r) != 0 {
                host.consecutive_5xx.store(0, r);
            }
            if host.consecutive_gateway.load(r) != 0 {
                host.consecutive_gateway.store(0, r);
            }
            return None;
        }
        let mut said = None;
        if (502..=504).contains(&status) {
            let threshold = s.consecutive_gateway.load(r);
            let n = host.consecutive_gateway.fetch_add(1, r) + 1;
            if threshold > 0 && n == threshold {
                host.consecutive_gateway.store(0, r);
                said = self.eject(host, Kind::ConsecutiveGateway, n);
            }
        } else {
            host.consecutive_gateway.store(0, r);
        }
        let threshold = s.consecutive_5xx.load(r);
        let n = host.consecutive_5xx.fetch_add(1, r) + 1;
        if threshold > 0 && n == threshold {
            host.consecutive_5xx.store(0, r);
            said = said.or_else(|| self.eject(host, Kind::Consecutive5xx, n));
        }
        said
    }

    fn now_ms(&self) -> u64 {
        ms(Instant::now().saturating_duration_since(self.epoch))
    }

    fn ejection_time(&self, backoff: u32) -> Duration {
        let s = &self.settings;
        let base = s.base_ms.load(Ordering::Relaxed);
        let max = s.max_ms.load(Ordering::Relaxed);
        Duration::from_millis(base.saturating_mul(u64::from(backoff)).min(max))
    }

    fn eject(&self, host: &HostMonitor, kind: Kind, n: u32) -> Option<String> {
        let _hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        if host.is_ejected() {
            return None;
        }
        let s = &self.settings;
        let size = self.size.load(Ordering::Relaxed).max(1);
        let ejected = self.ejected.load(Ordering::Relaxed);
        let max_percent = s.max_percent.load(Ordering::Relaxed) as usize;
        if ejected * 100 >= max_percent * size {
            tracing::info!(
                cluster = %self.cluster, upstream = %host.display,
                "outlier detection: not ejecting after {}: maxEjectionPercent {max_percent} reached ({ejected} of {size} ejected)",
                kind.describe(n)
            );
            return None;
        }
        let base = s.base_ms.load(Ordering::Relaxed);
        let max = s.max_ms.load(Ordering::Relaxed);
        let backoff = host.backoff.load(Ordering::Relaxed);
        // Envoy grows the multiplier while base × multiplier < max + base.
        let backoff = if u64::from(backoff).saturating_mul(base) < max.saturating_add(base) {
            backoff + 1
        } else {
            backoff
        };
        host.backoff.store(backoff, Ordering::Relaxed);
        host.last_ejection.store(self.now_ms(), Ordering::Relaxed);
        host.ejections.fetch_add(1, Ordering::Relaxed);
        host.ejected.store(true, Ordering::Release);
        self.ejected.fetch_add(1, Ordering::Relaxed);
        let time = self.ejection_time(backoff);
        let said = format!(
            "outlier detection ejected upstream {} of cluster {} after {}, for {:?}",
            host.display,
            self.cluster,
            kind.describe(n),
            time
        );
        tracing::warn!("{said}");
        Some(said)
    }

    /// One sweep: endpoints whose ejection time is up return; healthy ones lower
    /// their multiplier.
    fn sweep_once(&self) {
        let hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.now_ms();
        for h in hosts.values() {
            let backoff = h.backoff.load(Ordering::Relaxed);
            if !h.is_ejected() {
                if backoff > 0 {
                    h.backoff.store(backoff - 1, Ordering::Relaxed);
                }
                continue;
            }
            let since =
                Duration::from_millis(now - h.last_ejection.load(Ordering::Relaxed).min(now));
            if self.ejection_time(backoff) <= since {
                h.consecutive_5xx.store(0, Ordering::Relaxed);
                h.consecutive_gateway.store(0, Ordering::Relaxed);
                h.ejected.store(false, Ordering::Release);
                self.ejected.fetch_sub(1, Ordering::Relaxed);
                tracing::info!(
                    cluster = %self.cluster, upstream = %h.display,
                    "outlier detection returned the upstream after {since:?}"
                );
            }
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.settings.interval_ms.load(Ordering::Relaxed))
    }

    /// For `/config_dump`: the ejected endpoints and every endpoint's ejection count.
    pub(crate) fn status(&self) -> serde_json::Value {
        let hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<_> = hosts
            .values()
            .map(|h| {
                serde_json::json!({
                    "address": &*h.display,
                    "ejected": h.is_ejected(),
                    "timesEjected": h.ejections.load(Ordering::Relaxed),
                    "ejectionMultiplier": h.backoff.load(Ordering::Relaxed),
                })
            })
            .collect();
        list.sort_by(|a, b| a["address"].as_str().cmp(&b["address"].as_str()));
        serde_json::json!({
            "ejectedNow": self.ejected.load(Ordering::Relaxed),
            "endpoints": list,
        })
    }
}

/// The sweep, every `interval`, for as long as the detector lives.
async fn sweep(detector: Weak<Detector>) {
    loop {
        let Some(interval) = detector.upgrade().map(|d| d.interval()) else {
            return;
        };
        tokio::time::sleep(interval).await;
        match detector.upgrade() {
            Some(d) => d.sweep_once(),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests;
