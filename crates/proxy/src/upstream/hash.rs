//! Consistent hashing: a DestinationRule's `loadBalancer.consistentHash`. A request
//! attribute (a header, a cookie, the source address, a query parameter) is hashed, and
//! the hash is looked up in a ring (`ringHash`, Envoy's ketama-style ring) or a Maglev
//! table, both built once per snapshot from the endpoints and their weights. A request
//! without the attribute gets a random hash, as in Envoy.
//!
//! An ejected endpoint's share moves to the next healthy entry of the ring (or table),
//! so the other endpoints keep their keys.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};
use skiff_model::config::{ConsistentHash, HashAlgorithm, HashCookie, HashKey};

/// Largest ring Envoy builds by default.
const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;

/// A stable 64-bit hash (FNV-1a, then a finalizer that spreads the bits): the same on
/// every proxy and every run, so proxies with the same config agree.
pub(crate) fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The table a cluster's hash is looked up in: endpoint indexes.
#[derive(Debug)]
pub(crate) struct HashTable {
    pub(crate) key: HashKey,
    table: Table,
}

#[derive(Debug)]
enum Table {
    /// Sorted (hash, endpoint) points.
    Ring(Vec<(u64, u32)>),
    /// Maglev lookup table: entry → endpoint.
    Maglev(Vec<u32>),
}

impl HashTable {
    /// Builds the table for endpoints named `names` (stable names: their addresses)
    /// with `weights`.
    pub(crate) fn build(policy: &ConsistentHash, names: &[String], weights: &[u32]) -> HashTable {
        let table = match policy.algorithm {
            HashAlgorithm::RingHash { minimum_ring_size } => {
                Table::Ring(ring(names, weights, minimum_ring_size))
            }
            HashAlgorithm::Maglev { table_size } => {
                Table::Maglev(maglev(names, weights, table_size))
            }
        };
        HashTable {
            key: policy.key.clone(),
            table,
        }
    }

    /// The endpoint for `hash`: the first entry at or after it whose endpoint `usable`
    /// accepts.
    pub(crate) fn lookup(&self, hash: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        match &self.table {
            Table::Ring(points) => {
                if points.is_empty() {
                    return None;
                }
                let start = points.partition_point(|(h, _)| *h < hash) % points.len();
                (0..points.len())
                    .map(|k| points[(start + k) % points.len()].1 as usize)
                    .find(|&i| usable(i))
            }
            Table::Maglev(entries) => {
                if entries.is_empty() {
                    return None;
                }
                let start = (hash % entries.len() as u64) as usize;
                (0..entries.len())
                    .map(|k| entries[(start + k) % entries.len()] as usize)
                    .find(|&i| usable(i))
            }
        }
    }
}

/// The ring: each endpoint gets `min` points per unit of weight (so the ring holds at
/// least `min` points, `minimumRingSize`), at most 8M points in all; a point's hash is
/// that of `<name>_<n>`. Envoy spreads `min` over all endpoints instead; giving each
/// endpoint its points whatever the others are means that removing one moves only its
/// own keys.
fn ring(names: &[String], weights: &[u32], min: u64) -> Vec<(u64, u32)> {
    let total: u64 = weights.iter().map(|w| u64::from((*w).max(1))).sum();
    if names.is_empty() || total == 0 {
        return Vec::new();
    }
    let per_weight = min.clamp(1, (MAX_RING_SIZE / total).max(1));
    let mut points = Vec::with_capacity((per_weight * total) as usize);
    let mut key = String::new();
    for (i, (name, w)) in names.iter().zip(weights).enumerate() {
        for n in 0..per_weight * u64::from((*w).max(1)) {
            key.clear();
            key.push_str(name);
            key.push('_');
            key.push_str(&n.to_string());
            points.push((hash64(key.as_bytes()), i as u32));
        }
    }
    points.sort_unstable();
    points
}

/// The Maglev lookup table (Eisenbud et al., 2016), weighted as Envoy weights it: each
/// round, an endpoint takes its next preferred free entry when its weight allows.
fn maglev(names: &[String], weights: &[u32], size: u64) -> Vec<u32> {
    let m = size.max(1);
    if names.is_empty() {
        return Vec::new();
    }
    let offsets: Vec<u64> = names
        .iter()
        .map(|n| hash64(format!("{n}#offset").as_bytes()) % m)
        .collect();
    let skips: Vec<u64> = names
        .iter()
        .map(|n| hash64(format!("{n}#skip").as_bytes()) % (m - 1).max(1) + 1)
        .collect();
    let max_weight = f64::from(weights.iter().copied().max().unwrap_or(1).max(1));
    let weights: Vec<f64> = weights
        .iter()
        .map(|w| f64::from((*w).max(1)) / max_weight)
        .collect();
    let mut next = vec![0u64; names.len()];
    let mut credit = vec![0f64; names.len()];
    let mut table = vec![u32::MAX; m as usize];
    let mut filled = 0u64;
    'fill: loop {
        for i in 0..names.len() {
            credit[i] += weights[i];
            if credit[i] < 1.0 {
                continue;
            }
            credit[i] -= 1.0;
            loop {
                let c = (offsets[i] + next[i] * skips[i]) % m;
                next[i] += 1;
                if table[c as usize] == u32::MAX {
                    table[c as usize] = i as u32;
                    filled += 1;
                    break;
                }
            }
            if filled == m {
                break 'fill;
            }
        }
    }
    table
}

/// The hash of a request, by the cluster's key; `None` when the request lacks the
/// attribute (then the balancer picks at random, as Envoy does).
pub(crate) fn request_hash(
    key: &HashKey,
    headers: &HeaderMap,
    query: Option<&str>,
    source: Option<IpAddr>,
) -> Option<u64> {
    match key {
        HashKey::Header(name) => {
            let v = headers.get(name.as_str())?;
            Some(hash64(v.as_bytes()))
        }
        HashKey::Cookie(c) => cookie(headers, &c.name).map(|v| hash64(v.as_bytes())),
        HashKey::SourceIp => source.map(|ip| hash64(ip.to_string().as_bytes())),
        HashKey::QueryParameter(name) => {
            let q = query?;
            q.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k == name).then(|| hash64(v.as_bytes()))
            })
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"'))
        })
}

/// For a cookie hash whose cookie the request lacks, with a `ttl`: the cookie value
/// to hash on and to set on the response (`Set-Cookie`), made from the downstream's
/// address as Envoy makes it, so a client's requests agree before the cookie is back.
pub(crate) fn new_cookie(c: &HashCookie, source: Option<IpAddr>) -> Option<(u64, HeaderValue)> {
    let ttl = c.ttl?;
    let seed = source.map(|ip| ip.to_string()).unwrap_or_default();
    let value = format!("{:016x}", hash64(seed.as_bytes()));
    let mut set = format!("{}=\"{value}\"", c.name);
    if !ttl.is_zero() {
        set.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if let Some(path) = &c.path {
        set.push_str("; Path=");
        set.push_str(path);
    }
    set.push_str("; HttpOnly");
    let header = HeaderValue::try_from(set).ok()?;
    Some((hash64(value.as_bytes()), header))
}

#[cfg(test)]
mod tests;
