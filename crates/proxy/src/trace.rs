//! Distributed tracing as Istio's sidecars and gateways do it: trace context
//! propagation (W3C and B3, `trace/context.rs`), a span per request and hop — a server
//! span inbound, a client span outbound and at gateways — with Istio's tags
//! (`trace/spans.rs`), sampling (Telemetry `randomSamplingPercentage`, Istio's 1% by
//! default), and export over OTLP/gRPC to the collector the mesh config's
//! `extensionProviders` names (`trace/export.rs`).
//!
//! The settings come compiled in the config (`ProxyConfig.telemetry.<side>.tracing`,
//! resolved by the model); [`Tracing::set`] turns them into a plan per side off the
//! request path. On the request path, a side without tracing costs one atomic load; a
//! request that is not sampled costs the header lookups and the draw, and allocates
//! nothing. A sampled one is written into the request's headers (the app and the next
//! hop see this proxy's span as the parent) and its span is made when its record is
//! finished.
//!
//! Sampling: a sampling decision that came with the request (`traceparent` flags,
//! `x-b3-sampled`, the `b3` sampled field) is kept, so a sampled parent has sampled
//! children. Without one, the proxy draws: with `useRequestIdForTraceSampling` (Istio's
//! default) the draw is a hash of the `x-request-id`, so every skiff proxy a request
//! passes takes the same decision without telling the next one; else it is random.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span;
use skiff_model::config::{Node, SpanTagValue, TelemetryConfig, TracingConfig};

use crate::conn::Role;

pub(crate) mod context;
mod export;
mod spans;

pub(crate) use export::Exporter;
pub(crate) use spans::finish;
use spans::kv;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The tracing of one proxy: a plan per side, swapped whole when the config changes.
#[derive(Debug)]
pub(crate) struct Tracing {
    plans: ArcSwap<Plans>,
    runtime: Option<tokio::runtime::Handle>,
    /// The exporters' counts, shared by all of them.
    pub(crate) stats: Arc<export::Stats>,
}

#[derive(Debug, Default)]
struct Plans {
    made_from: Option<(Option<TracingConfig>, Option<TracingConfig>, Node)>,
    client: Option<Arc<Plan>>,
    server: Option<Arc<Plan>>,
}

/// What one side does with requests.
#[derive(Debug)]
pub(crate) struct Plan {
    per_10000: u32,
    use_request_id: bool,
    istio_tags: bool,
    kind: span::SpanKind,
    /// `None`: `disableSpanReporting` (context is forwarded, nothing is exported).
    exporter: Option<Arc<Exporter>>,
    own: Arc<Own>,
    /// Custom tags with a fixed value (literals and environment variables, read when
    /// the config is applied).
    fixed_tags: Vec<(String, String)>,
    /// Custom tags read from request headers.
    header_tags: Vec<(String, HeaderName, Option<String>)>,
}

/// This proxy's own tags.
#[derive(Debug, PartialEq)]
struct Own {
    node_id: String,
    namespace: String,
    canonical_service: String,
    canonical_revision: String,
    mesh_id: String,
}

impl Own {
    fn of(node: &Node) -> Own {
        let label = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| node.labels.get(*k))
                .map(String::as_str)
        };
        let canonical_service = label(&[
            "service.istio.io/canonical-name",
            "app.kubernetes.io/name",
            "app",
        ])
        .unwrap_or(&node.name)
        .to_owned();
        let canonical_revision = label(&[
            "service.istio.io/canonical-revision",
            "app.kubernetes.io/version",
            "version",
        ])
        .unwrap_or("latest")
        .to_owned();
        // Istio's mesh id defaults to the trust domain.
        let mesh_id = node
            .spiffe_id
            .strip_prefix("spiffe://")
            .and_then(|s| s.split('/').next())
            .filter(|s| !s.is_empty())
            .unwrap_or("cluster.local")
            .to_owned();
        Own {
            node_id: node.id.clone(),
            namespace: node.namespace.clone(),
            canonical_service,
            canonical_revision,
            mesh_id,
        }
    }

    /// The OTLP resource: `service.name` as Istio's OpenTelemetry provider names it
    /// (`<canonical service>.<namespace>`).
    fn resource(&self) -> Resource {
        Resource {
            attributes: vec![
                kv(
                    "service.name",
                    format!("{}.{}", self.canonical_service, self.namespace),
                ),
                kv("service.namespace", self.namespace.clone()),
            ],
            ..Resource::default()
        }
    }
}

/// A sampled request's span, from its start to its record's end.
#[derive(Debug)]
pub(crate) struct Started {
    plan: Arc<Plan>,
    trace_id: u128,
    span_id: u64,
    parent: Option<u64>,
    tracestate: Option<HeaderValue>,
    request_id: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    headers: Vec<Option<HeaderValue>>,
}

impl Started {
    /// The trace this span belongs to.
    #[cfg(test)]
    pub(crate) fn ids(&self) -> (u128, u64, Option<u64>) {
        (self.trace_id, self.span_id, self.parent)
    }
}

impl Default for Tracing {
    fn default() -> Self {
        Tracing {
            plans: ArcSwap::from_pointee(Plans::default()),
            runtime: tokio::runtime::Handle::try_current().ok(),
            stats: Arc::default(),
        }
    }
}

impl Tracing {
    /// Takes the tracing settings of a config being applied (off the request path).
    /// A collector already exported to keeps its queue and task.
    pub(crate) fn set(&self, telemetry: &TelemetryConfig, node: &Node) {
        let current = self.plans.load();
        let key = (
            telemetry.client.tracing.clone(),
            telemetry.server.tracing.clone(),
            node.clone(),
        );
        if current.made_from.as_ref() == Some(&key) {
            return;
        }
        let own = Arc::new(Own::of(node));
        let reuse = |collector: &str| {
            [&current.client, &current.server]
                .into_iter()
                .flatten()
                .filter_map(|p| p.exporter.as_ref())
                .find(|e| e.collector == collector && current_own(&current) == Some(&*own))
                .cloned()
        };
        let mut started: Vec<Arc<Exporter>> = Vec::new();
        let mut plan = |t: &Option<TracingConfig>, kind| -> Option<Arc<Plan>> {
            let t = t.as_ref()?;
            let collector = t.collector.as_deref()?;
            let exporter = if t.disabled {
                None
            } else if let Some(e) = started.iter().find(|e| e.collector == collector) {
                Some(e.clone())
            } else {
                let e = match reuse(collector) {
                    Some(e) => e,
                    None => {
                        let runtime = self
                            .runtime
                            .clone()
                            .or_else(|| tokio::runtime::Handle::try_current().ok())?;
                        Exporter::start(
                            &runtime,
                            collector,
                            own.resource(),
                            export::QUEUE,
                            self.stats.clone(),
                        )
                    }
                };
                started.push(e.clone());
                Some(e)
            };
            Some(Arc::new(Plan::of(t, kind, exporter, own.clone())))
        };
        let client = plan(&telemetry.client.tracing, span::SpanKind::Client);
        let server = plan(&telemetry.server.tracing, span::SpanKind::Server);
        self.plans.store(Arc::new(Plans {
            made_from: Some(key),
            client,
            server,
        }));
    }

    /// Starts the span of a request on a listener of `role`, when its side traces and
    /// the request is sampled: writes this proxy's span into the headers (and, on the
    /// client side, gives the request its `x-request-id` now, for the draw).
    pub(crate) fn start(&self, role: Role, headers: &mut HeaderMap) -> Option<Box<Started>> {
        let plans = self.plans.load();
        let plan = match role {
            Role::Inbound => plans.server.as_ref()?,
            Role::Outbound | Role::Gateway(_) => plans.client.as_ref()?,
        };
        let incoming = context::read(headers);
        let request_id = match role {
            Role::Inbound => headers.get(&X_REQUEST_ID).cloned(),
            _ => Some(crate::forward::ensure_request_id(headers)),
        };
        let sampled = match incoming.and_then(|i| i.sampled) {
            Some(s) => s,
            None => plan.draw(request_id.as_ref()),
        };
        if !sampled {
            return None;
        }
        let trace_id = incoming.map_or_else(new_trace_id, |i| i.trace_id);
        let span_id = new_span_id();
        let parent = incoming.map(|i| i.span_id);
        context::inject(
            headers,
            trace_id,
            span_id,
            parent,
            incoming.map(|i| i.styles).unwrap_or_default(),
        );
        // `disableSpanReporting`: the context goes on, no span is kept.
        plan.exporter.as_ref()?;
        Some(Box::new(Started {
            plan: plan.clone(),
            trace_id,
            span_id,
            parent,
            tracestate: headers.get(&TRACESTATE).cloned(),
            request_id,
            user_agent: headers.get(http::header::USER_AGENT).cloned(),
            headers: plan
                .header_tags
                .iter()
                .map(|(_, h, _)| headers.get(h).cloned())
                .collect(),
        }))
    }
}

fn current_own(p: &Plans) -> Option<&Own> {
    p.client.as_ref().or(p.server.as_ref()).map(|p| &*p.own)
}

impl Plan {
    fn of(
        t: &TracingConfig,
        kind: span::SpanKind,
        exporter: Option<Arc<Exporter>>,
        own: Arc<Own>,
    ) -> Plan {
        let mut fixed_tags = Vec::new();
        let mut header_tags = Vec::new();
        for tag in &t.custom_tags {
            match &tag.value {
                SpanTagValue::Literal(v) => fixed_tags.push((tag.name.clone(), v.clone())),
                SpanTagValue::Environment { name, default } => {
                    if let Some(v) = std::env::var(name).ok().or_else(|| default.clone()) {
                        fixed_tags.push((tag.name.clone(), v));
                    }
                }
                SpanTagValue::Header { name, default } => match HeaderName::try_from(name.as_str())
                {
                    Ok(h) => header_tags.push((tag.name.clone(), h, default.clone())),
                    Err(_) => {
                        tracing::warn!(tag = %tag.name, header = %name, "custom span tag: not a header name")
                    }
                },
            }
        }
        Plan {
            per_10000: t.sampling_per_10000(),
            use_request_id: t.use_request_id_for_trace_sampling,
            istio_tags: t.enable_istio_tags,
            kind,
            exporter,
            own,
            fixed_tags,
            header_tags,
        }
    }

    /// Whether a request without a sampling decision is sampled.
    fn draw(&self, request_id: Option<&HeaderValue>) -> bool {
        match self.per_10000 {
            0 => false,
            10_000.. => true,
            p => {
                let n = match request_id {
                    Some(id) if self.use_request_id => fnv1a(id.as_bytes()),
                    _ => rand::random::<u64>(),
                };
                (n % 10_000) < u64::from(p)
            }
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn new_trace_id() -> u128 {
    loop {
        let t: u128 = rand::random();
        if t != 0 {
            return t;
        }
    }
}

fn new_span_id() -> u64 {
    loop {
        let s: u64 = rand::random();
        if s != 0 {
            return s;
        }
    }
}

#[cfg(test)]
mod tests;
