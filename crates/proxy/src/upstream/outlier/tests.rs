use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use skiff_model::config::OutlierDetection;

use super::*;
use crate::upstream::UpstreamProto;

fn settings() -> OutlierDetection {
    OutlierDetection {
        consecutive_5xx: 3,
        consecutive_gateway: 0,
        consecutive_local_origin: 0,
        split_local_origin: false,
        interval: Duration::from_secs(10),
        base_ejection_time: Duration::from_secs(30),
        max_ejection_time: Duration::from_secs(300),
        max_ejection_percent: 100,
        min_health_percent: 0,
    }
}

fn key(port: u16) -> EndpointKey {
    EndpointKey {
        dial: SocketAddr::from(([127, 0, 0, 1], port)),
        target_port: None,
        proto: UpstreamProto::Http1,
        identity: None,
        pool: None,
    }
}

fn detector(od: OutlierDetection, n: u16) -> (Arc<Detector>, Vec<Arc<HostMonitor>>) {
    let d = Detector::start("c", &od);
    let keys: Vec<(EndpointKey, String)> = (0..n).map(|i| (key(i + 1), format!("h{i}"))).collect();
    let refs: Vec<(EndpointKey, &str)> =
        keys.iter().map(|(k, s)| (k.clone(), s.as_str())).collect();
    let hosts = d.hosts_for(&refs);
    (d, hosts)
}

fn fail(d: &Detector, h: &HostMonitor, n: usize) -> Option<String> {
    (0..n)
        .filter_map(|_| d.report(h, Outcome::Status(503)))
        .last()
}

/// Lets the sweep run at the tokio time reached.
async fn run_for(d: Duration) {
    tokio::time::sleep(d).await;
    tokio::task::yield_now().await;
}

#[tokio::test(start_paused = true)]
async fn consecutive_5xx_eject_and_a_success_resets_the_count() {
    let (d, h) = detector(settings(), 3);
    d.report(&h[0], Outcome::Status(500));
    d.report(&h[0], Outcome::Status(503));
    d.report(&h[0], Outcome::Status(200));
    d.report(&h[0], Outcome::Status(500));
    d.report(&h[0], Outcome::Status(502));
    assert!(!h[0].is_ejected());
    let said = d.report(&h[0], Outcome::Status(504)).unwrap();
    assert!(said.contains("3 consecutive 5xx"), "{said}");
    assert!(h[0].is_ejected());
    assert!(d.filtering());
}

#[tokio::test(start_paused = true)]
async fn the_endpoint_returns_at_the_first_sweep_after_base_ejection_time() {
    let (d, h) = detector(settings(), 3);
    fail(&d, &h[1], 3).unwrap();
    // Sweeps at 10 s and 20 s leave it out; the one at 30 s returns it.
    run_for(Duration::from_secs(29)).await;
    assert!(h[1].is_ejected());
    run_for(Duration::from_secs(2)).await;
    assert!(!h[1].is_ejected());
    assert!(!d.filtering());
}

#[tokio::test(start_paused = true)]
async fn ejection_time_grows_with_repeated_ejections_up_to_the_maximum() {
    let mut od = settings();
    od.max_ejection_time = Duration::from_secs(70);
    let (d, h) = detector(od, 3);
    // First ejection: 30 s.
    fail(&d, &h[0], 3).unwrap();
    run_for(Duration::from_secs(31)).await;
    assert!(!h[0].is_ejected());
    // Again at once (the multiplier has not decayed): 2 × 30 s = 60 s.
    let said = fail(&d, &h[0], 3).unwrap();
    assert!(said.contains("60s"), "{said}");
    // Ejected at 31 s: the sweeps up to 90 s find it out for less than 60 s.
    run_for(Duration::from_secs(65)).await;
    assert!(h[0].is_ejected());
    run_for(Duration::from_secs(5)).await;
    assert!(!h[0].is_ejected());
    // A third time: 3 × 30 s capped at 70 s.
    let said = fail(&d, &h[0], 3).unwrap();
    assert!(said.contains("70s"), "{said}");
    // Healthy sweeps lower the multiplier again, one per interval.
    run_for(Duration::from_secs(80)).await;
    assert!(!h[0].is_ejected());
    run_for(Duration::from_secs(60)).await;
    let said = fail(&d, &h[0], 3).unwrap();
    assert!(said.contains("30s"), "{said}");
}

#[tokio::test(start_paused = true)]
async fn max_ejection_percent_counts_the_share_ejected_before() {
    let mut od = settings();
    od.max_ejection_percent = 10;
    let (d, h) = detector(od, 3);
    // 0 % ejected < 10 %: one goes, even though it is a third of the cluster.
    assert!(fail(&d, &h[0], 3).is_some());
    // 33 % ≥ 10 %: no more.
    assert!(fail(&d, &h[1], 3).is_none());
    assert!(!h[1].is_ejected());
}

#[tokio::test(start_paused = true)]
async fn below_min_health_percent_the_cluster_panics() {
    let mut od = settings();
    od.min_health_percent = 70;
    let (d, h) = detector(od, 3);
    fail(&d, &h[0], 3).unwrap();
    // 2 of 3 healthy is 66 % < 70 %: balance over all.
    assert!(h[0].is_ejected());
    assert!(!d.filtering());
}

#[tokio::test(start_paused = true)]
async fn gateway_errors_and_local_origin_failures_count_as_configured() {
    let mut od = settings();
    od.consecutive_5xx = 0;
    od.consecutive_gateway = 2;
    let (d, h) = detector(od.clone(), 4);
    // A 500 is not a gateway error and breaks the run.
    d.report(&h[0], Outcome::Status(502));
    d.report(&h[0], Outcome::Status(500));
    assert!(d.report(&h[0], Outcome::Status(503)).is_none());
    // Without the split, a connect failure is a 503.
    let said = d
        .report(&h[0], Outcome::LocalFailure { timeout: false })
        .unwrap();
    assert!(said.contains("gateway"), "{said}");

    od.consecutive_gateway = 0;
    od.consecutive_5xx = 2;
    od.split_local_origin = true;
    od.consecutive_local_origin = 2;
    let (d, h) = detector(od, 4);
    // With the split, local failures count apart: two 5xx interleaved don't add up.
    d.report(&h[1], Outcome::LocalFailure { timeout: true });
    d.report(&h[1], Outcome::Status(503));
    assert!(!h[1].is_ejected());
    let said = d.report(&h[1], Outcome::Status(503)).unwrap();
    assert!(said.contains("5xx"), "{said}");
    d.report(&h[2], Outcome::LocalFailure { timeout: false });
    let said = d
        .report(&h[2], Outcome::LocalFailure { timeout: true })
        .unwrap();
    assert!(said.contains("local-origin"), "{said}");
}
