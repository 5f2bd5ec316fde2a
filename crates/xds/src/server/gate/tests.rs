use std::time::Duration;

use super::*;

fn gate(limit: usize) -> Arc<PushGate> {
    PushGate::new(limit, Duration::from_secs(5))
}

/// Starts a push that records its name once admitted and holds its place until told.
fn push(
    gate: &Arc<PushGate>,
    name: &'static str,
    urgent: bool,
    order: &Arc<Mutex<Vec<&'static str>>>,
) -> (tokio::task::JoinHandle<()>, oneshot::Sender<()>) {
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let gate = gate.clone();
    let order = order.clone();
    let task = tokio::spawn(async move {
        let _permit = gate.enter(urgent).await;
        order.lock().unwrap().push(name);
        let _ = done_rx.await;
    });
    (task, done_tx)
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn at_most_the_limit_run_and_endpoint_pushes_go_first() {
    let gate = gate(2);
    let order = Arc::new(Mutex::new(Vec::new()));
    let (a, a_done) = push(&gate, "a", false, &order);
    let (b, b_done) = push(&gate, "b", false, &order);
    settle().await;
    let (c, c_done) = push(&gate, "routes", false, &order);
    settle().await;
    let (d, d_done) = push(&gate, "endpoints", true, &order);
    settle().await;
    assert_eq!(*order.lock().unwrap(), ["a", "b"]);
    assert_eq!(gate.load(), (2, 2));

    a_done.send(()).unwrap();
    a.await.unwrap();
    settle().await;
    // The endpoint push came after the route push, and goes before it.
    assert_eq!(*order.lock().unwrap(), ["a", "b", "endpoints"]);
    assert_eq!(gate.load(), (2, 1));

    b_done.send(()).unwrap();
    b.await.unwrap();
    settle().await;
    assert_eq!(*order.lock().unwrap(), ["a", "b", "endpoints", "routes"]);
    d_done.send(()).unwrap();
    c_done.send(()).unwrap();
    c.await.unwrap();
    d.await.unwrap();
    assert_eq!(gate.load(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_push_that_stops_waiting_gives_its_place_on() {
    let gate = gate(1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let (a, a_done) = push(&gate, "a", false, &order);
    settle().await;
    let (gone, _gone_done) = push(&gate, "gone", true, &order);
    let (c, c_done) = push(&gate, "c", false, &order);
    settle().await;
    assert_eq!(gate.load(), (1, 2));
    // The stream of the urgent push ends while it waits.
    gone.abort();
    let _ = gone.await;
    a_done.send(()).unwrap();
    a.await.unwrap();
    settle().await;
    assert_eq!(*order.lock().unwrap(), ["a", "c"]);
    c_done.send(()).unwrap();
    c.await.unwrap();
    assert_eq!(gate.load(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_place_handed_to_a_push_that_just_stopped_waiting_is_not_lost() {
    let gate = gate(1);
    let first = gate.enter(false).await;
    let mut waiting = Box::pin(gate.enter(false));
    // Polled once: it queues.
    assert!(futures_util::FutureExt::now_or_never(&mut waiting).is_none());
    assert_eq!(gate.load(), (1, 1));
    // The place is handed over, but the waiter is dropped before it wakes.
    drop(first);
    drop(waiting);
    assert_eq!(gate.load(), (0, 0));
    let _again = gate.enter(false).await;
    assert_eq!(gate.load(), (1, 0));
}
