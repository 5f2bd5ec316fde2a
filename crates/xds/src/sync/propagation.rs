//! Following each config change from the moment its source saw it to the ACK of the
//! last proxy it affects.
//!
//! A change is a published snapshot that gives at least one connected proxy another
//! version. It waits for each of those proxies to acknowledge a version that carries
//! it: the one it brought, or any later one (snapshots are whole, so a later version
//! carries every earlier change). When the last one has, the time from "seen" to that
//! ACK is one observation of `skiff_config_propagation_seconds`. A NACK or a
//! disconnect of an affected proxy before its ACK leaves the change incomplete: it is
//! counted under `skiff_config_propagation_incomplete_total` and never observed.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::metrics::{Incomplete, Metrics};

/// How many changes are followed at once. A proxy that never answers keeps its changes
/// open; past this many, the oldest stops being followed (counted `expired`).
pub(super) const MAX_OPEN: usize = 64;

/// The changes not settled yet, oldest first.
#[derive(Debug, Default)]
pub(super) struct Changes {
    open: VecDeque<Change>,
}

#[derive(Debug)]
struct Change {
    generation: u64,
    seen: Instant,
    /// The affected proxies that have not applied it yet, and whether a version that
    /// carries it has been pushed to each.
    waiting: BTreeMap<String, bool>,
    /// Whether an affected proxy rejected it or went away (counted once).
    failed: bool,
}

impl Changes {
    /// Starts following the change published as `generation`, seen by its source at
    /// `seen`, that gives each of `affected` another version. Returns the changes no
    /// longer followed to make room (their generation and the proxies they waited for).
    pub(super) fn open(
        &mut self,
        generation: u64,
        seen: Instant,
        affected: impl IntoIterator<Item = String>,
        metrics: &Metrics,
    ) -> Vec<(u64, Vec<String>)> {
        let waiting: BTreeMap<String, bool> = affected.into_iter().map(|p| (p, false)).collect();
        let mut expired = Vec::new();
        if waiting.is_empty() {
            return expired;
        }
        self.open.push_back(Change {
            generation,
            seen,
            waiting,
            failed: false,
        });
        while self.open.len() > MAX_OPEN {
            if let Some(oldest) = self.open.pop_front() {
                if !oldest.failed {
                    metrics.incomplete(Incomplete::Expired);
                }
                expired.push((oldest.generation, oldest.waiting.into_keys().collect()));
            }
        }
        expired
    }

    /// A version carrying every change up to `through` was pushed to `proxy`: the
    /// delay from the oldest of them first pushed now (Istio's convergence time), if
    /// this push carried any change to it for the first time.
    pub(super) fn pushed(&mut self, proxy: &str, through: u64, now: Instant) -> Option<Duration> {
        let mut oldest: Option<Instant> = None;
        for change in self.open.iter_mut().filter(|c| c.generation <= through) {
            if let Some(pushed) = change.waiting.get_mut(proxy)
                && !*pushed
            {
                *pushed = true;
                oldest = Some(oldest.map_or(change.seen, |o| o.min(change.seen)));
            }
        }
        oldest.map(|seen| now.saturating_duration_since(seen))
    }

    /// `proxy` acknowledged a version carrying every change up to `through`. Observes
    /// each change that this was the last ACK of; returns the newest change the proxy
    /// applied with its delay (seen → this ACK).
    pub(super) fn applied(
        &mut self,
        proxy: &str,
        through: u64,
        now: Instant,
        metrics: &Metrics,
    ) -> Option<(u64, Instant, Duration)> {
        let mut newest = None;
        for change in self.open.iter_mut().filter(|c| c.generation <= through) {
            if change.waiting.remove(proxy).is_none() {
                continue;
            }
            let took = now.saturating_duration_since(change.seen);
            newest = Some((change.generation, change.seen, took));
            if change.waiting.is_empty() && !change.failed {
                metrics.propagation.observe(took.as_secs_f64());
            }
        }
        self.open.retain(|c| !c.waiting.is_empty());
        newest
    }

    /// `proxy` will not apply the changes it waits for up to `through` (all of them
    /// when `None`): it rejected them or went away. Each such change is counted
    /// incomplete once; returns the newest one.
    pub(super) fn failed(
        &mut self,
        proxy: &str,
        through: Option<u64>,
        reason: Incomplete,
        metrics: &Metrics,
    ) -> Option<u64> {
        let mut newest = None;
        for change in self
            .open
            .iter_mut()
            .filter(|c| through.is_none_or(|t| c.generation <= t))
        {
            if change.waiting.remove(proxy).is_none() {
                continue;
            }
            newest = Some(change.generation);
            if !change.failed {
                change.failed = true;
                metrics.incomplete(reason);
            }
        }
        self.open.retain(|c| !c.waiting.is_empty());
        newest
    }
}
