use super::*;

#[test]
fn doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
    let mut rng = rand::rng();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
    let steps = [100, 200, 400, 800, 1000, 1000, 1000];
    for _ in 0..50 {
        backoff.reset();
        for step in steps {
            let d = backoff.next_delay(&mut rng);
            let step = Duration::from_millis(step);
            assert!(
                d >= step / 2 && d <= step,
                "{d:?} outside [{:?}, {step:?}]",
                step / 2
            );
        }
    }
}

#[test]
fn jitter_spreads_the_delays() {
    let mut rng = rand::rng();
    let delays: std::collections::BTreeSet<Duration> = (0..20)
        .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_delay(&mut rng))
        .collect();
    assert!(delays.len() > 1, "20 draws gave one delay: {delays:?}");
}
