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
    let started = match probe(pid, read_stat) {
        Probe::Running(t) => t,
        // Already gone: nothing to be part of.
        Probe::Gone => {
            let _ = raise(Signal::SIGTERM);
            return;
        }
        // Could not look (out of file descriptors already?): follow by pid alone.
        Probe::Unknown(_) => 0,
    };
    if getppid() == Pid::from_raw(pid) {
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    }
    let watch = move || {
        let mut unknown_since_warned = false;
        loop {
            match probe(pid, read_stat) {
                Probe::Running(t) if t == started || started == 0 => {}
                Probe::Running(_) | Probe::Gone => break,
                Probe::Unknown(e) => {
                    // Not knowing is not "gone": a process out of file descriptors
                    // cannot read /proc, and stopping itself then would turn a flood of
                    // connections into an outage.
                    if !unknown_since_warned {
                        tracing::warn!(error = %e, "cannot check on skiff up (pid {pid}); assuming it still runs");
                        unknown_since_warned = true;
                    }
                }
            }
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

/// What a look at the supervisor found.
#[derive(Debug)]
enum Probe {
    /// It runs, started at this time (clock ticks after boot, field 22 of
    /// `/proc/PID/stat`), so that a reused pid is not mistaken for it.
    Running(u64),
    /// It has exited, including as a zombie not yet reaped.
    Gone,
    /// This process could not look: out of file descriptors (EMFILE, ENFILE), or not
    /// allowed to read `/proc` (EACCES), and the pid still answers signals.
    Unknown(std::io::Error),
}

fn read_stat(pid: i32) -> std::io::Result<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
}

/// Looks at `pid` through `read` (`/proc/PID/stat`). When the file cannot be read for
/// any reason but its absence, a null signal (which needs no file descriptor) tells
/// whether the pid is gone.
fn probe(pid: i32, read: impl Fn(i32) -> std::io::Result<String>) -> Probe {
    let stat = match read(pid) {
        Ok(stat) => stat,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Probe::Gone,
        Err(e) => {
            return match nix::sys::signal::kill(Pid::from_raw(pid), None) {
                Err(nix::errno::Errno::ESRCH) => Probe::Gone,
                _ => Probe::Unknown(e),
            };
        }
    };
    match parse_start_time(&stat) {
        Some(Some(t)) => Probe::Running(t),
        Some(None) => Probe::Gone,
        None => Probe::Unknown(std::io::Error::other(format!(
            "unexpected /proc/{pid}/stat: {stat:.80}"
        ))),
    }
}

/// The start time in a `/proc/PID/stat` line: `Some(None)` for a zombie or dead
/// process, `None` when the line does not parse.
fn parse_start_time(stat: &str) -> Option<Option<u64>> {
    // The command name (field 2) is in parentheses and may hold spaces: read after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return Some(None);
    }
    // `rest` starts at field 3 (state); the start time is field 22.
    fields.nth(18)?.parse().ok().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_and_a_missing_one_is_gone() {
        let me = std::process::id() as i32;
        let Probe::Running(t) = probe(me, read_stat) else {
            panic!("this process should be running");
        };
        assert!(matches!(probe(me, read_stat), Probe::Running(u) if u == t));
        // Above the kernel's pid_max limit (4,194,304): never a live process.
        assert!(matches!(probe(5_000_000, read_stat), Probe::Gone));
    }

    #[test]
    fn out_of_file_descriptors_is_not_gone() {
        let me = std::process::id() as i32;
        let emfile = |_| Err(std::io::Error::from_raw_os_error(libc_emfile()));
        assert!(matches!(probe(me, emfile), Probe::Unknown(_)));
        let eacces = |_| Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert!(matches!(probe(me, eacces), Probe::Unknown(_)));
        // A pid that does not exist is gone even when /proc cannot be read.
        assert!(matches!(probe(5_000_000, emfile), Probe::Gone));
    }

    #[test]
    fn zombies_are_gone() {
        let zombie = "42 (sh -c x) Z 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0";
        assert!(matches!(probe(42, |_| Ok(zombie.to_owned())), Probe::Gone));
        let running = zombie.replacen(" Z ", " S ", 1);
        assert!(matches!(
            probe(42, |_| Ok(running.clone())),
            Probe::Running(777)
        ));
    }

    fn libc_emfile() -> i32 {
        nix::errno::Errno::EMFILE as i32
    }
}
