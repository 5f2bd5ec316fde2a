//! Graceful drain: one signal tells every listener to stop accepting and every
//! connection to finish its in-flight requests and close; the trigger then waits until
//! the last connection is gone, or a deadline.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// Held by every listener and connection task. Cloning it registers one more holder;
/// the drain is complete when all are dropped.
#[derive(Debug, Clone)]
pub(crate) struct DrainWatch {
    signal: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

/// Starts a drain.
#[derive(Debug)]
pub(crate) struct DrainTrigger {
    signal: watch::Sender<bool>,
    all_done: mpsc::Receiver<()>,
}

pub(crate) fn channel() -> (DrainTrigger, DrainWatch) {
    let (signal, rx) = watch::channel(false);
    let (alive, all_done) = mpsc::channel(1);
    (
        DrainTrigger { signal, all_done },
        DrainWatch {
            signal: rx,
            _alive: alive,
        },
    )
}

impl DrainWatch {
    /// Resolves when a drain starts.
    pub(crate) async fn signaled(&mut self) {
        let _ = self.signal.wait_for(|draining| *draining).await;
    }
}

impl DrainTrigger {
    /// Signals the drain and waits for every holder to finish, at most `deadline`.
    /// Returns whether everything finished in time.
    pub(crate) async fn drain(mut self, deadline: Duration) -> bool {
        let _ = self.signal.send(true);
        tokio::time::timeout(deadline, self.all_done.recv())
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_for_holders_then_deadline() {
        let (trigger, watch) = channel();
        let mut held = watch.clone();
        drop(watch);
        let task = tokio::spawn(async move {
            held.signaled().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        assert!(trigger.drain(Duration::from_secs(5)).await);
        task.await.unwrap();

        let (trigger, watch) = channel();
        let _stuck = watch;
        assert!(!trigger.drain(Duration::from_secs(5)).await);
    }
}
