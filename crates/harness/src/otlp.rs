//! An OpenTelemetry collector for tests: a tonic server built from the OTLP protos
//! (`opentelemetry.proto.collector.trace.v1.TraceService`) that keeps every span it is
//! sent, for tests to look at.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;

/// A span as the collector got it, with the `service.name` of its resource.
#[derive(Debug, Clone)]
pub struct Got {
    /// The `service.name` of the span's resource.
    pub service: String,
    /// The span.
    pub span: Span,
}

impl Got {
    /// The value of tag `key`, as text.
    pub fn tag(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                any_value::Value::IntValue(i) => Some(i.to_string()),
                _ => None,
            })
    }
    /// The trace id, in hex.
    pub fn trace(&self) -> String {
        hex(&self.span.trace_id)
    }
    /// The span id, in hex.
    pub fn id(&self) -> String {
        hex(&self.span.span_id)
    }
    /// The parent span id, in hex (empty for a root).
    pub fn parent(&self) -> String {
        hex(&self.span.parent_span_id)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// The collector: keeps every span it is sent.
#[derive(Debug, Clone, Default)]
pub struct Collector(Arc<Mutex<Vec<Got>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    got.push(Got {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Starts one on loopback; its port.
    pub async fn start() -> anyhow::Result<(Collector, u16)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let c = Collector::default();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(c.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(server);
        Ok((c, port))
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Got> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The spans of `trace`, once there are `n` (spans are sent in batches, about a
    /// second after a request).
    pub async fn trace(&self, trace: &str, n: usize) -> anyhow::Result<Vec<Got>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let spans: Vec<Got> = self
                .spans()
                .into_iter()
                .filter(|g| g.trace() == trace)
                .collect();
            if spans.len() >= n {
                return Ok(spans);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "{} spans of trace {trace}, wanted {n}: {spans:#?}",
                    spans.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
