use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use skiff_model::config::{LbPolicy, Warmup};

use super::Balancer;
use crate::transport::UpstreamTls;
use crate::upstream::{EndpointKey, EndpointRegistry, EndpointState, UpstreamProto};

fn endpoint(registry: &EndpointRegistry, port: u16) -> Arc<EndpointState> {
    let dial = SocketAddr::from(([127, 0, 0, 1], port));
    let key = EndpointKey {
        dial,
        target_port: None,
        proto: UpstreamProto::Http1,
        identity: None,
        pool: None,
    };
    registry.get(key, dial, None, None, || UpstreamTls::Plain)
}

fn six_sigma(n: f64, p: f64) -> f64 {
    6.0 * (n * p * (1.0 - p)).sqrt()
}

#[tokio::test(start_paused = true)]
async fn a_new_endpoint_ramps_up_over_the_warmup_window() {
    let warmup = Warmup {
        window: Duration::from_secs(100),
        minimum_percent: 10,
        aggression_milli: 1000,
    };
    for policy in [LbPolicy::RoundRobin, LbPolicy::LeastRequest] {
        let registry = EndpointRegistry::default();
        let old = endpoint(&registry, 1);
        tokio::time::advance(Duration::from_secs(600)).await;
        let new = endpoint(&registry, 2);
        let lb = Balancer::new(policy, vec![(old, 1), (new, 1)]).with_warmup(Some(&warmup));
        let share = |n: usize| (0..n).filter(|_| lb.pick() == Some(1)).count() as f64;
        let n = 6000;
        // Halfway through the window the new endpoint has half its weight: a third of
        // the draws (least request, both of its two draws: a ninth).
        tokio::time::advance(Duration::from_secs(50)).await;
        let got = share(n);
        let third: f64 = 0.5 / 1.5;
        let p = match policy {
            LbPolicy::LeastRequest => third * third,
            _ => third,
        };
        assert!(
            (got - n as f64 * p).abs() <= six_sigma(n as f64, p),
            "{policy:?}: {got} of {n}"
        );
        // After the window, equal shares.
        tokio::time::advance(Duration::from_secs(51)).await;
        let got = share(n);
        assert!(
            (got - n as f64 / 2.0).abs() <= six_sigma(n as f64, 0.5),
            "{policy:?}: {got} of {n}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_minimum_percent_holds_at_the_start() {
    let registry = EndpointRegistry::default();
    let old = endpoint(&registry, 1);
    tokio::time::advance(Duration::from_secs(2000)).await;
    let new = endpoint(&registry, 2);
    let warmup = Warmup {
        window: Duration::from_secs(1000),
        minimum_percent: 20,
        aggression_milli: 1000,
    };
    let lb =
        Balancer::new(LbPolicy::RoundRobin, vec![(old, 1), (new, 1)]).with_warmup(Some(&warmup));
    let n = 6000;
    let got = (0..n).filter(|_| lb.pick() == Some(1)).count() as f64;
    // 1 s of 1000 s would be 0.1 %: the 20 % floor applies, a share of 0.2 / 1.2.
    let p = 0.2 / 1.2;
    assert!(
        (got - n as f64 * p).abs() <= six_sigma(n as f64, p),
        "{got} of {n}"
    );
}
