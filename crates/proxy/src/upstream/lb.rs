//! Load balancing among a cluster's endpoints: round robin, least request (the better of
//! two random choices) and random, all respecting endpoint weights.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use skiff_model::config::LbPolicy;

use super::{EndpointState, random_below};

#[derive(Debug)]
pub(super) struct Balancer {
    policy: LbPolicy,
    endpoints: Vec<Arc<EndpointState>>,
    weights: Vec<u32>,
    /// Cumulative weights, when the weights are not all equal.
    cumulative: Option<Vec<u32>>,
    total: u32,
    next: AtomicUsize,
}

impl Balancer {
    pub(super) fn new(policy: LbPolicy, list: Vec<(Arc<EndpointState>, u32)>) -> Self {
        let weights: Vec<u32> = list.iter().map(|(_, w)| (*w).max(1)).collect();
        let endpoints: Vec<_> = list.into_iter().map(|(e, _)| e).collect();
        let uniform = weights.windows(2).all(|w| w[0] == w[1]);
        let mut total = 0u32;
        let cumulative = (!uniform).then(|| {
            weights
                .iter()
                .map(|w| {
                    total = total.saturating_add(*w);
                    total
                })
                .collect()
        });
        if uniform {
            total = endpoints.len() as u32;
        }
        Balancer {
            policy,
            endpoints,
            weights,
            cumulative,
            total,
            // Start round robin at a random place so that proxies do not march in step.
            next: AtomicUsize::new(random_below(u32::MAX) as usize),
        }
    }

    /// The endpoint at `i`.
    pub(super) fn endpoint(&self, i: usize) -> &Arc<EndpointState> {
        &self.endpoints[i]
    }

    /// Chooses an endpoint's index, or `None` when there is none.
    pub(super) fn pick(&self) -> Option<usize> {
        match self.endpoints.len() {
            0 => return None,
            1 => return Some(0),
            _ => {}
        }
        Some(match self.policy {
            LbPolicy::RoundRobin => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                self.by_weight((n % self.total as usize) as u32)
            }
            LbPolicy::Random => self.random(),
            LbPolicy::LeastRequest => {
                let a = self.random();
                let mut b = self.random();
                if a == b {
                    b = (a + 1) % self.endpoints.len();
                }
                // Compare load relative to weight: active_a / w_a against active_b / w_b.
                let la = self.endpoints[a].active() as u64 * u64::from(self.weights[b]);
                let lb = self.endpoints[b].active() as u64 * u64::from(self.weights[a]);
                if lb < la { b } else { a }
            }
        })
    }

    /// [`Self::pick`] among the endpoints `usable` accepts (some are ejected): the
    /// policy's own choice when it is usable, else a weighted random one of the usable.
    pub(super) fn pick_where(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        for _ in 0..2 {
            match self.pick() {
                Some(i) if usable(i) => return Some(i),
                Some(_) => {}
                None => return None,
            }
        }
        let total: u64 = (0..self.endpoints.len())
            .filter(|&i| usable(i))
            .map(|i| u64::from(self.weights[i]))
            .sum();
        if total == 0 {
            return None;
        }
        let mut r = u64::from(random_below(u32::try_from(total).unwrap_or(u32::MAX)));
        for i in (0..self.endpoints.len()).filter(|&i| usable(i)) {
            let w = u64::from(self.weights[i]);
            if r < w {
                return Some(i);
            }
            r -= w;
        }
        None
    }

    fn random(&self) -> usize {
        self.by_weight(random_below(self.total))
    }

    /// The endpoint at position `r` in `0..total` of the weight line.
    fn by_weight(&self, r: u32) -> usize {
        match &self.cumulative {
            None => r as usize,
            Some(cum) => cum.partition_point(|&c| c <= r).min(cum.len() - 1),
        }
    }
}
