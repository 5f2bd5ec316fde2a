//! Children of `skiff up` end with it, even when it is killed without a chance to stop
//! them (SIGKILL, a crash): a mesh left running would hold its addresses and ports and
//! make the next `skiff up` fail.
//!
//! `skiff up` names itself in [`SUPERVISOR_PID_ENV`] for everything it starts. A skiff
//! process that finds the variable asks the kernel for SIGTERM when its parent dies (a
//! direct child learns at once), and checks every second that the supervisor still runs
//! (which also covers processes started through `sh -c`). When it is gone, the process
//! sends itself SIGTERM, so proxies drain and the control plane closes its streams as on
//! any stop; after a grace period it exits regardless.

use std::time::Duration;

use nix::sys::signal::{Signal, raise};
use nix::unistd::{Pid, getppid};

/// The variable `skiff up` sets for its children: its own process id.
pub(crate) const SUPERVISOR_PID_ENV: &str = "SKIFF_UP_PID";

/// How often a child checks that `skiff up` still runs.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long a child whose supervisor died gets to stop after its SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Ties this process to the `skiff up` that started it, if one did.
pub(crate) fn follow_supervisor() {
    let Some(pid) = std::env::var(SUPERVISOR_PID_ENV)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return;
    };
    let Some(started) = start_time(pid) else {
        // Already gone: nothing to be part of.
        let _ = raise(Signal::SIGTERM);
        return;
    };
    if getppid() == Pid::from_raw(pid) {
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    }
    let watch = move || {
        while start_time(pid) == Some(started) {
            std::thread::sleep(CHECK_EVERY);
        }
        let _ = raise(Signal::SIGTERM);
        tracing::warn!("skiff up (pid {pid}) is gone; stopping");
        std::thread::sleep(STOP_GRACE);
        std::process::exit(1);
    };
    let _ = std::thread::Builder::new()
        .name("lifeline".to_owned())
        .spawn(watch);
}

/// When a running process started (clock ticks after boot, field 22 of
/// `/proc/PID/stat`), so that a reused pid is not mistaken for it; `None` once it has
/// exited, including as a zombie not yet reaped.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: read after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `rest` starts at field 3 (state); the start time is field 22.
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_start_time_and_a_missing_one_has_none() {
        let me = std::process::id() as i32;
        let t = start_time(me).expect("a running process");
        assert_eq!(start_time(me), Some(t));
        // Above the kernel's pid_max limit (4,194,304): never a live process.
        assert_eq!(start_time(5_000_000), None);
    }
}
