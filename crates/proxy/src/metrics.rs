//! Istio's standard metrics, written from the [`Record`] of every finished request and
//! TCP connection: `istio_requests_total`, `istio_request_duration_milliseconds`,
//! `istio_request_bytes`, `istio_response_bytes` for HTTP and gRPC;
//! `istio_tcp_connections_opened_total`, `istio_tcp_connections_closed_total`,
//! `istio_tcp_sent_bytes_total`, `istio_tcp_received_bytes_total` for TCP; with Istio's
//! label set (`reporter`, `source_*`, `destination_*`, `request_protocol`,
//! `response_code`, `grpc_response_status`, `response_flags`,
//! `connection_security_policy`).
//!
//! The request path does not build label sets: each side of a request is a value made
//! once (this proxy's [`Workload`], a peer's from its transport header, an endpoint's
//! from the compiled config, a cluster's [`Service`]), and the series of a combination
//! is looked up once per worker thread in a cache keyed by those values' ids and the
//! response code and flag. A hit costs a hash of a few integers and atomic increments;
//! no lock is taken.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use skiff_model::config::Node;

use crate::ResponseFlag;
use crate::conn::Role;
use crate::record::Record;

mod histogram;
pub(crate) mod peer;
mod process;

use histogram::Histogram;
pub(crate) use peer::{Service, Workload};

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

/// The label set of the HTTP series. Equal when every label value is equal, so a
/// value made twice (a config pushed again) is the same series.
#[derive(Debug, Clone)]
struct HttpLabels {
    edge: Edge,
    code: u16,
    flags: Flags,
}

impl HttpLabels {
    fn cmp_key(&self) -> impl Eq + Hash + '_ {
        let e = &self.edge;
        (e.labels(), self.code, self.flags.text())
    }
}

impl PartialEq for HttpLabels {
    fn eq(&self, other: &Self) -> bool {
        self.cmp_key() == other.cmp_key()
    }
}
impl Eq for HttpLabels {}
impl Hash for HttpLabels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.cmp_key().hash(state)
    }
}

impl EncodeLabelSet for HttpLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.edge.labels().encode(encoder)?;
        let code = self.code.to_string();
        let flags = self.flags.text();
        [
            ("response_code", code.as_str()),
            // skiff does not read gRPC trailers yet: the status is empty, as Istio
            // reports it for requests that are not gRPC.
            ("grpc_response_status", ""),
            ("response_flags", &flags),
        ]
        .encode(encoder)
    }
}

/// The label set of the TCP series: no response code.
#[derive(Debug, Clone)]
struct TcpLabels {
    edge: Edge,
    flags: Flags,
}

impl TcpLabels {
    fn cmp_key(&self) -> impl Eq + Hash + '_ {
        (self.edge.labels(), self.flags.text())
    }
}

impl PartialEq for TcpLabels {
    fn eq(&self, other: &Self) -> bool {
        self.cmp_key() == other.cmp_key()
    }
}
impl Eq for TcpLabels {}
impl Hash for TcpLabels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.cmp_key().hash(state)
    }
}

impl EncodeLabelSet for TcpLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.edge.labels().encode(encoder)?;
        [("response_flags", &*self.flags.text())].encode(encoder)
    }
}

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The handles of one HTTP series.
#[derive(Debug, Clone)]
struct HttpSeries {
    requests: Counter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

/// The handles of one TCP series.
#[derive(Debug, Clone)]
struct TcpSeries {
    opened: Counter,
    closed: Counter,
    sent: Counter,
    received: Counter,
}

/// Thread-local caches stop growing here and start again empty.
const CACHE_LIMIT: usize = 4096;

/// `(metrics id, edge ids, response code, flags)`.
type CacheKey = (u64, [u64; 4], u16, u64);

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
    id: u64,
    requests: Family<HttpLabels, Counter>,
    duration: HistFamily<HttpLabels>,
    request_bytes: HistFamily<HttpLabels>,
    response_bytes: HistFamily<HttpLabels>,
    tcp_opened: Family<TcpLabels, Counter>,
    tcp_closed: Family<TcpLabels, Counter>,
    tcp_sent: Family<TcpLabels, Counter>,
    tcp_received: Family<TcpLabels, Counter>,
    own: ArcSwap<Own>,
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
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let millis: fn() -> Histogram = || Histogram::new(1000);
        let bytes: fn() -> Histogram = || Histogram::new(1);
        let m = Metrics {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            requests: Family::default(),
            duration: Family::new_with_constructor(millis),
            request_bytes: Family::new_with_constructor(bytes),
            response_bytes: Family::new_with_constructor(bytes),
            tcp_opened: Family::default(),
            tcp_closed: Family::default(),
            tcp_sent: Family::default(),
            tcp_received: Family::default(),
            own: ArcSwap::from_pointee(Own::of(&Node::default())),
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
        registry.register_collector(Box::new(process::Process::default()));
        Arc::new(m)
    }

    /// Takes this proxy's identity from a config being applied (off the request path).
    pub(crate) fn set_node(&self, node: &Node) {
        if self.own.load().node != *node {
            self.own.store(Arc::new(Own::of(node)));
        }
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
        let edge = self.edge(r, if grpc { "grpc" } else { "http" });
        let flags = Flags::of(r);
        let key = (self.id, edge.ids(), r.status, flags.code());
        // Updated in place, in the worker's cache: a hit clones no handle.
        let observe = |series: &HttpSeries| {
            series.requests.inc();
            series
                .duration
                .observe(r.started.elapsed().as_micros() as u64);
            series.request_bytes.observe(r.bytes_in());
            series.response_bytes.observe(r.bytes_out);
        };
        HTTP_CACHE.with(|c| {
            let mut cache = c.borrow_mut();
            if let Some(s) = cache.get(&key) {
                observe(s);
                return;
            }
            let labels = HttpLabels {
                edge,
                code: r.status,
                flags,
            };
            let s = HttpSeries {
                requests: self.requests.get_or_create_owned(&labels),
                duration: self.duration.get_or_create_owned(&labels),
                request_bytes: self.request_bytes.get_or_create_owned(&labels),
                response_bytes: self.response_bytes.get_or_create_owned(&labels),
            };
            observe(&s);
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key, s);
        });
    }

    fn tcp_series(&self, r: &Record) -> TcpSeries {
        let edge = self.edge(r, "tcp");
        let flags = Flags::of(r);
        let key = (self.id, edge.ids(), 0, flags.code());
        TCP_CACHE.with(|c| {
            let mut cache = c.borrow_mut();
            if let Some(s) = cache.get(&key) {
                return s.clone();
            }
            let labels = TcpLabels { edge, flags };
            let s = TcpSeries {
                opened: self.tcp_opened.get_or_create_owned(&labels),
                closed: self.tcp_closed.get_or_create_owned(&labels),
                sent: self.tcp_sent.get_or_create_owned(&labels),
                received: self.tcp_received.get_or_create_owned(&labels),
            };
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key, s.clone());
            s
        })
    }

    /// Counts a TCP connection that reached its upstream and starts to carry bytes.
    pub(crate) fn tcp_opened(&self, r: &Record) {
        self.tcp_series(r).opened.inc();
    }

    /// Counts a TCP connection that ended: closed, and its bytes. A connection that
    /// never reached an upstream is counted opened here too, as Envoy counts every
    /// connection its TCP proxy accepted.
    pub(crate) fn tcp_closed(&self, r: &Record, opened: bool) {
        let s = self.tcp_series(r);
        if !opened {
            s.opened.inc();
        }
        s.closed.inc();
        s.received.inc_by(r.bytes_in());
        s.sent.inc_by(r.bytes_out);
    }
}

#[cfg(test)]
mod tests;
