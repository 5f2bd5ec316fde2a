//! How many pushes run at once, and which go first.
//!
//! After a change every affected stream wants to push at the same moment. As istiod
//! does (`PILOT_PUSH_THROTTLE`, 100 by default), at most a fixed number of pushes run
//! at once and the others wait their turn; a push that only changes endpoints goes
//! before one that changes routes or clusters, as Istio sends EDS updates ahead of
//! full pushes, because a moved endpoint is traffic failing now. A push holds its place
//! while it hands its responses to its stream, at most [`PushGate::hold`] per response:
//! a proxy that stops reading cannot keep others waiting longer than that.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

/// Istio's `PILOT_PUSH_THROTTLE`: pushes at once.
pub const DEFAULT_PUSH_LIMIT: usize = 100;

/// How long a push may hold its place while its stream does not take a response.
pub const DEFAULT_PUSH_HOLD: Duration = Duration::from_secs(5);

/// Admits at most `limit` pushes at once; urgent ones first.
#[derive(Debug)]
pub struct PushGate {
    limit: usize,
    hold: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    running: usize,
    urgent: VecDeque<oneshot::Sender<()>>,
    normal: VecDeque<oneshot::Sender<()>>,
}

/// A place in the gate, given back when dropped.
#[derive(Debug)]
pub struct PushPermit {
    gate: Arc<PushGate>,
}

impl PushGate {
    /// A gate for `limit` pushes at once (at least one), each holding its place at most
    /// `hold` while its stream takes no response.
    pub fn new(limit: usize, hold: Duration) -> Arc<Self> {
        Arc::new(PushGate {
            limit: limit.max(1),
            hold,
            state: Mutex::new(State::default()),
        })
    }

    /// How many pushes may run at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How long a push holds its place while its stream takes no response.
    pub fn hold(&self) -> Duration {
        self.hold
    }

    /// Waits for a place: `urgent` pushes (endpoints only) before the others, each
    /// kind in arrival order.
    pub async fn enter(self: &Arc<Self>, urgent: bool) -> PushPermit {
        let waiting = {
            let mut state = self.lock();
            if state.running < self.limit {
                state.running += 1;
                None
            } else {
                let (tx, rx) = oneshot::channel();
                if urgent {
                    state.urgent.push_back(tx);
                } else {
                    state.normal.push_back(tx);
                }
                Some(rx)
            }
        };
        if let Some(rx) = waiting {
            // The place is handed over by the push that leaves (see `release`).
            let mut waiting = Waiting {
                rx,
                gate: Some(self.clone()),
            };
            let _ = (&mut waiting.rx).await;
            waiting.gate = None;
        }
        PushPermit { gate: self.clone() }
    }

    /// How many pushes run now, and how many wait.
    pub fn load(&self) -> (usize, usize) {
        let state = self.lock();
        (state.running, state.urgent.len() + state.normal.len())
    }

    fn release(&self) {
        let mut state = self.lock();
        // Hand the place to the first waiter still waiting (a stream that ended while
        // waiting dropped its receiver).
        while let Some(next) = state
            .urgent
            .pop_front()
            .or_else(|| state.normal.pop_front())
        {
            if next.send(()).is_ok() {
                return;
            }
        }
        state.running -= 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A push waiting for its place. Dropped before it got there (its stream ended), it
/// gives back a place handed to it in the meantime.
struct Waiting {
    rx: oneshot::Receiver<()>,
    gate: Option<Arc<PushGate>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            self.rx.close();
            if self.rx.try_recv().is_ok() {
                gate.release();
            }
        }
    }
}

impl Drop for PushPermit {
    fn drop(&mut self) {
        self.gate.release();
    }
}

#[cfg(test)]
mod tests;
