//! `skiff up-app`: how `skiff up` runs an app's command, so that the app ends with it.
//!
//! An app is any program (`python app.py`, a shell pipeline), which cannot be asked to
//! watch `skiff up` the way skiff's own processes do ([`super::lifeline`]). So `skiff
//! up` starts a small keeper instead, `skiff up-app -- COMMAND`, in a process group of
//! its own; the keeper runs `sh -c COMMAND` in that group and waits. When `skiff up`
//! goes away without stopping it (SIGKILL, a crash), the keeper learns through the
//! lifeline and stops the whole group, the app and whatever it started: SIGTERM, then
//! SIGKILL after a grace period. On an ordinary stop `skiff up` signals the group
//! itself, and the keeper only waits for the app. The keeper exits with the app's
//! status.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, getpgrp, getppid};
use tokio::signal::unix::{SignalKind, signal};

use super::lifeline::SUPERVISOR_PID_ENV;

/// How long the app gets between SIGTERM and SIGKILL when the keeper stops it.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The app's command line, run with `sh -c`.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(keep(args.command.join(" ")))
}

async fn keep(command: String) -> anyhow::Result<ExitCode> {
    // The handler first: the lifeline may raise SIGTERM as soon as it is set up.
    let mut term = signal(SignalKind::terminate())?;
    super::lifeline::follow_supervisor();
    let mut app = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .spawn()
        .with_context(|| format!("starting `sh -c {command}`"))?;
    tokio::select! {
        status = app.wait() => return Ok(exit_code(status?)),
        _ = term.recv() => {}
    }
    let group = Pid::from_raw(-getpgrp().as_raw());
    if !supervisor_is_parent() {
        // skiff up is gone: nobody else will stop the group.
        let _ = kill(group, Signal::SIGTERM);
    }
    match tokio::time::timeout(STOP_GRACE, app.wait()).await {
        Ok(status) => Ok(exit_code(status?)),
        Err(_) => {
            // The group holds this process too: nothing after this line runs.
            let _ = kill(group, Signal::SIGKILL);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Whether this process's parent is still the `skiff up` that started it.
fn supervisor_is_parent() -> bool {
    std::env::var(SUPERVISOR_PID_ENV)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
        .is_some_and(|pid| getppid() == Pid::from_raw(pid))
}

/// The app's status as this process's: its code, or 128 + the signal that ended it,
/// as shells report it.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt as _;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
