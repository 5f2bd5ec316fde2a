//! How long `skiff up` waits before restarting a child that died: exponential
//! backoff, as Kubernetes does for a crashing container (`CrashLoopBackOff`), with
//! shorter steps for one machine. The first restart waits `initial` (1 s), each
//! further one twice as long, up to `max` (30 s); a child that stayed up for
//! `reset_after` (10 s) before dying starts again from `initial`.

use std::time::Duration;

/// The steps of the backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    /// The wait before the first restart.
    pub(crate) initial: Duration,
    /// The longest wait.
    pub(crate) max: Duration,
    /// A child that ran at least this long before dying counts as healthy: its next
    /// wait is `initial` again.
    pub(crate) reset_after: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(10),
        }
    }
}

/// The backoff of one child.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    policy: Policy,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(policy: Policy) -> Self {
        Backoff {
            next: policy.initial,
            policy,
        }
    }

    /// The wait before restarting a child that ran for `ran_for` and died.
    pub(crate) fn after_exit(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.policy.reset_after {
            self.next = self.policy.initial;
        }
        let wait = self.next.min(self.policy.max);
        self.next = wait.saturating_mul(2).min(self.policy.max);
        wait
    }
}

#[cfg(test)]
mod tests;
