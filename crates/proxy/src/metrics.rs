//! Istio's standard metrics, written from the [`Record`] of every finished request and
//! TCP connection: `istio_requests_total`, `istio_request_duration_milliseconds`,
//! `istio_request_bytes`, `istio_response_bytes` for HTTP and gRPC;
//! `istio_request_messages_total`, `istio_response_messages_total` for gRPC;
//! `istio_tcp_connections_opened_total`, `istio_tcp_connections_closed_total`,
//! `istio_tcp_sent_bytes_total`, `istio_tcp_received_bytes_total` for TCP; with Istio's
//! label set (`reporter`, `source_*`, `destination_*`, `request_protocol`,
//! `response_code`, `grpc_response_status`, `response_flags`,
//! `connection_security_policy`); and Istio's `istio_build` gauge (`component="proxy"`,
//! `tag` the version).
//!
//! The request path does not build label sets: each side of a request is a value made
//! once (this proxy's [`Workload`], a peer's from its transport header, an endpoint's
//! from the compiled config, a cluster's [`Service`]), and the series of a combination
//! is looked up once per worker thread in a cache keyed by those values' ids and the
//! response code and flag. A hit costs a hash of a few integers and atomic increments;
//! no lock is taken.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use skiff_model::config::{Node, TelemetryConfig};

use crate::ResponseFlag;
use crate::conn::Role;
use crate::record::{Record, grpc};

mod histogram;
pub(crate) mod peer;
mod plan;
mod process;

use histogram::Histogram;
pub(crate) use peer::{Service, Workload};
use plan::{Pairs, Plan, Planned, Plans, SidePlans, Values};

/// Which proxy of a hop reports a series: the caller's (`source`) or the callee's
/// (`destination`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Reporter {
    Source,
    Destination,
}

/// The side-independent labels of a series: who called whom, over what.
#[derive(Debug, Clone)]
struct Edge {
    reporter: Reporter,
    source: Arc<Workload>,
    destination: Arc<Workload>,
    service: Arc<Service>,
    /// `http`, `grpc` or `tcp`.
    protocol: &'static str,
    /// `mutual_tls`, `none` or `unknown` (what the source reporter says: it does not
    /// check the server's policy).
    security: &'static str,
}

impl Edge {
    fn labels(&self) -> [(&'static str, &str); 22] {
        let (s, d, svc) = (&*self.source, &*self.destination, &*self.service);
        [
            (
                "reporter",
                match self.reporter {
                    Reporter::Source => "source",
                    Reporter::Destination => "destination",
                },
            ),
            ("source_workload", &s.name),
            ("source_workload_namespace", &s.namespace),
            ("source_principal", &s.principal),
            ("source_app", &s.app),
            ("source_version", &s.version),
            ("source_canonical_service", &s.canonical_service),
            ("source_canonical_revision", &s.canonical_revision),
            ("source_cluster", &s.cluster),
            ("destination_workload", &d.name),
            ("destination_workload_namespace", &d.namespace),
            ("destination_principal", &d.principal),
            ("destination_app", &d.app),
            ("destination_version", &d.version),
            ("destination_service", &svc.host),
            ("destination_service_name", &svc.name),
            ("destination_service_namespace", &svc.namespace),
            ("destination_canonical_service", &d.canonical_service),
            ("destination_canonical_revision", &d.canonical_revision),
            ("destination_cluster", &d.cluster),
            ("request_protocol", self.protocol),
            ("connection_security_policy", self.security),
        ]
    }

    /// The ids that stand for the label values in the thread-local caches.
    fn ids(&self) -> [u64; 4] {
        [
            self.source.id,
            self.destination.id,
            self.service.id,
            u64::from(self.reporter == Reporter::Source)
                | code_of(self.protocol, &["http", "grpc", "tcp"]) << 8
                | code_of(self.security, &["mutual_tls", "none", "unknown"]) << 16,
        ]
    }
}

/// The position of `value` among `known` (from 1), 0 for another: a cache key part.
fn code_of(value: &str, known: &[&str]) -> u64 {
    known
        .iter()
        .position(|k| *k == value)
        .map_or(0, |i| i as u64 + 1)
}

/// `response_flags` as Envoy joins them: the failure's own, then `URX` when retries ran
/// out; `-` for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flags(ResponseFlag, bool);

impl Flags {
    fn of(r: &Record) -> Flags {
        Flags(r.flag, r.retries_exhausted)
    }

    fn code(self) -> u64 {
        // A flag's text is unique; its first bytes and length tell them apart.
        let s = self.0.as_str().as_bytes();
        let mut c = s.len() as u64;
        for &b in s.iter().take(4) {
            c = c << 8 | u64::from(b);
        }
        c << 1 | u64::from(self.1)
    }

    fn text(self) -> std::borrow::Cow<'static, str> {
        match self {
            Flags(ResponseFlag::None, true)
            | Flags(ResponseFlag::UpstreamRetryLimitExceeded, _) => "URX".into(),
            Flags(flag, true) => format!("{},URX", flag.as_str()).into(),
            Flags(flag, false) => flag.as_str().into(),
        }
    }
}

/// The labels of an HTTP series, before a metric's Telemetry overrides.
#[derive(Debug, Clone)]
struct HttpLabels {
    edge: Edge,
    code: u16,
    /// `grpc_response_status`: 0–16, or `None` (empty).
    grpc: Option<u8>,
    flags: Flags,
}

impl Pairs for HttpLabels {
    fn pairs(&self) -> Vec<(&'static str, Cow<'_, str>)> {
        let mut v: Vec<(&'static str, Cow<'_, str>)> = Vec::with_capacity(25);
        v.extend(self.edge.labels().map(|(k, v)| (k, Cow::Borrowed(v))));
        v.push(("response_code", Cow::Owned(self.code.to_string())));
        v.push((
            "grpc_response_status",
            Cow::Borrowed(grpc::label(self.grpc)),
        ));
        v.push(("response_flags", self.flags.text()));
        v
    }
}

/// The labels of a gRPC message counter: who called whom, as Istio's stats filter
/// reports them while a stream is open (no protocol, code, status, flags or policy).
#[derive(Debug, Clone)]
struct MessageLabels {
    edge: Edge,
}

impl Pairs for MessageLabels {
    fn pairs(&self) -> Vec<(&'static str, Cow<'_, str>)> {
        self.edge
            .labels()
            .into_iter()
            .filter(|(k, _)| !matches!(*k, "request_protocol" | "connection_security_policy"))
            .map(|(k, v)| (k, Cow::Borrowed(v)))
            .collect()
    }
}

/// The labels of a TCP series: no response code.
#[derive(Debug, Clone)]
struct TcpLabels {
    edge: Edge,
    flags: Flags,
}

impl Pairs for TcpLabels {
    fn pairs(&self) -> Vec<(&'static str, Cow<'_, str>)> {
        let mut v: Vec<(&'static str, Cow<'_, str>)> = Vec::with_capacity(23);
        v.extend(self.edge.labels().map(|(k, v)| (k, Cow::Borrowed(v))));
        v.push(("response_flags", self.flags.text()));
        v
    }
}

type HistFamily<L> = Family<Planned<L>, Histogram, fn() -> Histogram>;
type CounterFamily<L> = Family<Planned<L>, Counter>;

/// The handles of one HTTP series (`None`: that metric is not recorded).
#[derive(Debug, Clone)]
struct HttpSeries {
    requests: Option<Counter>,
    duration: Option<Histogram>,
    request_bytes: Option<Histogram>,
    response_bytes: Option<Histogram>,
    /// gRPC requests only.
    request_messages: Option<Counter>,
    response_messages: Option<Counter>,
}

impl HttpSeries {
    /// The request metrics' handles (not the message counters').
    fn of(
        m: &Metrics,
        side: &SidePlans,
        labels: &HttpLabels,
        values: &Option<Values>,
    ) -> HttpSeries {
        HttpSeries {
            requests: series(&m.requests, labels, &side.requests, values),
            duration: series(&m.duration, labels, &side.duration, values),
            request_bytes: series(&m.request_bytes, labels, &side.request_bytes, values),
            response_bytes: series(&m.response_bytes, labels, &side.response_bytes, values),
            request_messages: None,
            response_messages: None,
        }
    }
}

/// The handles of one TCP series.
#[derive(Debug, Clone)]
struct TcpSeries {
    opened: Option<Counter>,
    closed: Option<Counter>,
    sent: Option<Counter>,
    received: Option<Counter>,
}

/// The handle of `labels` in `family` under `plan`, when the metric is recorded.
fn series<
    L: Pairs + Clone,
    M: Clone,
    C: prometheus_client::metrics::family::MetricConstructor<M>,
>(
    family: &Family<Planned<L>, M, C>,
    labels: &L,
    plan: &Option<Arc<Plan>>,
    values: &Option<Values>,
) -> Option<M> {
    let plan = plan.as_ref()?;
    Some(family.get_or_create_owned(&Planned {
        labels: labels.clone(),
        plan: plan.clone(),
        values: values.clone(),
    }))
}

/// The values of the side's evaluated tags for `r` and their id (`(0, None)`: the
/// side has none, and a record costs nothing more).
fn evaluated(side: &SidePlans, r: &Record) -> (u32, Option<Values>) {
    match &side.tags {
        None => (0, None),
        Some(t) => {
            let (id, v) = t.evaluate(r);
            (id, Some(v))
        }
    }
}

/// Thread-local caches stop growing here and start again empty.
const CACHE_LIMIT: usize = 4096;

/// `(plans id, edge ids, response code and gRPC status, flags, evaluated tags' id)`.
type CacheKey = (u64, [u64; 4], u32, u64, u32);

thread_local! {
    static HTTP_CACHE: RefCell<HashMap<CacheKey, HttpSeries>> = RefCell::new(HashMap::new());
    static TCP_CACHE: RefCell<HashMap<CacheKey, TcpSeries>> = RefCell::new(HashMap::new());
}

/// This proxy's own workload, without and with its principal.
#[derive(Debug)]
struct Own {
    node: Node,
    plain: Arc<Workload>,
    mtls: Arc<Workload>,
    /// What the transport header carries to peer proxies.
    exchange: bytes::Bytes,
}

impl Own {
    fn of(node: &Node) -> Own {
        let name = if node.name.is_empty() {
            peer::UNKNOWN
        } else {
            &node.name
        };
        let ns = if node.namespace.is_empty() {
            peer::UNKNOWN
        } else {
            &node.namespace
        };
        let plain = Workload::from_labels(name, ns, None, &node.labels);
        let principal = (!node.spiffe_id.is_empty()).then_some(node.spiffe_id.as_str());
        let mtls = plain.with_principal(principal);
        Own {
            node: node.clone(),
            exchange: plain.encode_exchange().into(),
            plain,
            mtls,
        }
    }
}

/// An inbound peer: its transport-header extensions and the principal it proved.
type PeerKey = (Box<[u8]>, Option<Arc<str>>);

/// Peers seen on inbound connections, kept while there are at most this many.
const PEERS_LIMIT: usize = 1024;

/// The standard metrics of one proxy.
#[derive(Debug)]
pub(crate) struct Metrics {
    requests: CounterFamily<HttpLabels>,
    duration: HistFamily<HttpLabels>,
    request_bytes: HistFamily<HttpLabels>,
    response_bytes: HistFamily<HttpLabels>,
    request_messages: CounterFamily<MessageLabels>,
    response_messages: CounterFamily<MessageLabels>,
    tcp_opened: CounterFamily<TcpLabels>,
    tcp_closed: CounterFamily<TcpLabels>,
    tcp_sent: CounterFamily<TcpLabels>,
    tcp_received: CounterFamily<TcpLabels>,
    own: ArcSwap<Own>,
    /// What the Telemetry API changes, per side and metric.
    plans: ArcSwap<Plans>,
    /// A tag value of the plans reads request headers.
    headers: std::sync::atomic::AtomicBool,
    unknown: Arc<Workload>,
    unknown_service: Arc<Service>,
    /// Inbound peers by their exchanged bytes and principal, so the same caller is the
    /// same value (and its series are found in the caches) across connections.
    peers: Mutex<HashMap<PeerKey, Arc<Workload>>>,
    /// Services by cluster name, for TCP connections.
    services: Mutex<HashMap<Arc<str>, Arc<Service>>>,
}

impl Metrics {
    /// Makes the metrics and registers them, with the process metrics, in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Arc<Metrics> {
        let millis: fn() -> Histogram = || Histogram::new(1000);
        let bytes: fn() -> Histogram = || Histogram::new(1);
        let m = Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(millis),
            request_bytes: Family::new_with_constructor(bytes),
            response_bytes: Family::new_with_constructor(bytes),
            request_messages: Family::default(),
            response_messages: Family::default(),
            tcp_opened: Family::default(),
            tcp_closed: Family::default(),
            tcp_sent: Family::default(),
            tcp_received: Family::default(),
            own: ArcSwap::from_pointee(Own::of(&Node::default())),
            plans: ArcSwap::from_pointee(Plans::of(&TelemetryConfig::default())),
            headers: std::sync::atomic::AtomicBool::new(false),
            unknown: Workload::unknown(),
            unknown_service: Service::unknown(),
            peers: Mutex::new(HashMap::new()),
            services: Mutex::new(HashMap::new()),
        };
        // Counters get their `_total` from the encoder.
        registry.register("istio_requests", "Requests processed", m.requests.clone());
        registry.register(
            "istio_request_duration_milliseconds",
            "Request durations in milliseconds",
            m.duration.clone(),
        );
        registry.register(
            "istio_request_bytes",
            "Request body sizes in bytes",
            m.request_bytes.clone(),
        );
        registry.register(
            "istio_response_bytes",
            "Response body sizes in bytes",
            m.response_bytes.clone(),
        );
        registry.register(
            "istio_request_messages",
            "gRPC messages sent by the client",
            m.request_messages.clone(),
        );
        registry.register(
            "istio_response_messages",
            "gRPC messages sent by the server",
            m.response_messages.clone(),
        );
        registry.register(
            "istio_tcp_connections_opened",
            "TCP connections opened",
            m.tcp_opened.clone(),
        );
        registry.register(
            "istio_tcp_connections_closed",
            "TCP connections closed",
            m.tcp_closed.clone(),
        );
        registry.register(
            "istio_tcp_sent_bytes",
            "Bytes sent to the downstream on TCP connections",
            m.tcp_sent.clone(),
        );
        registry.register(
            "istio_tcp_received_bytes",
            "Bytes received from the downstream on TCP connections",
            m.tcp_received.clone(),
        );
        // Istio's `istio_build` gauge: which build each component runs (Kiali and
        // Istio's control-plane dashboard read it).
        let build: Family<[(&'static str, &'static str); 2], Gauge> = Family::default();
        build
            .get_or_create(&[("component", "proxy"), ("tag", env!("CARGO_PKG_VERSION"))])
            .set(1);
        registry.register("istio_build", "Istio component build info", build);
        registry.register_collector(Box::new(process::Process::default()));
        Arc::new(m)
    }

    /// Takes this proxy's identity from a config being applied (off the request path).
    pub(crate) fn set_node(&self, node: &Node) {
        if self.own.load().node != *node {
            self.own.store(Arc::new(Own::of(node)));
        }
    }

    /// Takes the Telemetry API's metrics settings from a config being applied (off the
    /// request path). Series already made keep counting under their labels.
    pub(crate) fn set_telemetry(&self, telemetry: &TelemetryConfig) {
        if !self.plans.load().made_from(telemetry) {
            let plans = Plans::of(telemetry);
            let headers = [&plans.client, &plans.server]
                .iter()
                .any(|s| s.tags.as_ref().is_some_and(|t| t.headers));
            self.headers
                .store(headers, std::sync::atomic::Ordering::Relaxed);
            self.plans.store(Arc::new(plans));
        }
    }

    /// A tag value reads request headers: the records keep them.
    pub(crate) fn wants_headers(&self) -> bool {
        self.headers.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The transport-header extensions that tell a peer proxy who is calling.
    pub(crate) fn exchange(&self) -> bytes::Bytes {
        self.own.load().exchange.clone()
    }

    /// The workload of a caller, from its transport header's extensions and the
    /// identity its certificate proved; once per inbound connection.
    pub(crate) fn peer(&self, ext: &[u8], principal: Option<&Arc<str>>) -> Arc<Workload> {
        if ext.is_empty() && principal.is_none() {
            return self.unknown.clone();
        }
        let key = (Box::<[u8]>::from(ext), principal.cloned());
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = peers.get(&key) {
            return w.clone();
        }
        let p = principal.map(|p| &**p);
        let w = peer::decode_exchange(ext, p)
            .unwrap_or_else(|| Workload::from_fields([""; peer::EXCHANGED], p));
        if peers.len() < PEERS_LIMIT {
            peers.insert(key, w.clone());
        }
        w
    }

    /// The service of a cluster, by name (for TCP connections, once each).
    pub(crate) fn service(&self, cluster: &Arc<str>) -> Arc<Service> {
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = services.get(cluster) {
            return s.clone();
        }
        let s = Service::from_cluster(cluster);
        if services.len() < PEERS_LIMIT {
            services.insert(cluster.clone(), s.clone());
        }
        s
    }

    fn edge(&self, r: &Record, protocol: &'static str) -> Edge {
        let own = self.own.load();
        let service = match (&r.service, &r.cluster) {
            (Some(s), _) => s.clone(),
            (None, Some(c)) => self.service(c),
            (None, None) => self.unknown_service.clone(),
        };
        match r.conn.role {
            Role::Inbound => {
                let mtls = r.conn.tls.is_some();
                Edge {
                    reporter: Reporter::Destination,
                    source: r
                        .conn
                        .peer_workload
                        .clone()
                        .unwrap_or_else(|| self.unknown.clone()),
                    destination: if mtls {
                        own.mtls.clone()
                    } else {
                        own.plain.clone()
                    },
                    service,
                    protocol,
                    security: if mtls { "mutual_tls" } else { "none" },
                }
            }
            Role::Outbound | Role::Gateway(_) => {
                let upstream = r.upstream.as_deref();
                let mtls = upstream.is_some_and(|u| u.is_mesh_tls());
                Edge {
                    reporter: Reporter::Source,
                    source: if mtls {
                        own.mtls.clone()
                    } else {
                        own.plain.clone()
                    },
                    destination: upstream
                        .and_then(|u| u.workload.get().cloned())
                        .unwrap_or_else(|| self.unknown.clone()),
                    service,
                    protocol,
                    security: "unknown",
                }
            }
        }
    }

    /// Counts a finished HTTP request.
    pub(crate) fn http(&self, r: &Record, grpc: bool) {
        let plans = self.plans.load();
        let side = side_of(&plans, r);
        if side.off {
            return;
        }
        let edge = self.edge(r, if grpc { "grpc" } else { "http" });
        let flags = Flags::of(r);
        let grpc_status = r.grpc_label();
        let status_key = u32::from(r.status) | grpc_status.map_or(0, |c| u32::from(c) + 1) << 16;
        let (tags, values) = evaluated(side, r);
        let key = (plans.id, edge.ids(), status_key, flags.code(), tags);
        // Updated in place, in the worker's cache: a hit clones no handle.
        let observe = |series: &HttpSeries| {
            if let Some(c) = &series.requests {
                c.inc();
            }
            if let Some(h) = &series.duration {
                h.observe(r.started.elapsed().as_micros() as u64);
            }
            if let Some(h) = &series.request_bytes {
                h.observe(r.bytes_in());
            }
            if let Some(h) = &series.response_bytes {
                h.observe(r.bytes_out);
            }
            if let Some(c) = &series.request_messages {
                c.inc_by(r.request_messages());
            }
            if let Some(c) = &series.response_messages {
                c.inc_by(r.response_messages);
            }
        };
        HTTP_CACHE.with(|c| {
            let mut cache = c.borrow_mut();
            if let Some(s) = cache.get(&key) {
                observe(s);
                return;
            }
            let messages = grpc.then(|| MessageLabels { edge: edge.clone() });
            let message_series = |family, plan| {
                messages
                    .as_ref()
                    .and_then(|labels| series(family, labels, plan, &values))
            };
            let s = HttpSeries {
                request_messages: message_series(&self.request_messages, &side.request_messages),
                response_messages: message_series(&self.response_messages, &side.response_messages),
                ..HttpSeries::of(
                    self,
                    side,
                    &HttpLabels {
                        edge,
                        code: r.status,
                        grpc: grpc_status,
                        flags,
                    },
                    &values,
                )
            };
            observe(&s);
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key, s);
        });
    }

    fn tcp_series(&self, r: &Record) -> Option<TcpSeries> {
        let plans = self.plans.load();
        let side = side_of(&plans, r);
        if side.off {
            return None;
        }
        let edge = self.edge(r, "tcp");
        let flags = Flags::of(r);
        let (tags, values) = evaluated(side, r);
        let key = (plans.id, edge.ids(), 0, flags.code(), tags);
        let s = TCP_CACHE.with(|c| {
            let mut cache = c.borrow_mut();
            if let Some(s) = cache.get(&key) {
                return s.clone();
            }
            let labels = TcpLabels { edge, flags };
            let s = TcpSeries {
                opened: series(&self.tcp_opened, &labels, &side.tcp_opened, &values),
                closed: series(&self.tcp_closed, &labels, &side.tcp_closed, &values),
                sent: series(&self.tcp_sent, &labels, &side.tcp_sent, &values),
                received: series(&self.tcp_received, &labels, &side.tcp_received, &values),
            };
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key, s.clone());
            s
        });
        Some(s)
    }

    /// Counts a TCP connection that reached its upstream and starts to carry bytes.
    pub(crate) fn tcp_opened(&self, r: &Record) {
        if let Some(c) = self.tcp_series(r).and_then(|s| s.opened) {
            c.inc();
        }
    }

    /// Counts a TCP connection that ended: closed, and its bytes. A connection that
    /// never reached an upstream is counted opened here too, as Envoy counts every
    /// connection its TCP proxy accepted.
    pub(crate) fn tcp_closed(&self, r: &Record, opened: bool) {
        let Some(s) = self.tcp_series(r) else { return };
        if !opened && let Some(c) = &s.opened {
            c.inc();
        }
        if let Some(c) = &s.closed {
            c.inc();
        }
        if let Some(c) = &s.received {
            c.inc_by(r.bytes_in());
        }
        if let Some(c) = &s.sent {
            c.inc_by(r.bytes_out);
        }
    }
}

/// The plans of the side a record is on: inbound is the server side; outbound and
/// gateway traffic the client side (as Istio's gateways report).
fn side_of<'p>(plans: &'p Plans, r: &Record) -> &'p SidePlans {
    match r.conn.role {
        Role::Inbound => &plans.server,
        Role::Outbound | Role::Gateway(_) => &plans.client,
    }
}

#[cfg(test)]
mod tests;
