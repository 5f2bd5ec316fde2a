use super::*;

#[test]
fn the_connection_count_refuses_past_its_cap_and_frees_on_drop() {
    let count = ConnectionCount::default();
    let a = count.try_open(2).expect("first");
    let b = count.try_open(2).expect("second");
    assert!(count.try_open(2).is_none(), "a third is refused");
    assert_eq!(count.open(), 2);
    drop(a);
    let c = count.try_open(2).expect("a place was freed");
    drop((b, c));
    assert_eq!(count.open(), 0);
}

#[test]
fn refusals_are_logged_once_a_second() {
    let count = ConnectionCount::default();
    assert!(count.should_warn(5));
    assert!(!count.should_warn(5));
    assert!(count.should_warn(6));
}

#[test]
fn the_open_file_limit_gives_half_less_a_reserve() {
    assert_eq!(connections_for_open_files(1024), 480);
    assert_eq!(connections_for_open_files(10), 16);
}

#[tokio::test(start_paused = true)]
async fn abandoned_requests_past_the_budget_wake_the_connection() {
    let a = Abandoned::default();
    for _ in 0..3 {
        a.count(true, 3);
    }
    let wait = tokio::time::timeout(Duration::from_secs(1), a.exceeded());
    assert!(wait.await.is_err(), "3 of a budget of 3 is within it");
    a.count(true, 3);
    tokio::time::timeout(Duration::from_secs(1), a.exceeded())
        .await
        .expect("the fourth is over the budget");
}

#[tokio::test(start_paused = true)]
async fn requests_that_end_normally_grow_the_budget() {
    let a = Abandoned::default();
    for _ in 0..10 {
        a.count(false, 2);
    }
    // Budget: 2 + 10 / 2 = 7.
    for _ in 0..7 {
        a.count(true, 2);
    }
    let wait = tokio::time::timeout(Duration::from_secs(1), a.exceeded());
    assert!(wait.await.is_err());
    a.count(true, 2);
    tokio::time::timeout(Duration::from_secs(1), a.exceeded())
        .await
        .expect("over the grown budget");
}

/// How long (paused time) `a.idle(timeout)` takes to resolve.
async fn idle_after(a: std::sync::Arc<Abandoned>, timeout: Duration) -> Duration {
    let start = tokio::time::Instant::now();
    a.idle(timeout).await;
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_connection_without_requests_is_idle_after_its_timeout() {
    let a = std::sync::Arc::new(Abandoned::default());
    let took = idle_after(a, Duration::from_secs(60)).await;
    assert!(
        took >= Duration::from_secs(60) && took <= Duration::from_secs(75),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_in_flight_keeps_the_connection_open_and_its_end_restarts_the_clock() {
    let a = std::sync::Arc::new(Abandoned::default());
    a.start();
    let idle = tokio::spawn(idle_after(a.clone(), Duration::from_secs(60)));
    // Ten minutes with a request in flight: not idle.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(!idle.is_finished(), "idle while a request was in flight");
    a.count(false, 100);
    let took = idle.await.unwrap();
    assert!(
        took >= Duration::from_secs(660) && took <= Duration::from_secs(675),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn requests_that_start_and_end_between_samples_still_count_as_activity() {
    let a = std::sync::Arc::new(Abandoned::default());
    let idle = tokio::spawn(idle_after(a.clone(), Duration::from_secs(60)));
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(7)).await;
        a.start();
        a.count(true, 1_000);
    }
    assert!(!idle.is_finished(), "idle though a request came every 7 s");
    let took = idle.await.unwrap();
    assert!(
        took >= Duration::from_secs(200) && took <= Duration::from_secs(215),
        "{took:?}"
    );
}

#[test]
fn over_the_memory_threshold_new_connections_are_refused_until_below_95_percent() {
    let count = ConnectionCount::default();
    let max = 100 * 1024 * 1024;
    assert!(
        !count.memory_reading(max, max),
        "at the threshold: not over"
    );
    assert!(count.try_open(10).is_some());
    assert!(count.memory_reading(max + 1, max), "over: state changes");
    assert!(count.try_open(10).is_none(), "refused while over");
    assert!(
        !count.memory_reading(max / 100 * 96, max),
        "96%: still over"
    );
    assert!(count.try_open(10).is_none());
    assert!(
        count.memory_reading(max / 100 * 94, max),
        "94%: taken again"
    );
    assert!(count.try_open(10).is_some());
}

#[test]
fn this_process_has_a_resident_size() {
    let rss = resident_memory().expect("readable on Linux");
    assert!(rss > 1024 * 1024, "{rss}");
}

/// How long (paused time) `w` takes to call its stream idle, `activity` read at each
/// of its wakes.
async fn stream_idle_after(w: &mut StreamIdle, activity: impl Fn() -> u64) -> Duration {
    let start = tokio::time::Instant::now();
    std::future::poll_fn(|cx| w.poll_idle(cx, activity())).await;
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_stream_with_no_activity_is_idle_after_its_timeout() {
    let t = Duration::from_secs(8);
    let mut w = StreamIdle::new(t, 0);
    assert_eq!(stream_idle_after(&mut w, || 0).await, t);
}

#[tokio::test(start_paused = true)]
async fn activity_puts_the_idle_end_off_by_one_to_one_and_a_quarter_timeouts() {
    let t = Duration::from_secs(8);
    let bytes = Arc::new(AtomicU64::new(0));
    let b = bytes.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        b.store(1, Ordering::Relaxed);
    });
    let mut w = StreamIdle::new(t, 0);
    let took = stream_idle_after(&mut w, || bytes.load(Ordering::Relaxed)).await;
    let last = Duration::from_secs(5);
    assert!(took >= last + t && took <= last + t * 5 / 4, "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_touch_counts_as_activity() {
    let t = Duration::from_secs(8);
    let mut w = StreamIdle::new(t, 0);
    let early = tokio::time::timeout(
        Duration::from_secs(7),
        std::future::poll_fn(|cx| w.poll_idle(cx, 0)),
    );
    assert!(early.await.is_err(), "not idle before its timeout");
    // Three still wakes so far; the response head arrives.
    w.touch();
    let took = stream_idle_after(&mut w, || 0).await;
    assert!(took >= Duration::from_secs(7), "{took:?}");
}
