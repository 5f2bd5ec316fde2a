//! A histogram of fixed buckets updated with atomics only: an observation is one
//! bucket increment and one sum addition, no lock (the `prometheus-client` histogram
//! takes a mutex per observation).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Envoy's default histogram buckets, which Istio's standard histograms use
/// (`istio_request_duration_milliseconds`, `istio_request_bytes`,
/// `istio_response_bytes`).
pub(crate) const ISTIO_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Observations are integers in units of `1 / scale` of the reported value (durations
/// in microseconds reported in milliseconds: scale 1000; bytes: scale 1).
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    scale: u64,
    /// Upper bounds in observation units.
    bounds: [u64; ISTIO_BUCKETS.len()],
    /// Per bucket (not cumulative), the last one for `+Inf`.
    counts: [AtomicU64; ISTIO_BUCKETS.len() + 1],
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram of [`ISTIO_BUCKETS`] for observations `scale` times finer.
    pub(crate) fn new(scale: u64) -> Histogram {
        Histogram {
            inner: Arc::new(Inner {
                scale,
                bounds: ISTIO_BUCKETS.map(|b| (b * scale as f64) as u64),
                counts: std::array::from_fn(|_| AtomicU64::new(0)),
                sum: AtomicU64::new(0),
            }),
        }
    }

    /// Counts one observation of `units`.
    pub(crate) fn observe(&self, units: u64) {
        let i = self.inner.bounds.partition_point(|&b| b < units);
        self.inner.counts[i].fetch_add(1, Ordering::Relaxed);
        self.inner.sum.fetch_add(units, Ordering::Relaxed);
    }

    /// Observations so far.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut buckets = [(0.0, 0u64); ISTIO_BUCKETS.len() + 1];
        // Per-bucket counts: the encoder makes them cumulative.
        let mut total = 0;
        for (i, c) in self.inner.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            total += n;
            let bound = ISTIO_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            buckets[i] = (bound, n);
        }
        let sum = self.inner.sum.load(Ordering::Relaxed) as f64 / self.inner.scale as f64;
        encoder.encode_histogram::<NoLabelSet>(sum, total, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}
