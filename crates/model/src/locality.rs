//! Localities and locality load balancing, as Istio's control plane computes them for
//! one client proxy (`pilot/pkg/networking/core/loadbalancer`).
//!
//! A workload's locality is `region/zone/subzone`: WorkloadEntry `locality`, else the
//! labels `topology.kubernetes.io/region`, `topology.kubernetes.io/zone` and
//! `topology.istio.io/subzone` (skiff reads no Nodes, so a Pod's locality is in its
//! labels), else Istio's older `istio-locality` label (`region.zone.subzone`).
//!
//! For each cluster the compiler sorts the endpoints into priorities relative to the
//! client (`failover`, `failoverPriority`) or weighs them per locality (`distribute`):
//!
//! - `distribute` applies when the client's locality matches a `from`; each `to`
//!   pattern takes the localities it matches (that no earlier pattern took, in the
//!   map's key order) and shares its weight among them by their endpoints' weights;
//!   endpoints in localities no pattern takes are left out.
//! - Otherwise, only when the cluster has outlier detection (Envoy never leaves a
//!   priority without it): with `failoverPriority`, endpoints are ordered by how many
//!   of the listed labels, from the first, have the client's value (`label=value` sets
//!   the value instead); without it, or with `failover` as well, by how much of the
//!   locality matches the client's (subzone, zone, region, other regions), and a
//!   `failover` entry for the client's region puts regions other than its `to` last.
//!   Priorities are then numbered from 0 without gaps.

use std::collections::BTreeMap;

use skiff_api::networking::LocalityLoadBalancerSetting;

/// `topology.kubernetes.io/region`.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
/// `topology.kubernetes.io/zone`.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// `topology.istio.io/subzone`.
pub const SUBZONE_LABEL: &str = "topology.istio.io/subzone";
/// Istio's older locality label, `region.zone.subzone`.
const ISTIO_LOCALITY_LABEL: &str = "istio-locality";

/// Where a workload runs: region, zone and subzone (any may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash, PartialOrd, Ord)]
pub struct Locality {
    /// Region.
    pub region: String,
    /// Zone within the region.
    pub zone: String,
    /// Subzone within the zone.
    pub subzone: String,
}

impl Locality {
    /// `region/zone/subzone` (a missing part is empty; more parts are ignored).
    pub fn parse(text: &str) -> Locality {
        let mut parts = text.trim().split('/');
        let mut next = || parts.next().unwrap_or("").to_string();
        Locality {
            region: next(),
            zone: next(),
            subzone: next(),
        }
    }

    /// A workload's locality: `locality` when given and not empty, else its labels.
    pub fn of_workload(locality: Option<&str>, labels: &BTreeMap<String, String>) -> Locality {
        if let Some(l) = locality.filter(|l| !l.trim().is_empty()) {
            return Locality::parse(l);
        }
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let from_labels = Locality {
            region: label(REGION_LABEL),
            zone: label(ZONE_LABEL),
            subzone: label(SUBZONE_LABEL),
        };
        if !from_labels.is_empty() {
            return from_labels;
        }
        match labels.get(ISTIO_LOCALITY_LABEL) {
            Some(l) => Locality::parse(&l.replace('.', "/")),
            None => Locality::default(),
        }
    }

    /// No part is known.
    pub fn is_empty(&self) -> bool {
        self.region.is_empty() && self.zone.is_empty() && self.subzone.is_empty()
    }

    /// The label form, `region/zone/subzone`, without trailing empty parts (Istio's
    /// `LocalityToString`); empty when nothing is known.
    pub fn label(&self) -> String {
        let mut out = self.region.clone();
        if !self.zone.is_empty() || !self.subzone.is_empty() {
            out.push('/');
            out.push_str(&self.zone);
        }
        if !self.subzone.is_empty() {
            out.push('/');
            out.push_str(&self.subzone);
        }
        out
    }

    /// Whether a rule's locality (`region/zone/subzone`, `*` for any part, a missing
    /// zone or subzone for any) matches this one (Istio's `LocalityMatch`).
    pub fn matches(&self, rule: &str) -> bool {
        let r = Locality::parse(rule);
        let region = r.region == "*" || r.region == self.region;
        let zone = r.zone == "*" || r.zone.is_empty() || r.zone == self.zone;
        let subzone = r.subzone == "*" || r.subzone.is_empty() || r.subzone == self.subzone;
        region && zone && subzone
    }

    /// How far `other` is from this one: 0 same subzone, 1 same zone, 2 same region,
    /// 3 another region (Istio's `LbPriority`).
    pub fn distance(&self, other: &Locality) -> u32 {
        if self.region != other.region {
            3
        } else if self.zone != other.zone {
            2
        } else if self.subzone != other.subzone {
            1
        } else {
            0
        }
    }

    /// `labels` with the topology labels of this locality set (Istio's
    /// `AugmentLabels`): what `failoverPriority` compares.
    pub fn augment(&self, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut out = labels.clone();
        for (key, value) in [
            (REGION_LABEL, &self.region),
            (ZONE_LABEL, &self.zone),
            (SUBZONE_LABEL, &self.subzone),
        ] {
            if !value.is_empty() {
                out.insert(key.to_string(), value.clone());
            }
        }
        out
    }
}

/// One endpoint as locality load balancing sees it.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    /// Its locality.
    pub locality: &'a Locality,
    /// Its labels, augmented with its locality's.
    pub labels: &'a BTreeMap<String, String>,
    /// Its load-balancing weight.
    pub weight: u32,
}

/// What locality load balancing made of a cluster's endpoints for one client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Per endpoint, in order: its priority (0 first), or `None` when it is left out
    /// (a locality `distribute` gives no weight).
    pub priorities: Vec<Option<u32>>,
    /// Envoy's locality-weighted balancing is on: within a priority a locality is
    /// chosen first, by weight (`distribute`, or explicit failover settings).
    pub locality_weighted: bool,
    /// The weights `distribute` gives localities, by label; a locality not here weighs
    /// the sum of its endpoints' weights.
    pub weights: BTreeMap<String, u32>,
}

/// The mesh's locality setting when its MeshConfig says nothing: Istio's default mesh
/// config has `localityLbSetting: {enabled: true}`.
pub fn mesh_default() -> LocalityLoadBalancerSetting {
    LocalityLoadBalancerSetting {
        enabled: Some(true),
        ..Default::default()
    }
}

/// The locality setting that applies, Istio's `GetLocalityLbSetting`: the rule's unless
/// it says `enabled: false`; without one, the mesh's (MeshConfig `localityLbSetting`)
/// unless that says `enabled: false`.
pub fn effective(
    rule: Option<&LocalityLoadBalancerSetting>,
    mesh: &LocalityLoadBalancerSetting,
) -> Option<LocalityLoadBalancerSetting> {
    match rule.unwrap_or(mesh) {
        s if s.enabled == Some(false) => None,
        s => Some(s.clone()),
    }
}

/// Istio's `ApplyLocalityLoadBalancer` for a client at `client` with `client_labels`
/// (augmented), over `members`; `failover_enabled` when the cluster has outlier
/// detection. `None` when nothing changes (every endpoint in priority 0, no weights).
pub fn plan(
    setting: Option<&LocalityLoadBalancerSetting>,
    failover_enabled: bool,
    client: &Locality,
    client_labels: &BTreeMap<String, String>,
    members: &[Member<'_>],
) -> Option<Plan> {
    let setting = setting?;
    if !setting.distribute.is_empty() {
        return Some(distribute(setting, client, members));
    }
    if !failover_enabled {
        return None;
    }
    // Istio sets Envoy's locality-weighted balancing for explicit failover settings.
    let locality_weighted = !setting.failover.is_empty() || !setting.failover_priority.is_empty();
    let mut raw: Vec<u32> = vec![0; members.len()];
    let by_labels = !setting.failover_priority.is_empty();
    // Istio compares labels only when the client has some.
    if by_labels && !client_labels.is_empty() {
        for (p, m) in raw.iter_mut().zip(members) {
            *p = label_priority(&setting.failover_priority, client_labels, m.labels);
        }
    }
    if !by_labels || !setting.failover.is_empty() {
        // Five locality priorities (0..=4) under each label priority.
        for (p, m) in raw.iter_mut().zip(members) {
            *p = *p * 5 + locality_priority(setting, client, m.locality);
        }
    }
    let mut distinct = raw.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let priorities = raw
        .iter()
        .map(|p| Some(distinct.partition_point(|d| d < p) as u32))
        .collect();
    Some(Plan {
        priorities,
        locality_weighted,
        weights: BTreeMap::new(),
    })
}

/// `applyLocalityFailover` for one endpoint: its distance from the client, and 4 for
/// another region than the one `failover` names for the client's region.
fn locality_priority(
    setting: &LocalityLoadBalancerSetting,
    client: &Locality,
    endpoint: &Locality,
) -> u32 {
    let distance = client.distance(endpoint);
    if distance < 3 {
        return distance;
    }
    match setting
        .failover
        .iter()
        .find(|f| f.from.as_deref() == Some(client.region.as_str()))
    {
        Some(f) if f.to.as_deref() != Some(endpoint.region.as_str()) => 4,
        _ => 3,
    }
}

/// `applyFailoverPriorityPerLocality` for one endpoint: 0 when every label has the
/// client's value, else `n - j` for the first label `j` that does not.
fn label_priority(
    labels: &[String],
    client: &BTreeMap<String, String>,
    endpoint: &BTreeMap<String, String>,
) -> u32 {
    let n = labels.len() as u32;
    for (j, entry) in labels.iter().enumerate() {
        let (key, wanted) = match entry.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (entry.as_str(), None),
        };
        let wanted = wanted
            .or_else(|| client.get(key).map(String::as_str))
            .unwrap_or("");
        let have = endpoint.get(key).map(String::as_str).unwrap_or("");
        if wanted != have {
            return n - j as u32;
        }
    }
    0
}

/// `applyLocalityWeights`: the first `distribute` entry whose `from` matches the
/// client gives each locality its share; localities no `to` matches are left out.
fn distribute(
    setting: &LocalityLoadBalancerSetting,
    client: &Locality,
    members: &[Member<'_>],
) -> Plan {
    let mut plan = Plan {
        priorities: vec![Some(0); members.len()],
        locality_weighted: true,
        weights: BTreeMap::new(),
    };
    let Some(rule) = setting
        .distribute
        .iter()
        .find(|d| client.matches(d.from.as_deref().unwrap_or("")))
    else {
        return plan;
    };
    // Each locality once, with the sum of its endpoints' weights.
    let mut localities: BTreeMap<&Locality, (u32, bool)> = BTreeMap::new();
    for m in members {
        let e = localities.entry(m.locality).or_insert((0, false));
        e.0 = e.0.saturating_add(m.weight.max(1));
    }
    for (pattern, weight) in &rule.to {
        let taken: Vec<&Locality> = localities
            .iter()
            .filter(|(l, (_, claimed))| !claimed && l.matches(pattern))
            .map(|(l, _)| *l)
            .collect();
        let total: u64 = taken.iter().map(|l| u64::from(localities[l].0)).sum();
        for l in taken {
            let entry = localities.get_mut(l).expect("listed");
            entry.1 = true;
            let share = (u64::from(entry.0) * u64::from(*weight)).div_ceil(total.max(1));
            // A zero share keeps the locality's own weight, as Istio does.
            let w = if share > 0 {
                u32::try_from(share).unwrap_or(u32::MAX)
            } else {
                entry.0
            };
            plan.weights.insert(l.label(), w);
        }
    }
    for (p, m) in plan.priorities.iter_mut().zip(members) {
        if !localities[m.locality].1 {
            *p = None;
        }
    }
    plan
}

#[cfg(test)]
mod tests;
