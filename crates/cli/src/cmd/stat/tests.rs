use std::time::Duration;

use super::*;
use crate::cmd::stats::Snapshot;
use crate::cmd::stats::parse::parse;

fn requests(reporter: &str, src: &str, dst: &str, svc: &str, code: u16, n: u64) -> String {
    format!(
        "istio_requests_total{{reporter=\"{reporter}\",source_workload=\"{src}\",source_workload_namespace=\"prod\",destination_workload=\"{dst}\",destination_workload_namespace=\"prod\",destination_service=\"{svc}.prod.svc.cluster.local\",destination_service_namespace=\"prod\",connection_security_policy=\"mutual_tls\",response_code=\"{code}\"}} {n}\n"
    )
}

fn delta() -> Delta {
    let at = |secs: u64, n: u64| {
        let mut s = Snapshot {
            at: Duration::from_secs(secs),
            ..Snapshot::default()
        };
        let text = requests("destination", "frontend", "backend", "backend", 200, 3 * n)
            + &requests("destination", "frontend", "backend", "backend", 503, n)
            + &requests("destination", "gateway", "frontend", "frontend", 200, 8 * n);
        s.add_samples(&parse(&text, Snapshot::wanted).unwrap());
        s
    };
    at(10, 10).since(&at(0, 0))
}

fn scraped(ns: &str, workload: &str, error: Option<&str>) -> Scraped {
    Scraped {
        proxy: format!("{workload}.{ns}"),
        namespace: ns.into(),
        workload: workload.into(),
        kind: "sidecar".into(),
        address: "127.0.0.1:15020".into(),
        error: error.map(str::to_owned),
    }
}

#[test]
fn stat_workloads_lists_proxies_with_and_without_traffic() {
    let d = delta();
    let rows = workload_rows(
        &d,
        &[
            scraped("prod", "backend", None),
            scraped("prod", "idle", Some("refused")),
            scraped("istio-system", "gateway", None),
        ],
        Some("prod"),
    );
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["backend", "frontend", "idle"]);
    assert_eq!(rows[0].golden.requests(), 40);
    assert_eq!(rows[0].golden.successes(), 30);
    assert_eq!(rows[0].meshed, Some((1, 1)));
    assert_eq!(rows[1].meshed, None, "no proxy of the frontend was listed");
    assert_eq!(rows[2].meshed, Some((0, 1)));
    assert_eq!(
        render(&rows, false),
        "NAME       MESHED   SUCCESS   RPS    P50   P90   P99   MTLS\n\
         backend    1/1      75.00%    4.00   -     -     -     100.00%\n\
         frontend   -        100.00%   8.00   -     -     -     100.00%\n\
         idle       0/1      -         -      -     -     -     -\n"
    );
}

#[test]
fn top_sorts_edges_by_rate() {
    let d = delta();
    let edges = busiest(&d, None, 3);
    let shown: Vec<(String, String, u64)> = edges
        .iter()
        .map(|(a, b, g)| (a.label(), b.label(), g.requests()))
        .collect();
    assert_eq!(
        shown,
        [
            (
                "gateway.prod".to_owned(),
                "frontend.prod.svc.cluster.local".to_owned(),
                80
            ),
            (
                "frontend.prod.svc.cluster.local".to_owned(),
                "frontend.prod".to_owned(),
                80
            ),
            (
                "frontend.prod".to_owned(),
                "backend.prod.svc.cluster.local".to_owned(),
                40
            ),
        ]
    );
    assert!(render_top(&edges).starts_with("SOURCE"));
    assert_eq!(busiest(&d, Some("other"), 10).len(), 0);
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
    assert!(parse_duration("0s").is_err());
    assert!(parse_duration("soon").is_err());
}
