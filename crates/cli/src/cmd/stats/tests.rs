use std::time::Duration;

use super::parse::parse;
use super::window::histogram_quantile;
use super::*;

#[test]
fn parses_samples_labels_escapes_and_special_values() {
    let text = "# HELP istio_requests Requests processed\n\
                # TYPE istio_requests counter\n\
                istio_requests_total{reporter=\"destination\",source_workload=\"a \\\"b\\\" \\\\ c\\nd\",response_code=\"200\"} 17\n\
                istio_request_duration_milliseconds_bucket{le=\"3.6e+06\"} 4 1700000000000\n\
                istio_request_duration_milliseconds_bucket{le=\"+Inf\",} 5\n\
                process_open_fds 12\n\
                # EOF\n";
    let all = parse(text, |_| true).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].name, "istio_requests_total");
    assert_eq!(all[0].label("source_workload"), "a \"b\" \\ c\nd");
    assert_eq!(all[0].label("response_code"), "200");
    assert_eq!(all[0].label("missing"), "");
    assert_eq!(all[0].value, 17.0);
    assert_eq!(all[1].label("le"), "3.6e+06");
    assert_eq!(parse::number(all[1].label("le")), Some(3_600_000.0));
    assert_eq!(all[1].value, 4.0, "the timestamp is not the value");
    assert_eq!(parse::number(all[2].label("le")), Some(f64::INFINITY));
    assert_eq!(all[3].labels, vec![]);
    let kept = parse(text, |n| n == "process_open_fds").unwrap();
    assert_eq!(kept.len(), 1);
    assert!(parse("x{a=\"1\" 2\n", |_| true).is_err());
    assert!(parse("x{a=1} 2\n", |_| true).is_err());
    assert!(parse("x{a=\"1\"} two\n", |_| true).is_err());
}

#[test]
fn quantiles_interpolate_inside_the_bucket_as_prometheus_does() {
    let b = [
        (0.5, 0.0),
        (1.0, 2.0),
        (5.0, 6.0),
        (10.0, 10.0),
        (f64::INFINITY, 10.0),
    ];
    // Rank 5 falls in (1, 5], which holds observations 3..=6: 1 + 4 × 3/4.
    assert_eq!(histogram_quantile(0.5, &b), Some(4.0));
    // Rank 9 in (5, 10]: 5 + 5 × 3/4.
    assert_eq!(histogram_quantile(0.9, &b), Some(8.75));
    assert_eq!(histogram_quantile(0.99, &b), Some(9.875));
    // The first bucket starts at 0.
    let first = [(10.0, 4.0), (f64::INFINITY, 4.0)];
    assert_eq!(histogram_quantile(0.5, &first), Some(5.0));
    // A rank in +Inf gives the highest finite bound.
    let inf = [(1.0, 1.0), (f64::INFINITY, 4.0)];
    assert_eq!(histogram_quantile(0.5, &inf), Some(1.0));
    // No observations, no +Inf bucket, q out of range.
    assert_eq!(
        histogram_quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]),
        None
    );
    assert_eq!(histogram_quantile(0.5, &[(1.0, 3.0), (2.0, 3.0)]), None);
    assert_eq!(histogram_quantile(1.5, &b), Some(f64::INFINITY));
    assert_eq!(histogram_quantile(-1.0, &b), Some(f64::NEG_INFINITY));
    // Counts that go down are evened out first.
    let bumpy = [(1.0, 4.0), (2.0, 3.0), (f64::INFINITY, 4.0)];
    assert_eq!(histogram_quantile(0.5, &bumpy), Some(0.5));
}

/// One series of `istio_requests_total` and its duration buckets, as a proxy writes
/// them; `buckets` are cumulative counts for le 1, 10, +Inf.
fn series(labels: &str, code: u16, count: u64, buckets: [u64; 3]) -> String {
    let mut out = format!("istio_requests_total{{{labels},response_code=\"{code}\"}} {count}\n");
    for (le, c) in ["1", "10", "+Inf"].iter().zip(buckets) {
        out.push_str(&format!(
            "istio_request_duration_milliseconds_bucket{{{labels},response_code=\"{code}\",le=\"{le}\"}} {c}\n"
        ));
    }
    out
}

const GW_TO_FRONTEND: &str = "reporter=\"destination\",source_workload=\"gw\",source_workload_namespace=\"istio-system\",destination_workload=\"frontend\",destination_workload_namespace=\"prod\",destination_service=\"frontend.prod.svc.cluster.local\",destination_service_namespace=\"prod\",connection_security_policy=\"mutual_tls\"";
const FRONTEND_TO_BACKEND: &str = "reporter=\"destination\",source_workload=\"frontend\",source_workload_namespace=\"prod\",destination_workload=\"backend-v1\",destination_workload_namespace=\"prod\",destination_service=\"backend.prod.svc.cluster.local\",destination_service_namespace=\"prod\",connection_security_policy=\"none\"";
const FRONTEND_FAULT: &str = "reporter=\"source\",source_workload=\"frontend\",source_workload_namespace=\"prod\",destination_workload=\"unknown\",destination_workload_namespace=\"unknown\",destination_service=\"backend.prod.svc.cluster.local\",destination_service_namespace=\"prod\",connection_security_policy=\"unknown\"";
const FRONTEND_TO_BACKEND_SOURCE: &str = "reporter=\"source\",source_workload=\"frontend\",source_workload_namespace=\"prod\",destination_workload=\"backend-v1\",destination_workload_namespace=\"prod\",destination_service=\"backend.prod.svc.cluster.local\",destination_service_namespace=\"prod\",connection_security_policy=\"unknown\"";

fn snapshot(at: u64, texts: &[String]) -> Snapshot {
    let mut s = Snapshot {
        at: Duration::from_secs(at),
        ..Snapshot::default()
    };
    for t in texts {
        s.add_samples(&parse(t, Snapshot::wanted).unwrap());
    }
    s
}

fn wl(ns: &str, name: &str) -> WorkloadId {
    WorkloadId {
        namespace: ns.into(),
        name: name.into(),
    }
}

#[test]
fn the_window_gives_exact_golden_metrics_per_workload_service_and_edge() {
    let frontend_at = |ok: u64, bad: u64| {
        series(GW_TO_FRONTEND, 200, ok, [ok / 2, ok, ok])
            + &series(GW_TO_FRONTEND, 502, bad, [0, bad, bad])
    };
    let backend_at = |ok: u64| series(FRONTEND_TO_BACKEND, 200, ok, [ok, ok, ok]);
    let source_at = |ok: u64, fault: u64| {
        series(FRONTEND_TO_BACKEND_SOURCE, 200, ok, [ok, ok, ok])
            + &series(FRONTEND_FAULT, 503, fault, [fault, fault, fault])
    };
    let mut window = Window::new(3);
    window.push(snapshot(
        0,
        &[frontend_at(10, 0), backend_at(10), source_at(10, 0)],
    ));
    window.push(snapshot(
        5,
        &[frontend_at(30, 4), backend_at(30), source_at(30, 4)],
    ));
    // Over 5 s: 20 ok and 4 bad at the frontend; 20 ok at backend-v1; 4 faults.
    let d = window.last(Duration::from_secs(60));
    assert_eq!(d.seconds, 5.0);

    let workloads = d.by_workload();
    let f = &workloads[&wl("prod", "frontend")];
    assert_eq!((f.requests(), f.successes()), (24, 20));
    assert_eq!(f.rps(), 4.8);
    assert_eq!(f.success_rate(), Some(20.0 / 24.0));
    assert_eq!(f.mtls_share(), Some(1.0));
    // Buckets over the window: le 1: 10, le 10: 24. p50 rank 12 in (1, 10]: 1 + 9 × 2/14.
    assert_eq!(f.quantile(0.5), Some(1.0 + 9.0 * (2.0 / 14.0)));
    assert_eq!(
        f.quantile(0.99),
        Some(1.0 + 9.0 * ((0.99 * 24.0 - 10.0) / 14.0))
    );
    let b = &workloads[&wl("prod", "backend-v1")];
    assert_eq!(
        (b.requests(), b.successes(), b.mtls_share()),
        (20, 20, Some(0.0))
    );
    assert_eq!(
        workloads.len(),
        2,
        "only callees' proxies count for workloads"
    );

    // The backend's service: what its workload reported plus the faults only the
    // caller saw; the caller's own report of answered requests is not counted twice.
    let services = d.by_service();
    let s = &services[&(
        "backend.prod.svc.cluster.local".to_owned(),
        "prod".to_owned(),
    )];
    assert_eq!((s.requests(), s.successes()), (24, 20));
    assert_eq!(s.mtls_share(), Some(0.0));
    assert_eq!(s.success_rate(), Some(20.0 / 24.0));

    let edges = d.edges();
    let svc = Node::Service("backend.prod.svc.cluster.local".into(), "prod".into());
    let to_svc = &edges[&(Node::Workload(wl("prod", "frontend")), svc.clone())];
    assert_eq!((to_svc.requests(), to_svc.successes()), (24, 20));
    let to_v1 = &edges[&(svc, Node::Workload(wl("prod", "backend-v1")))];
    assert_eq!((to_v1.requests(), to_v1.successes()), (20, 20));
    let gw = &edges[&(
        Node::Workload(wl("istio-system", "gw")),
        Node::Service("frontend.prod.svc.cluster.local".into(), "prod".into()),
    )];
    assert_eq!(
        (gw.requests(), gw.successes(), gw.mtls_share()),
        (24, 20, Some(1.0))
    );
    assert_eq!(edges.len(), 4);
}

#[test]
fn a_counter_reset_counts_what_the_restarted_proxy_says() {
    let mut window = Window::new(2);
    window.push(snapshot(
        0,
        &[series(GW_TO_FRONTEND, 200, 50, [50, 50, 50])],
    ));
    window.push(snapshot(2, &[series(GW_TO_FRONTEND, 200, 6, [6, 6, 6])]));
    let w = &window.last(Duration::from_secs(60)).by_workload()[&wl("prod", "frontend")];
    assert_eq!(w.requests(), 6);
    assert_eq!(w.rps(), 3.0);
}

#[test]
fn the_window_keeps_its_last_snapshots_and_steps() {
    let mut window = Window::new(3);
    for (at, n) in [(0, 0), (2, 4), (4, 10), (6, 12)] {
        window.push(snapshot(at, &[series(GW_TO_FRONTEND, 200, n, [n, n, n])]));
    }
    assert_eq!(window.len(), 3);
    // The oldest kept is at 2 s.
    let d = window.last(Duration::from_secs(60));
    assert_eq!(
        (
            d.seconds,
            d.by_workload()[&wl("prod", "frontend")].requests()
        ),
        (4.0, 8)
    );
    // A shorter span starts later.
    let d = window.last(Duration::from_secs(2));
    assert_eq!(d.by_workload()[&wl("prod", "frontend")].requests(), 2);
    let steps: Vec<(u64, u64)> = window
        .steps(Duration::from_secs(60))
        .iter()
        .map(|(at, d)| {
            (
                at.as_secs(),
                d.by_workload()
                    .get(&wl("prod", "frontend"))
                    .map_or(0, Golden::requests),
            )
        })
        .collect();
    assert_eq!(steps, [(4, 6), (6, 2)]);
}

#[test]
fn targets_come_from_prometheus_http_sd() {
    let sd = br#"[{"targets":["127.0.10.10:15020"],"labels":{"__metrics_path__":"/stats/prometheus","proxy":"frontend.prod","namespace":"prod","kind":"sidecar"}},
                 {"targets":["127.0.0.1:15020"],"labels":{"proxy":"istio-ingressgateway.istio-system","namespace":"istio-system","kind":"gateway"}}]"#;
    let t = targets_of(sd).unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].workload, wl("prod", "frontend"));
    assert_eq!(t[0].path, "/stats/prometheus");
    assert_eq!(t[0].address, "127.0.10.10:15020".parse().unwrap());
    assert_eq!(t[1].workload, wl("istio-system", "istio-ingressgateway"));
    assert_eq!(t[1].path, "/metrics");
    assert!(targets_of(b"{}").is_err());
}

#[test]
fn figures_read_as_people_write_them() {
    assert_eq!(figure(0.0), "0");
    assert_eq!(figure(4.8), "4.80");
    assert_eq!(figure(12.34), "12.3");
    assert_eq!(figure(1234.5), "1234");
    assert_eq!(percent(Some(20.0 / 24.0)), "83.33%");
    assert_eq!(percent(None), "-");
    assert_eq!(millis(Some(2.5)), "2.50ms");
}
