use std::time::Duration;

use super::{Backoff, Policy};

const S: Duration = Duration::from_secs(1);

#[test]
fn doubles_from_one_second_to_thirty() {
    let mut b = Backoff::new(Policy::default());
    let waits: Vec<u64> = (0..8).map(|_| b.after_exit(S / 10).as_secs()).collect();
    assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
}

#[test]
fn a_child_that_stayed_up_starts_again_from_one_second() {
    let mut b = Backoff::new(Policy::default());
    for _ in 0..4 {
        b.after_exit(Duration::ZERO);
    }
    assert_eq!(b.after_exit(S * 9), 16 * S, "9 s is not long enough");
    assert_eq!(b.after_exit(S * 10), S, "10 s up resets it");
    assert_eq!(b.after_exit(Duration::ZERO), 2 * S);
}

#[test]
fn a_short_policy_for_tests_keeps_the_shape() {
    let mut b = Backoff::new(Policy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(150),
        reset_after: S,
    });
    let waits: Vec<u128> = (0..4)
        .map(|_| b.after_exit(Duration::ZERO).as_millis())
        .collect();
    assert_eq!(waits, [50, 100, 150, 150]);
}
