//! Envoy's priority levels and locality-weighted balancing, for clusters whose
//! endpoints the control plane sorted into priorities (locality failover,
//! `failoverPriority`) or weighed per locality (`distribute`).
//!
//! A priority's health is `min(100, 140 × healthy / total)` percent (Envoy's
//! overprovisioning factor 1.4): while the first priority is at least about 72 %
//! healthy it takes every request, and what it lacks spills to the next one. Health
//! counts only while outlier detection filters (some endpoint ejected, and no panic);
//! otherwise every priority is whole and the first takes all. Within a priority, a
//! locality-weighted cluster picks a locality first, by its weight scaled by
//! `min(1, 1.4 × healthy / total)`, then an endpoint in it with the cluster's policy; a
//! consistent-hash cluster looks the hash up in its priority's own table, as Envoy's
//! ring hash and Maglev do (the hash also chooses the priority: `hash % 100`).
//!
//! The endpoints of a cluster are in priority order, then locality order, so each
//! priority and each locality is a range of indices.

use std::ops::Range;
use std::sync::Arc;

use skiff_model::config::{ConsistentHash, LbPolicy, LocalityWeighted, Warmup};

use super::hash::HashTable;
use super::lb::Balancer;
use super::{EndpointState, random_below};

/// The priorities of one cluster.
#[derive(Debug)]
pub(super) struct Tiers {
    tiers: Vec<Tier>,
}

#[derive(Debug)]
struct Tier {
    range: Range<usize>,
    lb: Balancer,
    /// Its localities, when the cluster is locality-weighted and it has more than one.
    localities: Vec<Group>,
    hash: Option<HashTable>,
}

#[derive(Debug)]
struct Group {
    range: Range<usize>,
    weight: u64,
    lb: Balancer,
}

/// What a cluster's endpoints tell the tiers: their priority and locality.
pub(super) struct Placement<'a> {
    pub(super) priority: u32,
    pub(super) locality: &'a str,
}

/// Envoy's default overprovisioning factor, in percent.
const OVERPROVISIONING: usize = 140;

/// `min(100, 1.4 × healthy / total)` in percent.
fn health(healthy: usize, total: usize) -> usize {
    if total == 0 {
        return 0;
    }
    (OVERPROVISIONING * healthy / total).min(100)
}

impl Tiers {
    /// The tiers of endpoints `list` (in priority, then locality, order) placed by
    /// `placement`; `None` when there is only one priority and no locality weighting.
    pub(super) fn build(
        policy: LbPolicy,
        warmup: Option<&Warmup>,
        list: &[(Arc<EndpointState>, u32)],
        placement: &[Placement<'_>],
        weighted: Option<&LocalityWeighted>,
        hash: Option<&ConsistentHash>,
    ) -> Option<Tiers> {
        let first = placement.first()?;
        let one_priority = placement.iter().all(|p| p.priority == first.priority);
        let one_locality = placement.iter().all(|p| p.locality == first.locality);
        if one_priority && (weighted.is_none() || one_locality || hash.is_some()) {
            return None;
        }
        let balancer =
            |r: &Range<usize>| Balancer::new(policy, list[r.clone()].to_vec()).with_warmup(warmup);
        let mut tiers = Vec::new();
        for range in runs(placement, |a, b| a.priority == b.priority) {
            let localities = match weighted {
                Some(w) if hash.is_none() => {
                    let groups: Vec<Range<usize>> =
                        runs(&placement[range.clone()], |a, b| a.locality == b.locality)
                            .map(|r| r.start + range.start..r.end + range.start)
                            .collect();
                    if groups.len() > 1 {
                        groups
                            .into_iter()
                            .map(|r| {
                                let own: u64 = list[r.clone()]
                                    .iter()
                                    .map(|(_, w)| u64::from((*w).max(1)))
                                    .sum();
                                let weight = w
                                    .weights
                                    .get(placement[r.start].locality)
                                    .map_or(own, |w| u64::from(*w));
                                Group {
                                    lb: balancer(&r),
                                    range: r,
                                    weight,
                                }
                            })
                            .collect()
                    } else {
                        Vec::new()
                    }
                }
                _ => Vec::new(),
            };
            let table = hash.map(|h| {
                let names: Vec<String> = list[range.clone()]
                    .iter()
                    .map(|(e, _)| e.display.to_string())
                    .collect();
                let weights: Vec<u32> = list[range.clone()]
                    .iter()
                    .map(|(_, w)| (*w).max(1))
                    .collect();
                HashTable::build(h, &names, &weights)
            });
            tiers.push(Tier {
                lb: balancer(&range),
                range,
                localities,
                hash: table,
            });
        }
        Some(Tiers { tiers })
    }

    /// An endpoint's index: the priority by health (when `filtering`, health counts
    /// what `usable` accepts), then the locality, then the endpoint.
    pub(super) fn pick(
        &self,
        filtering: bool,
        usable: impl Fn(usize) -> bool + Copy,
        hash: Option<u64>,
    ) -> Option<usize> {
        let draw = match hash {
            Some(h) => (h % 100) as usize,
            None => random_below(100) as usize,
        };
        let tier = if filtering {
            &self.tiers[self.choose(usable, draw)?]
        } else {
            &self.tiers[0]
        };
        let start = tier.range.start;
        if let Some(table) = &tier.hash {
            let h = hash.unwrap_or_else(|| {
                u64::from(random_below(u32::MAX)) << 32 | u64::from(random_below(u32::MAX))
            });
            return table.lookup(h, |i| usable(start + i)).map(|i| start + i);
        }
        let (lb, start) = if tier.localities.is_empty() {
            (&tier.lb, start)
        } else {
            let g = choose_locality(&tier.localities, filtering, usable)?;
            (&g.lb, g.range.start)
        };
        let i = if filtering {
            lb.pick_where(|i| usable(start + i))?
        } else {
            lb.pick()?
        };
        Some(start + i)
    }

    /// Envoy's priority load: each priority takes its health's share of the draw (out
    /// of the total health, when that is under 100), in order.
    fn choose(&self, usable: impl Fn(usize) -> bool + Copy, draw: usize) -> Option<usize> {
        let health_of = |t: &Tier| {
            let healthy = t.range.clone().filter(|&i| usable(i)).count();
            health(healthy, t.range.len())
        };
        let total: usize = self.tiers.iter().map(health_of).sum::<usize>().min(100);
        if total == 0 {
            return None;
        }
        let mut remaining = 100;
        let mut draw = draw;
        let mut first_healthy = None;
        for (i, t) in self.tiers.iter().enumerate() {
            let h = health_of(t);
            if h > 0 && first_healthy.is_none() {
                first_healthy = Some(i);
            }
            let load = (h * 100 / total).min(remaining);
            if draw < load {
                return Some(i);
            }
            draw -= load;
            remaining -= load;
        }
        // Rounding left some of the draw over: the first priority with health takes it.
        first_healthy
    }
}

/// A locality of a tier, by weight × availability.
fn choose_locality(
    groups: &[Group],
    filtering: bool,
    usable: impl Fn(usize) -> bool + Copy,
) -> Option<&Group> {
    let effective = |g: &Group| {
        if !filtering {
            return g.weight * 100;
        }
        let healthy = g.range.clone().filter(|&i| usable(i)).count();
        g.weight * health(healthy, g.range.len()) as u64
    };
    let total: u64 = groups.iter().map(effective).sum();
    if total == 0 {
        return None;
    }
    let mut r = random_u64(total);
    for g in groups {
        let w = effective(g);
        if r < w {
            return Some(g);
        }
        r -= w;
    }
    groups.last()
}

/// A uniformly random number in `0..n` (`n` > 0).
fn random_u64(n: u64) -> u64 {
    use rand::Rng;
    rand::rng().random_range(0..n.max(1))
}

/// The ranges of consecutive items alike by `same`.
fn runs<'a, T>(
    items: &'a [T],
    same: impl Fn(&T, &T) -> bool + 'a,
) -> impl Iterator<Item = Range<usize>> + 'a {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= items.len() {
            return None;
        }
        let mut end = start + 1;
        while end < items.len() && same(&items[start], &items[end]) {
            end += 1;
        }
        let r = start..end;
        start = end;
        Some(r)
    })
}

#[cfg(test)]
mod tests;
