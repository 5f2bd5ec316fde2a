use std::net::SocketAddr;
use std::sync::Arc;

use skiff_model::config::{LbPolicy, LocalityWeighted};

use super::super::{EndpointKey, EndpointState, UpstreamProto};
use super::{Placement, Tiers, health};
use crate::transport::UpstreamTls;

fn endpoints(n: usize) -> Vec<(Arc<EndpointState>, u32)> {
    (0..n)
        .map(|i| {
            let addr: SocketAddr = format!("127.0.0.{}:80", i + 1).parse().unwrap();
            let key = EndpointKey {
                dial: addr,
                target_port: None,
                proto: UpstreamProto::Http1,
                identity: None,
                pool: None,
            };
            (
                Arc::new(EndpointState::new(key, addr, None, UpstreamTls::Plain)),
                1,
            )
        })
        .collect()
}

fn tiers(placement: &[(u32, &str)], weighted: Option<&LocalityWeighted>) -> Tiers {
    let list = endpoints(placement.len());
    let placement: Vec<Placement<'_>> = placement
        .iter()
        .map(|(priority, locality)| Placement {
            priority: *priority,
            locality,
        })
        .collect();
    Tiers::build(LbPolicy::Random, None, &list, &placement, weighted, None).unwrap()
}

fn counts(
    t: &Tiers,
    filtering: bool,
    usable: impl Fn(usize) -> bool + Copy,
    n: usize,
) -> Vec<usize> {
    let mut out = vec![0; 8];
    for _ in 0..n {
        if let Some(i) = t.pick(filtering, usable, None) {
            out[i] += 1;
        }
    }
    out
}

#[test]
fn health_is_overprovisioned_by_1_4() {
    assert_eq!(health(1, 1), 100);
    assert_eq!(health(3, 4), 100);
    assert_eq!(health(1, 2), 70);
    assert_eq!(health(0, 2), 0);
}

#[test]
fn the_first_priority_takes_everything_while_healthy() {
    let t = tiers(&[(0, "a"), (1, "b"), (2, "c")], None);
    assert_eq!(counts(&t, false, |_| true, 1000)[..3], [1000, 0, 0]);
    // Filtering with nothing ejected in the first priority: still all of it.
    assert_eq!(counts(&t, true, |i| i != 2, 1000)[..3], [1000, 0, 0]);
    // Its one endpoint ejected: the next priority.
    assert_eq!(counts(&t, true, |i| i != 0, 1000)[..3], [0, 1000, 0]);
    assert_eq!(counts(&t, true, |i| i == 2, 1000)[..3], [0, 0, 1000]);
    assert_eq!(t.pick(true, |_| false, None), None);
}

#[test]
fn a_partly_healthy_priority_spills_its_shortfall_to_the_next() {
    // Two endpoints in priority 0, one ejected: 70 % health keeps 70 % of the load.
    let t = tiers(&[(0, "a"), (0, "a"), (1, "b")], None);
    let n = 10_000;
    let got = counts(&t, true, |i| i != 1, n);
    assert_eq!(got[1], 0);
    let p = 0.7;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    assert!((got[0] as f64 - n as f64 * p).abs() < 6.0 * sd, "{got:?}");
    assert_eq!(got[0] + got[2], n);
}

#[test]
fn localities_of_a_priority_share_by_weight() {
    let weights = LocalityWeighted {
        weights: [("a".to_string(), 80), ("b".to_string(), 20)].into(),
    };
    let t = tiers(&[(0, "a"), (0, "b"), (1, "c")], Some(&weights));
    let n = 10_000;
    let got = counts(&t, false, |_| true, n);
    assert_eq!(got[2], 0);
    let sd = (n as f64 * 0.8 * 0.2).sqrt();
    assert!((got[0] as f64 - n as f64 * 0.8).abs() < 6.0 * sd, "{got:?}");
    // A locality with its endpoint ejected takes nothing; its priority, half healthy,
    // keeps 70 % and the rest spills to the next.
    let got = counts(&t, true, |i| i != 0, n);
    assert_eq!(got[0], 0);
    assert_eq!(got[1] + got[2], n);
    let sd = (n as f64 * 0.7 * 0.3).sqrt();
    assert!((got[1] as f64 - n as f64 * 0.7).abs() < 6.0 * sd, "{got:?}");
}

#[test]
fn one_priority_without_weights_needs_no_tiers() {
    let list = endpoints(2);
    let placement = [
        Placement {
            priority: 0,
            locality: "a",
        },
        Placement {
            priority: 0,
            locality: "b",
        },
    ];
    assert!(Tiers::build(LbPolicy::Random, None, &list, &placement, None, None).is_none());
}
