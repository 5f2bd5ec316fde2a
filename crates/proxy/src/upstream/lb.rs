//! Load balancing among a cluster's endpoints: round robin, least request (the better of
//! two random choices) and random, all respecting endpoint weights; and Envoy's slow
//! start (`warmup`) for round robin and least request, which scales the weight of an
//! endpoint younger than the window by `max(minimumPercent, (age / window)^(1 /
//! aggression))`. While no endpoint is that young, slow start costs one comparison.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use skiff_model::config::{LbPolicy, Warmup};
use tokio::time::Instant;

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
    /// Slow start, while some endpoint is in its window.
    warmup: Option<Box<SlowStart>>,
}

#[derive(Debug)]
struct SlowStart {
    window: f64,
    min: f64,
    exponent: f64,
    /// After this, no endpoint is in its window.
    until: Instant,
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
            warmup: None,
        }
    }

    /// Slow start for round robin and least request (Envoy applies it to those only).
    pub(super) fn with_warmup(mut self, w: Option<&Warmup>) -> Self {
        let Some(w) = w.filter(|_| self.policy != LbPolicy::Random) else {
            return self;
        };
        let Some(youngest) = self.endpoints.iter().map(|e| e.joined).max() else {
            return self;
        };
        self.warmup = Some(Box::new(SlowStart {
            window: w.window.as_secs_f64().max(1e-3),
            min: f64::from(w.minimum_percent.min(100)) / 100.0,
            exponent: 1000.0 / f64::from(w.aggression_milli.max(1)),
            until: youngest + w.window,
        }));
        self
    }

    /// The slow-start weight of endpoint `i` at `now`.
    fn warm_weight(&self, w: &SlowStart, i: usize, now: Instant) -> f64 {
        let age = now
            .saturating_duration_since(self.endpoints[i].joined)
            .as_secs_f64();
        let weight = f64::from(self.weights[i]);
        if age >= w.window {
            return weight;
        }
        let factor = (age.max(1.0) / w.window).min(1.0).powf(w.exponent);
        weight * factor.max(w.min)
    }

    /// A pick by slow-start weights, while some endpoint is in its window.
    fn pick_warming(&self, w: &SlowStart) -> Option<usize> {
        let now = Instant::now();
        if now >= w.until {
            return None;
        }
        let total: f64 = (0..self.endpoints.len())
            .map(|i| self.warm_weight(w, i, now))
            .sum();
        let draw = || {
            let mut r = f64::from(random_below(u32::MAX)) / f64::from(u32::MAX) * total;
            for i in 0..self.endpoints.len() {
                r -= self.warm_weight(w, i, now);
                if r < 0.0 {
                    return i;
                }
            }
            self.endpoints.len() - 1
        };
        let a = draw();
        if self.policy != LbPolicy::LeastRequest {
            return Some(a);
        }
        let b = draw();
        let load =
            |i: usize| (self.endpoints[i].active() as f64 + 1.0) / self.warm_weight(w, i, now);
        Some(if load(b) < load(a) { b } else { a })
    }

    /// How many endpoints it balances.
    pub(super) fn len(&self) -> usize {
        self.endpoints.len()
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
        if let Some(w) = &self.warmup
            && let Some(i) = self.pick_warming(w)
        {
            return Some(i);
        }
        Some(match self.policy {
            LbPolicy::RoundRobin => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                self.by_weight((n % self.total as usize) as u32)
            }
            // A `PASSTHROUGH` cluster goes to each request's own destination; a pick
            // without one (none is known) is random.
            LbPolicy::Random | LbPolicy::Passthrough => self.random(),
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

#[cfg(test)]
mod tests;
