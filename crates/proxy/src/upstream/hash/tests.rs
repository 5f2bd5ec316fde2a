use proptest::prelude::*;
use skiff_model::config::{ConsistentHash, HashAlgorithm, HashKey};

use super::*;

fn table(algorithm: HashAlgorithm, n: usize) -> (HashTable, Vec<String>) {
    let names: Vec<String> = (0..n).map(|i| format!("10.0.0.{i}:8080")).collect();
    let policy = ConsistentHash {
        key: HashKey::Header("x-user-id".into()),
        algorithm,
    };
    (HashTable::build(&policy, &names, &vec![1; n]), names)
}

const RING: HashAlgorithm = HashAlgorithm::RingHash {
    minimum_ring_size: 1024,
};
const MAGLEV: HashAlgorithm = HashAlgorithm::Maglev { table_size: 65537 };

fn six_sigma(n: f64, p: f64) -> f64 {
    6.0 * (n * p * (1.0 - p)).sqrt()
}

/// The share of the hash space each endpoint owns on a ring: the arcs that end at
/// its points.
fn ring_shares(t: &HashTable, n: usize) -> Vec<f64> {
    let Table::Ring(points) = &t.table else {
        panic!("a ring");
    };
    let mut share = vec![0f64; n];
    let mut prev = points.last().unwrap().0;
    for (h, i) in points {
        share[*i as usize] += h.wrapping_sub(prev) as f64 / 2f64.powi(64);
        prev = *h;
    }
    share
}

#[test]
fn keys_spread_within_binomial_bounds_of_each_endpoints_share() {
    let n_keys = 30_000;
    for (algorithm, n) in [(RING, 3), (RING, 5), (MAGLEV, 3), (MAGLEV, 7)] {
        let (t, _) = table(algorithm, n);
        let shares = match algorithm {
            HashAlgorithm::RingHash { .. } => ring_shares(&t, n),
            HashAlgorithm::Maglev { .. } => vec![1.0 / n as f64; n],
        };
        let mut counts = vec![0usize; n];
        for k in 0..n_keys {
            let h = hash64(format!("user-{k}").as_bytes());
            counts[t.lookup(h, |_| true).unwrap()] += 1;
        }
        for i in 0..n {
            let expect = n_keys as f64 * shares[i];
            let bound = six_sigma(n_keys as f64, shares[i]);
            assert!(
                (counts[i] as f64 - expect).abs() <= bound,
                "{algorithm:?}: endpoint {i} got {} of {n_keys}, expected {expect:.0} ± {bound:.0}",
                counts[i]
            );
        }
        // And no endpoint is starved: every share is near 1/n.
        for s in shares {
            assert!(
                (s - 1.0 / n as f64).abs() < 0.35 / n as f64,
                "{algorithm:?} share {s}"
            );
        }
    }
}

#[test]
fn a_maglev_table_is_filled_evenly() {
    let (t, _) = table(MAGLEV, 3);
    let Table::Maglev(entries) = &t.table else {
        panic!("maglev");
    };
    let mut counts = [0usize; 3];
    for e in entries {
        counts[*e as usize] += 1;
    }
    assert!(
        counts.iter().all(|c| c.abs_diff(65537 / 3) <= 1),
        "{counts:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Removing an endpoint moves only the keys it had (ring: exactly; Maglev: almost,
    /// as the algorithm promises minimal, not zero, disruption).
    #[test]
    fn removing_an_endpoint_remaps_only_its_share(n in 2usize..8, removed_seed in 0usize..100, maglev in any::<bool>()) {
        let algorithm = if maglev { HashAlgorithm::Maglev { table_size: 4099 } } else { RING };
        let removed = removed_seed % n;
        let (full, names) = table(algorithm, n);
        let kept: Vec<String> = names.iter().enumerate().filter(|(i, _)| *i != removed).map(|(_, s)| s.clone()).collect();
        let policy = ConsistentHash { key: HashKey::Header("x".into()), algorithm };
        let smaller = HashTable::build(&policy, &kept, &vec![1; kept.len()]);
        let (mut moved, mut others) = (0usize, 0usize);
        for k in 0..4000 {
            let h = hash64(format!("k{k}").as_bytes());
            let before = full.lookup(h, |_| true).unwrap();
            let after = smaller.lookup(h, |_| true).unwrap();
            let after_name = &kept[after];
            if before == removed {
                continue;
            }
            others += 1;
            if *after_name != names[before] {
                moved += 1;
            }
        }
        if maglev {
            prop_assert!(moved as f64 <= 0.1 * others as f64, "{moved} of {others} moved");
        } else {
            prop_assert_eq!(moved, 0);
        }
    }

    /// An ejected endpoint's keys go elsewhere; the others' stay.
    #[test]
    fn skipping_an_endpoint_keeps_the_others(n in 2usize..6, skip_seed in 0usize..100) {
        let skip = skip_seed % n;
        let (t, _) = table(RING, n);
        for k in 0..500 {
            let h = hash64(format!("k{k}").as_bytes());
            let before = t.lookup(h, |_| true).unwrap();
            let after = t.lookup(h, |i| i != skip).unwrap();
            prop_assert_ne!(after, skip);
            if before != skip {
                prop_assert_eq!(before, after);
            }
        }
    }
}

#[test]
fn request_hashes_read_their_attribute() {
    let mut headers = http::HeaderMap::new();
    headers.insert("x-user-id", "alice".parse().unwrap());
    headers.insert("cookie", "a=1; session=\"abc\"".parse().unwrap());
    let h = |k: &HashKey, q: Option<&str>| request_hash(k, &headers, q, None);
    assert_eq!(
        h(&HashKey::Header("x-user-id".into()), None),
        Some(hash64(b"alice"))
    );
    assert_eq!(h(&HashKey::Header("x-other".into()), None), None);
    let cookie = HashKey::Cookie(skiff_model::config::HashCookie {
        name: "session".into(),
        path: None,
        ttl: None,
    });
    assert_eq!(h(&cookie, None), Some(hash64(b"abc")));
    let q = HashKey::QueryParameter("u".into());
    assert_eq!(h(&q, Some("a=1&u=bob")), Some(hash64(b"bob")));
    assert_eq!(h(&q, Some("a=1")), None);
    let ip: IpAddr = "10.1.2.3".parse().unwrap();
    assert_eq!(
        request_hash(&HashKey::SourceIp, &headers, None, Some(ip)),
        Some(hash64(b"10.1.2.3"))
    );
}
