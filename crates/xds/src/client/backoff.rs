//! Capped exponential backoff with jitter, for reconnecting to the control plane.

use std::time::Duration;

use rand::Rng;

/// The delays between reconnection attempts: doubling from `initial` up to `max`, each
/// one drawn uniformly from the upper half of its step ("equal jitter") so that many
/// proxies that lost the same control plane do not all come back at the same instant.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        let max = max.max(initial);
        Backoff {
            initial,
            max,
            step: initial,
        }
    }

    /// Starts over from the initial delay (after a connection that worked).
    pub(crate) fn reset(&mut self) {
        self.step = self.initial;
    }

    /// The next delay to wait.
    pub(crate) fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(self.max);
        let half = step / 2;
        half + rng.random_range(Duration::ZERO..=step - half)
    }
}

#[cfg(test)]
mod tests;
