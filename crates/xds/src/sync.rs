//! Per-proxy sync state: what each proxy was sent, what it acknowledged, what it
//! rejected, and how the newest config change reached it. The push server writes it;
//! the control plane serves it (`/debug/syncz`) and `skiff proxy-status` prints it.
//! The same events feed the control plane's metrics (`metrics`), and the config
//! changes followed from the source to the last proxy's ACK (`propagation`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::PushSnapshot;

mod metrics;
mod propagation;

pub use metrics::Trigger;
use metrics::{Incomplete, Metrics, PROXY_CONFIG, PROXY_CONFIG_SEND_ERROR, VersionLabel};
use propagation::Changes;

/// The sync state of every proxy that has connected, shared between the push server's
/// streams and whoever reports on them, and the config changes on their way to the
/// proxies. Cloning gives another handle to the same table.
#[derive(Debug, Clone, Default)]
pub struct SyncTable {
    inner: Arc<Mutex<Table>>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Table {
    proxies: BTreeMap<String, ProxySync>,
    changes: Changes,
}

/// What the table remembers of one proxy.
#[derive(Debug, Clone, Default)]
struct ProxySync {
    /// The proxy's current stream, if it is connected.
    stream: Option<StreamInfo>,
    /// The version the proxy should run when it is not the snapshot's (a proxy that
    /// subscribes on demand holds part of its view), as its stream last computed.
    desired: Option<String>,
    /// The version last sent (or, after a resume, known to be running) and when.
    sent: Option<(String, SystemTime)>,
    /// The version last acknowledged.
    acked: Option<String>,
    /// The last rejection: the version rejected and the proxy's reason.
    nack: Option<(String, String)>,
    /// The last snapshot generation the proxy's stream has taken into account.
    generation: u64,
    /// The newest generation whose version for this proxy is the one sent: once that
    /// version is acknowledged, every change up to it is applied.
    covers: u64,
    /// When the proxy acknowledged the version it runs (or resumed with it).
    applied_at: Option<SystemTime>,
    /// The newest config change that affected this proxy, kept across reconnects.
    last_change: Option<LastChange>,
    /// Responses sent to the proxy and their bytes, kept across reconnects.
    pushes: u64,
    pushed_bytes: u64,
}

#[derive(Debug, Clone)]
struct StreamInfo {
    id: u64,
    since: SystemTime,
    peer: Option<SocketAddr>,
    proxy_version: Option<String>,
    admin: Option<String>,
    /// Its `pilot_xds` series.
    series: VersionLabel,
}

#[derive(Debug, Clone, Copy)]
struct LastChange {
    generation: u64,
    seen: Instant,
    outcome: Outcome,
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Waiting,
    Applied(Duration),
    Failed(Incomplete),
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
    /// When the proxy acknowledged the config it runs (or resumed with it), in
    /// milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_ms: Option<u64>,
    /// How long the proxy has run its config: milliseconds since `applied_ms`, when the
    /// row was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_age_ms: Option<u64>,
    /// The newest config change that affected this proxy, and how it went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<ChangeRow>,
    /// Responses sent to the proxy since the control plane started.
    #[serde(default)]
    pub pushes: u64,
    /// Their bytes (resource bodies).
    #[serde(default)]
    pub pushed_bytes: u64,
}

/// How the newest config change that affected a proxy reached it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRow {
    /// The snapshot generation that brought the change.
    pub generation: u64,
    /// Where it stands for this proxy.
    pub state: ChangeState,
    /// From the change seen by the config source to this proxy's ACK of a version that
    /// carries it, in milliseconds; set once `APPLIED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation_ms: Option<u64>,
    /// How long ago the source saw the change, in milliseconds, when the row was made.
    pub seen_age_ms: u64,
}

/// Where a config change stands for one proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeState {
    /// Not acknowledged yet.
    Waiting,
    /// The proxy acknowledged a version that carries it.
    Applied,
    /// The proxy rejected the version that carries it.
    Nack,
    /// The proxy's stream ended before it acknowledged.
    Disconnected,
    /// Newer changes pushed it out of the window the control plane follows.
    Expired,
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

    /// Registers the push server's metrics in `registry`: `pilot_xds` (connected
    /// proxies, by version), `pilot_xds_pushes_total` (and send errors),
    /// `pilot_total_xds_rejects_total` (NACKs), `pilot_xds_push_time`,
    /// `pilot_xds_config_size_bytes`, `pilot_proxy_convergence_time`,
    /// `skiff_config_propagation_seconds` and
    /// `skiff_config_propagation_incomplete_total`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    /// Follows the change that `next` makes to `previous`, seen by its config source at
    /// `seen`: every connected proxy that `next` gives another version waits for it.
    /// Call it just before publishing `next`. Returns how many proxies it affects (a
    /// change that affects none is not followed).
    pub fn publish(&self, previous: &PushSnapshot, next: &PushSnapshot, seen: Instant) -> usize {
        let mut table = self.lock();
        let generation = next.generation();
        let affected: Vec<String> = table
            .proxies
            .iter()
            .filter(|(_, s)| s.stream.is_some())
            .filter(|(id, _)| match (previous.get(id), next.get(id)) {
                (Some(old), Some(new)) => old.version != new.version,
                (None, Some(_)) => true,
                (_, None) => false,
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &affected {
            if let Some(state) = table.proxies.get_mut(id)
                && state.last_change.is_none_or(|c| c.generation <= generation)
            {
                state.last_change = Some(LastChange {
                    generation,
                    seen,
                    outcome: Outcome::Waiting,
                });
            }
        }
        let count = affected.len();
        let expired = table
            .changes
            .open(generation, seen, affected, &self.metrics);
        for (generation, proxies) in expired {
            for id in proxies {
                if let Some(last) = table
                    .proxies
                    .get_mut(&id)
                    .and_then(|s| s.last_change.as_mut())
                    && last.generation == generation
                {
                    last.outcome = Outcome::Failed(Incomplete::Expired);
                }
            }
        }
        count
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave a row half-written in a way
        // that matters for reporting, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One row per proxy that the snapshot knows or that is connected now, sorted by
    /// proxy id.
    pub fn rows(&self, snapshot: &PushSnapshot) -> Vec<SyncRow> {
        let now = (SystemTime::now(), Instant::now());
        let table = self.lock();
        let ids: BTreeSet<&str> = snapshot
            .proxies()
            .map(|(id, _)| id)
            .chain(
                table
                    .proxies
                    .iter()
                    .filter(|(_, s)| s.stream.is_some())
                    .map(|(id, _)| id.as_str()),
            )
            .collect();
        ids.into_iter()
            .map(|id| {
                let state = table.proxies.get(id).cloned().unwrap_or_default();
                row(id, &state, snapshot, now)
            })
            .collect()
    }

    /// The row of one proxy (see [`SyncTable::rows`]).
    pub fn row(&self, proxy_id: &str, snapshot: &PushSnapshot) -> SyncRow {
        let state = self
            .lock()
            .proxies
            .get(proxy_id)
            .cloned()
            .unwrap_or_default();
        row(
            proxy_id,
            &state,
            snapshot,
            (SystemTime::now(), Instant::now()),
        )
    }

    /// Runs `f` on a proxy's state and the open changes if `stream` is the proxy's
    /// current stream.
    fn update(&self, proxy_id: &str, stream: u64, f: impl FnOnce(&mut ProxySync, &mut Changes)) {
        let mut table = self.lock();
        let Table { proxies, changes } = &mut *table;
        if let Some(state) = proxies.get_mut(proxy_id)
            && state.stream.as_ref().is_some_and(|s| s.id == stream)
        {
            f(state, changes);
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
        let series = self.metrics.connected_series(proxy_version.as_deref());
        self.metrics.connected.get_or_create(&series).inc();
        let mut table = self.lock();
        let Table { proxies, changes } = &mut *table;
        let state = proxies.entry(proxy_id.to_owned()).or_default();
        if let Some(old) = &state.stream {
            // The old stream is replaced before it said it ended: it has.
            self.metrics.connected.get_or_create(&old.series).dec();
            self.fail(proxy_id, state, changes, None, Incomplete::Disconnect);
        }
        // A new stream starts from what the proxy says it runs; forget the old one's.
        *state = ProxySync {
            stream: Some(StreamInfo {
                id: stream,
                since: SystemTime::now(),
                peer,
                proxy_version,
                admin,
                series,
            }),
            last_change: state.last_change,
            pushes: state.pushes,
            pushed_bytes: state.pushed_bytes,
            ..ProxySync::default()
        };
    }

    /// The proxy resumed with the version that `generation` holds for it: nothing to
    /// send, and the version counts as sent and acknowledged.
    pub(crate) fn resumed(&self, proxy_id: &str, stream: u64, version: &str, generation: u64) {
        self.update(proxy_id, stream, |s, changes| {
            s.sent = Some((version.to_owned(), SystemTime::now()));
            s.acked = Some(version.to_owned());
            s.covers = generation;
            s.applied_at = Some(SystemTime::now());
            self.apply(proxy_id, s, changes);
        });
    }

    /// A new snapshot is published, for this reason (`pilot_push_triggers`).
    pub fn triggered(&self, why: Trigger) {
        self.metrics.triggers.get_or_create(&why.label()).inc();
    }

    /// A push waited `waited` for its place among the pushes running at once.
    pub(crate) fn queued(&self, waited: Duration) {
        self.metrics.queue_time.observe(waited.as_secs_f64());
    }

    /// The version `generation` holds for the proxy was handed to its stream: `size`
    /// bytes, after `took` (building the response and waiting for room in the stream).
    pub(crate) fn pushed(
        &self,
        proxy_id: &str,
        stream: u64,
        version: &str,
        generation: u64,
        size: usize,
        took: Duration,
    ) {
        self.metrics.pushes.get_or_create(&PROXY_CONFIG).inc();
        self.metrics
            .push_time
            .get_or_create(&PROXY_CONFIG)
            .observe(took.as_secs_f64());
        self.metrics
            .config_size
            .get_or_create(&PROXY_CONFIG)
            .observe(size as f64);
        self.update(proxy_id, stream, |s, changes| {
            s.sent = Some((version.to_owned(), SystemTime::now()));
            s.covers = generation;
            s.pushes += 1;
            s.pushed_bytes += size as u64;
            if let Some(delay) = changes.pushed(proxy_id, generation, Instant::now()) {
                self.metrics.convergence.observe(delay.as_secs_f64());
            }
        });
    }

    /// A push could not be handed to the proxy's stream (it closed under it).
    pub(crate) fn push_failed(&self) {
        self.metrics
            .pushes
            .get_or_create(&PROXY_CONFIG_SEND_ERROR)
            .inc();
    }

    pub(crate) fn acked(&self, proxy_id: &str, stream: u64, version: &str) {
        self.update(proxy_id, stream, |s, changes| {
            s.acked = Some(version.to_owned());
            if s.sent.as_ref().is_some_and(|(v, _)| v == version) {
                s.applied_at = Some(SystemTime::now());
                self.apply(proxy_id, s, changes);
            }
        });
    }

    pub(crate) fn nacked(&self, proxy_id: &str, stream: u64, version: &str, reason: &str) {
        self.metrics.rejects.get_or_create(&PROXY_CONFIG).inc();
        self.update(proxy_id, stream, |s, changes| {
            s.nack = Some((version.to_owned(), reason.to_owned()));
            if s.sent.as_ref().is_some_and(|(v, _)| v == version) {
                let through = Some(s.covers);
                self.fail(proxy_id, s, changes, through, Incomplete::Nack);
            }
        });
    }

    /// The stream has taken snapshot `generation` into account: the version it sent
    /// is the one that generation holds for the proxy.
    /// The proxy subscribes on demand, and what it should hold of the snapshot now
    /// has `version`.
    pub(crate) fn wants(&self, proxy_id: &str, stream: u64, version: &str) {
        self.update(proxy_id, stream, |s, _| {
            if s.desired.as_deref() != Some(version) {
                s.desired = Some(version.to_owned());
            }
        });
    }

    pub(crate) fn saw_generation(&self, proxy_id: &str, stream: u64, generation: u64) {
        self.update(proxy_id, stream, |s, changes| {
            s.generation = generation;
            s.covers = s.covers.max(generation);
            self.apply(proxy_id, s, changes);
        });
    }

    pub(crate) fn disconnected(&self, proxy_id: &str, stream: u64) {
        self.update(proxy_id, stream, |s, changes| {
            if let Some(old) = s.stream.take() {
                self.metrics.connected.get_or_create(&old.series).dec();
            }
            self.fail(proxy_id, s, changes, None, Incomplete::Disconnect);
        });
    }

    /// If the proxy runs the version it was sent, every change up to `covers` is
    /// applied by it.
    fn apply(&self, proxy_id: &str, state: &mut ProxySync, changes: &mut Changes) {
        let runs_sent = match (&state.sent, &state.acked) {
            (Some((sent, _)), Some(acked)) => sent == acked,
            _ => false,
        };
        if !runs_sent {
            return;
        }
        let applied = changes.applied(proxy_id, state.covers, Instant::now(), &self.metrics);
        if let Some((generation, seen, took)) = applied
            && state.last_change.is_none_or(|c| c.generation <= generation)
        {
            state.last_change = Some(LastChange {
                generation,
                seen,
                outcome: Outcome::Applied(took),
            });
        }
    }

    fn fail(
        &self,
        proxy_id: &str,
        state: &mut ProxySync,
        changes: &mut Changes,
        through: Option<u64>,
        reason: Incomplete,
    ) {
        let failed = changes.failed(proxy_id, through, reason, &self.metrics);
        if let (Some(generation), Some(last)) = (failed, state.last_change.as_mut())
            && last.generation == generation
        {
            last.outcome = Outcome::Failed(reason);
        }
    }
}

fn row(
    id: &str,
    state: &ProxySync,
    snapshot: &PushSnapshot,
    (now, instant): (SystemTime, Instant),
) -> SyncRow {
    let entry = snapshot.get(id);
    let (name, namespace) = match entry {
        Some(e) if !e.node().name.is_empty() => (e.node().name.clone(), e.node().namespace.clone()),
        // Namespaces cannot contain dots, so the last dot splits the id.
        _ => match id.rsplit_once('.') {
            Some((name, ns)) => (name.to_owned(), ns.to_owned()),
            None => (id.to_owned(), String::new()),
        },
    };
    let desired = match &state.desired {
        Some(version) if state.stream.is_some() => Some(version.clone()),
        _ => entry.map(|e| e.version.clone()),
    };
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
        applied_ms: state.applied_at.map(unix_ms),
        config_age_ms: state
            .applied_at
            .map(|at| millis(now.duration_since(at).unwrap_or_default())),
        last_change: state.last_change.map(|c| change_row(&c, instant)),
        pushes: state.pushes,
        pushed_bytes: state.pushed_bytes,
    }
}

fn change_row(change: &LastChange, now: Instant) -> ChangeRow {
    let (state, propagation_ms) = match change.outcome {
        Outcome::Waiting => (ChangeState::Waiting, None),
        Outcome::Applied(took) => (ChangeState::Applied, Some(millis(took))),
        Outcome::Failed(Incomplete::Nack) => (ChangeState::Nack, None),
        Outcome::Failed(Incomplete::Disconnect) => (ChangeState::Disconnected, None),
        Outcome::Failed(Incomplete::Expired) => (ChangeState::Expired, None),
    };
    ChangeRow {
        generation: change.generation,
        state,
        propagation_ms,
        seen_age_ms: millis(now.saturating_duration_since(change.seen)),
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
