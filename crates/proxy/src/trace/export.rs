//! The span exporter: OTLP/gRPC to one collector, in batches, off the request path.
//!
//! A finished span is handed over with `try_send` on a bounded queue: when the queue
//! is full (the collector is slow or gone) the span is dropped and counted, and the
//! request never waits. One task per collector drains the queue: it sends a batch when
//! [`MAX_BATCH`] spans are waiting or [`FLUSH_AFTER`] after the first of a batch came,
//! whichever is first. A batch the collector refuses or does not take is dropped
//! (counted), never retried: traces are best-effort, as Envoy's are.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

/// Spans waiting for export, at most (the OpenTelemetry SDK's default queue size).
pub(crate) const QUEUE: usize = 2048;
/// Spans in one export request, at most (the SDK's default batch size).
pub(crate) const MAX_BATCH: usize = 512;
/// How long the first span of a batch waits for others.
pub(crate) const FLUSH_AFTER: Duration = Duration::from_secs(1);
/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// What became of the spans handed to the exporters of one proxy, served with its
/// metrics (`skiff_tracing_spans_{exported,dropped,failed}_total`).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Taken by the collector.
    pub(crate) exported: Counter,
    /// Dropped because the queue was full.
    pub(crate) dropped: Counter,
    /// Lost in an export the collector refused or did not answer.
    pub(crate) failed: Counter,
}

impl Stats {
    /// Adds the counters to the proxy's metrics.
    pub(crate) fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "skiff_tracing_spans_exported",
            "Trace spans the collector took",
            self.exported.clone(),
        );
        registry.register(
            "skiff_tracing_spans_dropped",
            "Trace spans dropped because the export queue was full",
            self.dropped.clone(),
        );
        registry.register(
            "skiff_tracing_spans_failed",
            "Trace spans lost in an export the collector refused or did not answer",
            self.failed.clone(),
        );
    }
}

/// The queue to one collector's export task. Dropping the last handle flushes what is
/// queued and ends the task.
#[derive(Debug)]
pub(crate) struct Exporter {
    tx: mpsc::Sender<Span>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) collector: String,
}

impl Exporter {
    /// Starts the export task for `collector` (`host:port`) on `runtime`.
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        collector: &str,
        resource: Resource,
        queue: usize,
        stats: Arc<Stats>,
    ) -> Arc<Exporter> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        runtime.spawn(run(collector.to_owned(), resource, rx, stats.clone()));
        Arc::new(Exporter {
            tx,
            stats,
            collector: collector.to_owned(),
        })
    }

    /// Queues a finished span; drops it (counted) when the queue is full.
    pub(crate) fn send(&self, span: Span) {
        if self.tx.try_send(span).is_err() {
            let n = self.stats.dropped.inc() + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    collector = %self.collector,
                    dropped = n,
                    "trace spans dropped: the export queue is full"
                );
            }
        }
    }
}

async fn run(
    collector: String,
    resource: Resource,
    mut rx: mpsc::Receiver<Span>,
    stats: Arc<Stats>,
) {
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{collector}")) {
        Ok(e) => e
            .connect_timeout(Duration::from_secs(2))
            .timeout(EXPORT_TIMEOUT),
        Err(e) => {
            tracing::warn!(%collector, "the trace collector address is not usable: {e}");
            // Keep draining, so senders see a queue and count nothing as dropped twice.
            while let Some(_span) = rx.recv().await {
                stats.failed.inc();
            }
            return;
        }
    };
    let mut client = TraceServiceClient::new(endpoint.connect_lazy());
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::with_capacity(64);
        batch.push(first);
        let flush = tokio::time::sleep(FLUSH_AFTER);
        tokio::pin!(flush);
        while batch.len() < MAX_BATCH {
            tokio::select! {
                span = rx.recv() => match span {
                    Some(s) => batch.push(s),
                    None => break,
                },
                () = &mut flush => break,
            }
        }
        let n = batch.len() as u64;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "skiff-proxy".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..InstrumentationScope::default()
                    }),
                    spans: batch,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        match client.export(request).await {
            Ok(_) => {
                stats.exported.inc_by(n);
            }
            Err(e) => {
                stats.failed.inc_by(n);
                tracing::debug!(%collector, spans = n, "trace export failed: {}", e.message());
            }
        }
    }
}
