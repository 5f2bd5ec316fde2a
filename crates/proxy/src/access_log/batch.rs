//! Access-log lines to stdout in batches: the data path appends a line to a shared
//! buffer (a short critical section, where it would otherwise lock stdout and make a
//! `write(2)` per request); a writer thread writes the buffer out every 50 ms while
//! there is traffic, and waits for the next line while there is none.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// How long lines wait at most before they are written.
const INTERVAL: Duration = Duration::from_millis(50);
/// Above this, new lines are dropped (and counted) rather than growing the buffer
/// without bound while stdout blocks.
const MAX_BUFFERED: usize = 8 << 20;

#[derive(Debug)]
pub(crate) struct Batch {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    buf: Vec<u8>,
    /// The writer waits for the first line of a new batch.
    idle: bool,
    dropped: u64,
}

impl Batch {
    /// A batch with its writer thread; the thread ends with the last handle.
    pub(crate) fn start() -> Arc<Batch> {
        let batch = Arc::new(Batch {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let weak = Arc::downgrade(&batch);
        let spawned = std::thread::Builder::new()
            .name("skiff-access-log".into())
            .spawn(move || writer(weak));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "no access-log writer thread; lines are written when the buffer fills or at exit");
        }
        batch
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds one line (with its newline).
    pub(crate) fn push(&self, line: &[u8]) {
        let mut s = self.lock();
        if s.buf.len() + line.len() > MAX_BUFFERED {
            s.dropped += 1;
            return;
        }
        s.buf.extend_from_slice(line);
        if s.idle {
            s.idle = false;
            self.wake.notify_one();
        }
    }

    /// Writes out everything buffered now.
    pub(crate) fn flush(&self) {
        let (buf, dropped) = {
            let mut s = self.lock();
            (std::mem::take(&mut s.buf), std::mem::take(&mut s.dropped))
        };
        write_out(&buf, dropped);
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        let s = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        write_out(&s.buf, s.dropped);
    }
}

fn write_out(buf: &[u8], dropped: u64) {
    let mut out = std::io::stdout().lock();
    if !buf.is_empty() {
        let _ = out.write_all(buf);
    }
    if dropped > 0 {
        let _ = writeln!(
            out,
            "[access log] {dropped} lines dropped: stdout did not keep up"
        );
    }
    let _ = out.flush();
}

fn writer(weak: Weak<Batch>) {
    let mut spare = Vec::new();
    loop {
        let Some(batch) = weak.upgrade() else { return };
        let dropped = {
            let mut s = batch.lock();
            if s.buf.is_empty() {
                // Wait for the first line of the next batch. Once a second, let go of
                // the handle to notice when the proxy is gone.
                s.idle = true;
                let (s, _) = batch
                    .wake
                    .wait_timeout_while(s, Duration::from_secs(1), |s| s.idle)
                    .unwrap_or_else(|e| e.into_inner());
                drop(s);
                drop(batch);
                continue;
            }
            std::mem::swap(&mut s.buf, &mut spare);
            std::mem::take(&mut s.dropped)
        };
        drop(batch);
        write_out(&spare, dropped);
        spare.clear();
        std::thread::sleep(INTERVAL);
    }
}
