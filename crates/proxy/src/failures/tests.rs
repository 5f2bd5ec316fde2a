use super::*;

fn failure(id: &str) -> Failure {
    Failure {
        start: String::new(),
        start_ms: 0,
        request_id: Some(id.to_owned()),
        direction: "outbound",
        method: Some("GET".into()),
        authority: Some("backend".into()),
        path: Some("/".into()),
        status: 503,
        flag: "UH".into(),
        route: None,
        cluster: None,
        upstream_host: None,
        attempts: 0,
        retries_exhausted: false,
        details: None,
        downstream: "127.0.0.1:1".into(),
        peer: None,
    }
}

fn ids(f: &Failures) -> Vec<String> {
    f.list().into_iter().filter_map(|f| f.request_id).collect()
}

#[test]
fn keeps_the_newest_in_a_fixed_number_of_slots() {
    let ring = Failures::with_capacity(3);
    assert!(ring.list().is_empty());
    ring.push(failure("a"));
    ring.push(failure("b"));
    assert_eq!(ids(&ring), ["a", "b"]);
    ring.push(failure("c"));
    ring.push(failure("d"));
    ring.push(failure("e"));
    assert_eq!(ids(&ring), ["c", "d", "e"]);
    let slots = ring.ring.lock().unwrap().slots.len();
    assert_eq!(slots, 3, "the ring never grows");
}

#[test]
fn only_failures_are_kept() {
    assert!(!Failures::is_failure(200, ResponseFlag::None));
    assert!(!Failures::is_failure(302, ResponseFlag::None));
    assert!(!Failures::is_failure(200, ResponseFlag::DelayInjected));
    assert!(Failures::is_failure(404, ResponseFlag::NoRoute));
    assert!(Failures::is_failure(403, ResponseFlag::None));
    assert!(Failures::is_failure(
        0,
        ResponseFlag::UpstreamConnectFailure
    ));
    assert!(Failures::is_failure(
        0,
        ResponseFlag::DownstreamConnectionTermination
    ));
}
