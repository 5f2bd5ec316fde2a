//! What the Telemetry API changes in the standard metrics, resolved when a config is
//! applied: per side (client: outbound and gateway; server: inbound) and per metric,
//! whether it is recorded and which labels its series carry (REMOVE drops one, UPSERT
//! sets one: a constant, or a CEL expression evaluated per request, see [`tags`]). A
//! request finds the plan of its side with one atomic load; the labels are applied only
//! when a series is first made.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use skiff_model::config::{MetricsConfig, TelemetryConfig};

pub(crate) mod tags;

pub(crate) use tags::{Tags, Values};

/// The value an UPSERT gives a label.
#[derive(Debug, PartialEq, Eq)]
enum Upsert {
    /// A constant expression's value.
    Fixed(String),
    /// The value of the side's expression of that index ([`Tags`]), per request.
    Evaluated(usize),
}

/// The label changes of one metric.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    removed: Vec<String>,
    upserts: Vec<(String, Upsert)>,
}

impl Plan {
    /// The labels of a series as this metric shows them, with the values of its side's
    /// evaluated tags.
    fn apply<'a>(
        &'a self,
        pairs: Vec<(&'a str, Cow<'a, str>)>,
        values: Option<&'a Values>,
    ) -> Vec<(&'a str, Cow<'a, str>)> {
        if self.removed.is_empty() && self.upserts.is_empty() {
            return pairs;
        }
        let value = |u: &'a Upsert| -> Cow<'a, str> {
            match u {
                Upsert::Fixed(v) => Cow::Borrowed(v.as_str()),
                Upsert::Evaluated(i) => Cow::Borrowed(
                    values
                        .and_then(|v| v.get(*i))
                        .map_or(tags::UNKNOWN, |v| &**v),
                ),
            }
        };
        let mut out: Vec<(&str, Cow<'_, str>)> = pairs
            .into_iter()
            .filter(|(k, _)| !self.removed.iter().any(|r| r == k))
            .map(|(k, v)| match self.upserts.iter().find(|(n, _)| n == k) {
                Some((_, u)) => (k, value(u)),
                None => (k, v),
            })
            .collect();
        for (n, u) in &self.upserts {
            if !out.iter().any(|(k, _)| k == n) {
                out.push((n.as_str(), value(u)));
            }
        }
        out
    }
}

/// The plans of one side: `None` for a metric that is not recorded.
#[derive(Debug)]
pub(crate) struct SidePlans {
    /// No metric of this side is recorded.
    pub(crate) off: bool,
    pub(crate) requests: Option<Arc<Plan>>,
    pub(crate) duration: Option<Arc<Plan>>,
    pub(crate) request_bytes: Option<Arc<Plan>>,
    pub(crate) response_bytes: Option<Arc<Plan>>,
    pub(crate) request_messages: Option<Arc<Plan>>,
    pub(crate) response_messages: Option<Arc<Plan>>,
    pub(crate) tcp_opened: Option<Arc<Plan>>,
    pub(crate) tcp_closed: Option<Arc<Plan>>,
    pub(crate) tcp_sent: Option<Arc<Plan>>,
    pub(crate) tcp_received: Option<Arc<Plan>>,
    /// The tag values this side evaluates per request, if any.
    pub(crate) tags: Option<Arc<Tags>>,
}

impl SidePlans {
    fn of(cfg: &MetricsConfig) -> SidePlans {
        let mut tags = Tags::default();
        let mut plan = |metric: &str| -> Option<Arc<Plan>> {
            if cfg.disabled {
                return None;
            }
            let Some(o) = cfg.for_metric(metric) else {
                return Some(Arc::new(Plan::default()));
            };
            if o.disabled {
                return None;
            }
            let mut p = Plan::default();
            for t in &o.tags {
                match &t.value {
                    None => p.removed.push(t.name.clone()),
                    Some(expr) => match constant(expr) {
                        Some(Ok(v)) => p.upserts.push((t.name.clone(), Upsert::Fixed(v))),
                        Some(Err(e)) => tracing::warn!(
                            metric,
                            tag = %t.name,
                            error = %e,
                            "tag override left out"
                        ),
                        None => match tags.add(expr) {
                            Ok(i) => p.upserts.push((t.name.clone(), Upsert::Evaluated(i))),
                            // Refused when the config was loaded; a control plane of
                            // another version may still send one.
                            Err(e) => tracing::warn!(
                                metric,
                                tag = %t.name,
                                error = %e,
                                "tag override left out"
                            ),
                        },
                    },
                }
            }
            Some(Arc::new(p))
        };
        SidePlans {
            off: cfg.disabled,
            requests: plan("REQUEST_COUNT"),
            duration: plan("REQUEST_DURATION"),
            request_bytes: plan("REQUEST_SIZE"),
            response_bytes: plan("RESPONSE_SIZE"),
            request_messages: plan("GRPC_REQUEST_MESSAGES"),
            response_messages: plan("GRPC_RESPONSE_MESSAGES"),
            tcp_opened: plan("TCP_OPENED_CONNECTIONS"),
            tcp_closed: plan("TCP_CLOSED_CONNECTIONS"),
            tcp_sent: plan("TCP_SENT_BYTES"),
            tcp_received: plan("TCP_RECEIVED_BYTES"),
            tags: (!tags.is_empty()).then(|| Arc::new(tags)),
        }
    }
}

/// A constant CEL expression's value, as label text; `None` for an expression that
/// reads attributes.
fn constant(expr: &str) -> Option<Result<String, String>> {
    let program = match cel::Program::compile(expr) {
        Ok(p) => p,
        Err(e) => return Some(Err(e.to_string())),
    };
    if !skiff_api::cel::is_constant(&program) {
        return None;
    }
    Some(
        program
            .execute(&cel::Context::default())
            .map_err(|e| e.to_string())
            .map(|v| tags::text(&v)),
    )
}

/// Both sides' plans, with an id that tells cached series of another plan apart.
#[derive(Debug)]
pub(crate) struct Plans {
    pub(crate) id: u64,
    pub(crate) client: SidePlans,
    pub(crate) server: SidePlans,
    /// What they were made from, to skip an unchanged config.
    source: (MetricsConfig, MetricsConfig),
}

impl Plans {
    pub(crate) fn of(t: &TelemetryConfig) -> Plans {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Plans {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            client: SidePlans::of(&t.client.metrics),
            server: SidePlans::of(&t.server.metrics),
            source: (t.client.metrics.clone(), t.server.metrics.clone()),
        }
    }

    pub(crate) fn made_from(&self, t: &TelemetryConfig) -> bool {
        self.source.0 == t.client.metrics && self.source.1 == t.server.metrics
    }
}

/// A label set that can list its labels.
pub(crate) trait Pairs {
    fn pairs(&self) -> Vec<(&'static str, Cow<'_, str>)>;
}

/// A series' labels as one metric shows them: equal (one series) when the labels that
/// metric keeps are equal.
#[derive(Debug, Clone)]
pub(crate) struct Planned<L> {
    pub(crate) labels: L,
    pub(crate) plan: Arc<Plan>,
    /// The values of the side's evaluated tags for this series.
    pub(crate) values: Option<Values>,
}

impl<L: Pairs> Planned<L> {
    fn shown(&self) -> Vec<(&str, Cow<'_, str>)> {
        let pairs = self.labels.pairs();
        self.plan.apply(pairs, self.values.as_ref())
    }
}

impl<L: Pairs> PartialEq for Planned<L> {
    fn eq(&self, other: &Self) -> bool {
        self.shown() == other.shown()
    }
}
impl<L: Pairs> Eq for Planned<L> {}
impl<L: Pairs> Hash for Planned<L> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.shown().hash(state)
    }
}

impl<L: Pairs> EncodeLabelSet for Planned<L> {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        let shown = self.shown();
        let refs: Vec<(&str, &str)> = shown.iter().map(|(k, v)| (*k, v.as_ref())).collect();
        refs.encode(encoder)
    }
}
