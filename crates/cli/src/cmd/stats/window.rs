//! The golden metrics of a short window: snapshots of every proxy's request counters
//! and duration buckets, and what changed between two of them, per workload, service
//! and edge.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use super::parse::{Sample, number};

/// A workload by namespace and name (`unknown` for callers the proxies do not know).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct WorkloadId {
    pub(crate) namespace: String,
    pub(crate) name: String,
}

impl WorkloadId {
    pub(crate) fn is_unknown(&self) -> bool {
        self.name == "unknown" || self.name.is_empty()
    }
}

/// The labels a series is kept under: who reported it, who called whom, which service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key {
    /// `reporter="destination"` (else `source`).
    pub(crate) destination_reporter: bool,
    pub(crate) source: WorkloadId,
    pub(crate) destination: WorkloadId,
    /// `destination_service`: the service's host.
    pub(crate) service: String,
    /// `destination_service_namespace`.
    pub(crate) service_namespace: String,
}

impl Key {
    fn of(s: &Sample) -> Key {
        let wl = |ns: &str, name: &str| WorkloadId {
            namespace: s.label(ns).to_owned(),
            name: s.label(name).to_owned(),
        };
        Key {
            destination_reporter: s.label("reporter") == "destination",
            source: wl("source_workload_namespace", "source_workload"),
            destination: wl("destination_workload_namespace", "destination_workload"),
            service: s.label("destination_service").to_owned(),
            service_namespace: s.label("destination_service_namespace").to_owned(),
        }
    }
}

/// Counters of one [`Key`]: every response code and security policy added up.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Counts {
    pub(crate) requests: f64,
    /// Answered with a 5xx.
    pub(crate) errors: f64,
    /// Over mutual TLS (`connection_security_policy="mutual_tls"`).
    pub(crate) mtls: f64,
    /// Cumulative duration buckets in milliseconds: `(le, count)`, sorted, `+Inf` last.
    pub(crate) buckets: Vec<(f64, f64)>,
}

impl Counts {
    fn add_bucket(&mut self, le: f64, count: f64) {
        match self.buckets.iter_mut().find(|(b, _)| *b == le) {
            Some((_, c)) => *c += count,
            None => {
                let at = self.buckets.partition_point(|(b, _)| *b < le);
                self.buckets.insert(at, (le, count));
            }
        }
    }

    fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.mtls += other.mtls;
        for &(le, c) in &other.buckets {
            self.add_bucket(le, c);
        }
    }

    /// What grew from `before` to `self`. A counter that went down was reset (its
    /// proxy restarted): then all of `self` is new, as Prometheus' `increase` takes it.
    fn since(&self, before: &Counts) -> Counts {
        if self.requests < before.requests {
            return self.clone();
        }
        let grew = |now: f64, then: f64| (now - then).max(0.0);
        Counts {
            requests: grew(self.requests, before.requests),
            errors: grew(self.errors, before.errors),
            mtls: grew(self.mtls, before.mtls),
            buckets: self
                .buckets
                .iter()
                .map(|&(le, c)| {
                    let then = before
                        .buckets
                        .iter()
                        .find(|(b, _)| *b == le)
                        .map_or(0.0, |(_, c)| *c);
                    (le, grew(c, then))
                })
                .collect(),
        }
    }
}

/// Everything scraped at one moment, all proxies added up.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// Since the scraper started.
    pub(crate) at: Duration,
    pub(crate) series: HashMap<Key, Counts>,
}

impl Snapshot {
    /// Adds the samples of one proxy's endpoint.
    pub(crate) fn add_samples(&mut self, samples: &[Sample]) {
        for s in samples {
            match s.name.as_str() {
                "istio_requests_total" => {
                    let c = self.series.entry(Key::of(s)).or_default();
                    c.requests += s.value;
                    if s.label("response_code").starts_with('5') {
                        c.errors += s.value;
                    }
                    if s.label("connection_security_policy") == "mutual_tls" {
                        c.mtls += s.value;
                    }
                }
                "istio_request_duration_milliseconds_bucket" => {
                    if let Some(le) = number(s.label("le")) {
                        self.series
                            .entry(Key::of(s))
                            .or_default()
                            .add_bucket(le, s.value);
                    }
                }
                _ => {}
            }
        }
    }

    /// The metric names [`add_samples`](Snapshot::add_samples) reads.
    pub(crate) fn wanted(name: &str) -> bool {
        name == "istio_requests_total" || name == "istio_request_duration_milliseconds_bucket"
    }

    /// What happened from `before` to `self`, per key.
    pub(crate) fn since(&self, before: &Snapshot) -> Delta {
        let empty = Counts::default();
        Delta {
            seconds: self.at.saturating_sub(before.at).as_secs_f64(),
            series: self
                .series
                .iter()
                .map(|(k, c)| (k.clone(), c.since(before.series.get(k).unwrap_or(&empty))))
                .filter(|(_, c)| c.requests > 0.0)
                .collect(),
        }
    }
}

/// The golden metrics of some traffic over some seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Golden {
    pub(crate) counts: Counts,
    /// Requests whose security policy the callee reported (destination reporter):
    /// the base of the mTLS share.
    pub(crate) reported_by_callee: f64,
    pub(crate) seconds: f64,
}

impl Golden {
    fn add(&mut self, key: &Key, c: &Counts) {
        self.counts.add(c);
        if key.destination_reporter {
            self.reported_by_callee += c.requests;
        }
    }

    pub(crate) fn requests(&self) -> u64 {
        self.counts.requests.round() as u64
    }

    /// Requests not answered with a 5xx.
    pub(crate) fn successes(&self) -> u64 {
        (self.counts.requests - self.counts.errors).round() as u64
    }

    /// Requests per second; 0 over no time.
    pub(crate) fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.counts.requests / self.seconds
        } else {
            0.0
        }
    }

    /// The share of requests not answered with a 5xx; `None` without requests.
    pub(crate) fn success_rate(&self) -> Option<f64> {
        (self.counts.requests > 0.0)
            .then(|| (self.counts.requests - self.counts.errors) / self.counts.requests)
    }

    /// The share of the callee-reported requests that came over mutual TLS.
    pub(crate) fn mtls_share(&self) -> Option<f64> {
        (self.reported_by_callee > 0.0).then(|| self.counts.mtls / self.reported_by_callee)
    }

    /// The `q` quantile of the durations, in milliseconds.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        histogram_quantile(q, &self.counts.buckets)
    }
}

/// `histogram_quantile(q, …)` as Prometheus computes it from cumulative buckets
/// `(le, count)` sorted by `le` with `+Inf` last: the bucket where the rank `q × total`
/// falls, linearly interpolated inside it (from 0 for the first bucket); a rank in the
/// `+Inf` bucket gives the highest finite bound. `None` without observations or
/// without a `+Inf` bucket.
pub(crate) fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    if q.is_nan() {
        return None;
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }
    let last = buckets.last()?;
    if last.0 != f64::INFINITY || buckets.len() < 2 {
        return None;
    }
    // Prometheus evens out counts that go down (a scrape between bucket updates).
    let mut fixed: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    let mut max = 0.0f64;
    for &(le, c) in buckets {
        max = max.max(c);
        fixed.push((le, max));
    }
    let total = fixed[fixed.len() - 1].1;
    if total == 0.0 {
        return None;
    }
    let mut rank = q * total;
    let b = fixed[..fixed.len() - 1].partition_point(|&(_, c)| c < rank);
    if b == fixed.len() - 1 {
        return Some(fixed[fixed.len() - 2].0);
    }
    if b == 0 && fixed[0].0 <= 0.0 {
        return Some(fixed[0].0);
    }
    let (end, mut count) = fixed[b];
    let mut start = 0.0;
    if b > 0 {
        start = fixed[b - 1].0;
        count -= fixed[b - 1].1;
        rank -= fixed[b - 1].1;
    }
    Some(start + (end - start) * (rank / count))
}

/// What changed between two snapshots.
#[derive(Debug, Clone, Default)]
pub(crate) struct Delta {
    pub(crate) seconds: f64,
    pub(crate) series: HashMap<Key, Counts>,
}

/// A node of the service graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Node {
    Workload(WorkloadId),
    /// A service's host and namespace.
    Service(String, String),
}

impl Delta {
    fn golden(&self) -> Golden {
        Golden {
            seconds: self.seconds,
            ..Golden::default()
        }
    }

    /// Whether a series counts for the callee's side: the callee reported it, or the
    /// caller did and the request never reached a callee (a fault, no endpoint, a
    /// host outside the mesh), which only the caller saw.
    fn counts_for_callee(key: &Key) -> bool {
        key.destination_reporter || key.destination.is_unknown()
    }

    /// Inbound traffic per workload, as its own proxy reported it.
    pub(crate) fn by_workload(&self) -> BTreeMap<WorkloadId, Golden> {
        let mut out: BTreeMap<WorkloadId, Golden> = BTreeMap::new();
        for (k, c) in &self.series {
            if k.destination_reporter {
                out.entry(k.destination.clone())
                    .or_insert_with(|| self.golden())
                    .add(k, c);
            }
        }
        out
    }

    /// Traffic per service (host, namespace): what its workloads' proxies reported,
    /// and what callers saw fail before it reached one.
    pub(crate) fn by_service(&self) -> BTreeMap<(String, String), Golden> {
        let mut out: BTreeMap<(String, String), Golden> = BTreeMap::new();
        for (k, c) in &self.series {
            if Self::counts_for_callee(k) {
                out.entry((k.service.clone(), k.service_namespace.clone()))
                    .or_insert_with(|| self.golden())
                    .add(k, c);
            }
        }
        out
    }

    /// The service graph's edges: caller workload → service, and service → the
    /// workload that answered.
    pub(crate) fn edges(&self) -> BTreeMap<(Node, Node), Golden> {
        let mut out: BTreeMap<(Node, Node), Golden> = BTreeMap::new();
        for (k, c) in &self.series {
            if !Self::counts_for_callee(k) {
                continue;
            }
            let service = Node::Service(k.service.clone(), k.service_namespace.clone());
            out.entry((Node::Workload(k.source.clone()), service.clone()))
                .or_insert_with(|| self.golden())
                .add(k, c);
            if k.destination_reporter {
                out.entry((service, Node::Workload(k.destination.clone())))
                    .or_insert_with(|| self.golden())
                    .add(k, c);
            }
        }
        out
    }
}

/// The last snapshots, oldest first, at most `capacity`.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    capacity: usize,
    snapshots: VecDeque<Snapshot>,
}

impl Window {
    pub(crate) fn new(capacity: usize) -> Window {
        Window {
            capacity: capacity.max(2),
            snapshots: VecDeque::new(),
        }
    }

    pub(crate) fn push(&mut self, snapshot: Snapshot) {
        if self.snapshots.len() == self.capacity {
            self.snapshots.pop_front();
        }
        self.snapshots.push_back(snapshot);
    }

    pub(crate) fn len(&self) -> usize {
        self.snapshots.len()
    }

    /// From the oldest snapshot at most `span` before the newest, to the newest.
    pub(crate) fn last(&self, span: Duration) -> Delta {
        let Some(newest) = self.snapshots.back() else {
            return Delta::default();
        };
        let from = newest.at.saturating_sub(span);
        let oldest = self
            .snapshots
            .iter()
            .find(|s| s.at >= from)
            .unwrap_or(newest);
        newest.since(oldest)
    }

    /// Each step between two consecutive snapshots of the last `span`, oldest first:
    /// the points of a chart.
    pub(crate) fn steps(&self, span: Duration) -> Vec<(Duration, Delta)> {
        let Some(newest) = self.snapshots.back() else {
            return Vec::new();
        };
        let from = newest.at.saturating_sub(span);
        let list: Vec<&Snapshot> = self.snapshots.iter().filter(|s| s.at >= from).collect();
        list.windows(2)
            .map(|w| (w[1].at, w[1].since(w[0])))
            .collect()
    }
}

impl Node {
    /// A stable id: `workload:<namespace>/<name>`, `service:<host>`.
    pub(crate) fn id(&self) -> String {
        match self {
            Node::Workload(w) => format!("workload:{}/{}", w.namespace, w.name),
            Node::Service(host, _) => format!("service:{host}"),
        }
    }

    /// What people read: `frontend.prod`, the service's host.
    pub(crate) fn label(&self) -> String {
        match self {
            Node::Workload(w) if w.is_unknown() => "unknown".to_owned(),
            Node::Workload(w) => format!("{}.{}", w.name, w.namespace),
            Node::Service(host, _) => host.clone(),
        }
    }

    pub(crate) fn namespace(&self) -> &str {
        match self {
            Node::Workload(w) => &w.namespace,
            Node::Service(_, ns) => ns,
        }
    }
}
