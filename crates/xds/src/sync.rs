//! Per-proxy sync state: what each proxy was sent, what it acknowledged, what it
//! rejected. The push server writes it; the control plane serves it (`/debug/syncz`)
//! and `skiff proxy-status` prints it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::PushSnapshot;

/// The sync state of every proxy that has connected, shared between the push server's
/// streams and whoever reports on them. Cloning gives another handle to the same table.
#[derive(Debug, Clone, Default)]
pub struct SyncTable {
    inner: Arc<Mutex<BTreeMap<String, ProxySync>>>,
    metrics: Arc<Counters>,
}

/// Istio's names for what the push server counts: `pilot_xds_pushes` and
/// `pilot_total_xds_rejects`, by resource type (skiff has one: `ProxyConfig`).
#[derive(Debug, Default)]
struct Counters {
    pushes: Family<TypeLabel, Counter>,
    rejects: Family<TypeLabel, Counter>,
    connected: Gauge,
}

/// `type="ProxyConfig"`, as Istio labels its pushes `type="cds"`, `"eds"`, ….
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

const PROXY_CONFIG: TypeLabel = TypeLabel {
    r#type: "ProxyConfig",
};

/// What the table remembers of one proxy.
#[derive(Debug, Clone, Default)]
struct ProxySync {
    /// The proxy's current stream, if it is connected.
    stream: Option<StreamInfo>,
    /// The version last sent (or, after a resume, known to be running) and when.
    sent: Option<(String, SystemTime)>,
    /// The version last acknowledged.
    acked: Option<String>,
    /// The last rejection: the version rejected and the proxy's reason.
    nack: Option<(String, String)>,
    /// The last snapshot generation the proxy's stream has taken into account.
    generation: u64,
}

#[derive(Debug, Clone)]
struct StreamInfo {
    id: u64,
    since: SystemTime,
    peer: Option<SocketAddr>,
    proxy_version: Option<String>,
    admin: Option<String>,
}

/// Where one proxy stands, as reported by [`SyncTable::rows`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRow {
    /// Proxy id, `<name>.<namespace>`.
    pub proxy: String,
    /// Workload name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// The summary: synced, stale, rejected, or not connected.
    pub status: SyncStatus,
    /// Whether the proxy has a stream open now.
    pub connected: bool,
    /// When the current stream opened, in milliseconds since the Unix epoch.
    pub connected_since_ms: Option<u64>,
    /// The proxy's address as the server sees it.
    pub peer: Option<String>,
    /// The skiff version the proxy reports (node metadata `version`).
    pub proxy_version: Option<String>,
    /// The address of the proxy's admin endpoint, as the proxy reports it (node
    /// metadata `admin`): where `skiff proxy-config` and `skiff explain` reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    /// The version the current snapshot holds for this proxy (`None` when the
    /// snapshot does not know the proxy).
    pub desired: Option<String>,
    /// The version last sent to the proxy.
    pub sent: Option<String>,
    /// The version the proxy last acknowledged.
    pub acked: Option<String>,
    /// Why the proxy rejected the version it was sent, if it did.
    pub nack: Option<String>,
    /// When the last push was sent, in milliseconds since the Unix epoch.
    pub last_push_ms: Option<u64>,
    /// How long ago the last push was sent, in milliseconds, when the row was made.
    pub last_push_age_ms: Option<u64>,
    /// The last snapshot generation the proxy's stream has taken into account.
    pub generation: u64,
}

/// The summary of a proxy's sync state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncStatus {
    /// The proxy acknowledged the version the current snapshot holds for it.
    Synced,
    /// The proxy is connected but has not acknowledged the current version yet (a push
    /// is in flight, or the proxy is not in the current snapshot).
    Stale,
    /// The proxy rejected the version it was sent and runs an older one.
    Nack,
    /// The proxy has no stream open.
    NotConnected,
}

impl SyncStatus {
    /// How `proxy-status` spells it.
    pub fn label(self) -> &'static str {
        match self {
            SyncStatus::Synced => "SYNCED",
            SyncStatus::Stale => "STALE",
            SyncStatus::Nack => "NACK",
            SyncStatus::NotConnected => "NOT CONNECTED",
        }
    }
}

impl SyncTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the push server's metrics in `registry`, with the number of proxies
    /// connected now: `pilot_xds` (connected proxies), `pilot_xds_pushes_total` and
    /// `pilot_total_xds_rejects_total` (NACKs), by `type`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let connected = self.lock().values().filter(|s| s.stream.is_some()).count();
        self.metrics.connected.set(connected as i64);
        registry.register(
            "pilot_xds",
            "Number of proxies connected to this control plane over xDS",
            self.metrics.connected.clone(),
        );
        registry.register(
            "pilot_xds_pushes",
            "Pushes of configuration to proxies, by resource type",
            self.metrics.pushes.clone(),
        );
        registry.register(
            "pilot_total_xds_rejects",
            "Configurations proxies rejected (NACKs), by resource type",
            self.metrics.rejects.clone(),
        );
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, ProxySync>> {
        // A panic while holding the lock cannot leave a row half-written in a way
        // that matters for reporting, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One row per proxy that the snapshot knows or that is connected now, sorted by
    /// proxy id.
    pub fn rows(&self, snapshot: &PushSnapshot) -> Vec<SyncRow> {
        let now = SystemTime::now();
        let table = self.lock();
        let ids: BTreeSet<&str> = snapshot
            .proxies()
            .map(|(id, _)| id)
            .chain(
                table
                    .iter()
                    .filter(|(_, s)| s.stream.is_some())
                    .map(|(id, _)| id.as_str()),
            )
            .collect();
        ids.into_iter()
            .map(|id| {
                let state = table.get(id).cloned().unwrap_or_default();
                row(id, &state, snapshot, now)
            })
            .collect()
    }

    /// The row of one proxy (see [`SyncTable::rows`]).
    pub fn row(&self, proxy_id: &str, snapshot: &PushSnapshot) -> SyncRow {
        let state = self.lock().get(proxy_id).cloned().unwrap_or_default();
        row(proxy_id, &state, snapshot, SystemTime::now())
    }

    /// Runs `f` on a proxy's state if `stream` is its current stream.
    fn update(&self, proxy_id: &str, stream: u64, f: impl FnOnce(&mut ProxySync)) {
        let mut table = self.lock();
        if let Some(state) = table.get_mut(proxy_id)
            && state.stream.as_ref().is_some_and(|s| s.id == stream)
        {
            f(state);
        }
    }

    pub(crate) fn connected(
        &self,
        proxy_id: &str,
        stream: u64,
        peer: Option<SocketAddr>,
        proxy_version: Option<String>,
        admin: Option<String>,
    ) {
        let mut table = self.lock();
        let state = table.entry(proxy_id.to_owned()).or_default();
        // A new stream starts from what the proxy says it runs; forget the old one's.
        *state = ProxySync {
            stream: Some(StreamInfo {
                id: stream,
                since: SystemTime::now(),
                peer,
                proxy_version,
                admin,
            }),
            ..ProxySync::default()
        };
    }

    /// The proxy resumed with the version the snapshot holds: nothing to send, and
    /// the version counts as sent and acknowledged.
    pub(crate) fn resumed(&self, proxy_id: &str, stream: u64, version: &str) {
        self.update(proxy_id, stream, |s| {
            s.sent = Some((version.to_owned(), SystemTime::now()));
            s.acked = Some(version.to_owned());
        });
    }

    pub(crate) fn pushed(&self, proxy_id: &str, stream: u64, version: &str) {
        self.metrics.pushes.get_or_create(&PROXY_CONFIG).inc();
        self.update(proxy_id, stream, |s| {
            s.sent = Some((version.to_owned(), SystemTime::now()));
        });
    }

    pub(crate) fn acked(&self, proxy_id: &str, stream: u64, version: &str) {
        self.update(proxy_id, stream, |s| {
            s.acked = Some(version.to_owned());
        });
    }

    pub(crate) fn nacked(&self, proxy_id: &str, stream: u64, version: &str, reason: &str) {
        self.metrics.rejects.get_or_create(&PROXY_CONFIG).inc();
        self.update(proxy_id, stream, |s| {
            s.nack = Some((version.to_owned(), reason.to_owned()));
        });
    }

    pub(crate) fn saw_generation(&self, proxy_id: &str, stream: u64, generation: u64) {
        self.update(proxy_id, stream, |s| s.generation = generation);
    }

    pub(crate) fn disconnected(&self, proxy_id: &str, stream: u64) {
        self.update(proxy_id, stream, |s| s.stream = None);
    }
}

fn row(id: &str, state: &ProxySync, snapshot: &PushSnapshot, now: SystemTime) -> SyncRow {
    let entry = snapshot.get(id);
    let (name, namespace) = match entry {
        Some(e) if !e.config.node.name.is_empty() => {
            (e.config.node.name.clone(), e.config.node.namespace.clone())
        }
        // Namespaces cannot contain dots, so the last dot splits the id.
        _ => match id.rsplit_once('.') {
            Some((name, ns)) => (name.to_owned(), ns.to_owned()),
            None => (id.to_owned(), String::new()),
        },
    };
    let desired = entry.map(|e| e.version.clone());
    let sent = state.sent.as_ref().map(|(v, _)| v.clone());
    let nack = state
        .nack
        .as_ref()
        .filter(|(v, _)| Some(v) == sent.as_ref())
        .map(|(_, reason)| reason.clone());
    let status = if state.stream.is_none() {
        SyncStatus::NotConnected
    } else if nack.is_some() {
        SyncStatus::Nack
    } else if desired.is_some() && sent == desired && state.acked == desired {
        SyncStatus::Synced
    } else {
        SyncStatus::Stale
    };
    let push_at = state.sent.as_ref().map(|(_, at)| *at);
    SyncRow {
        proxy: id.to_owned(),
        name,
        namespace,
        status,
        connected: state.stream.is_some(),
        connected_since_ms: state.stream.as_ref().map(|s| unix_ms(s.since)),
        peer: state
            .stream
            .as_ref()
            .and_then(|s| s.peer.map(|p| p.to_string())),
        proxy_version: state.stream.as_ref().and_then(|s| s.proxy_version.clone()),
        admin: state.stream.as_ref().and_then(|s| s.admin.clone()),
        desired,
        sent,
        acked: state.acked.clone(),
        nack,
        last_push_ms: push_at.map(unix_ms),
        last_push_age_ms: push_at.map(|at| millis(now.duration_since(at).unwrap_or_default())),
        generation: state.generation,
    }
}

fn unix_ms(at: SystemTime) -> u64 {
    millis(at.duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
