//! Child processes of `skiff up`: each started in its own process group with its
//! output prefixed with its name, restarted with backoff when it dies
//! ([`super::backoff`]), stopped by name when its workload goes, and all stopped in
//! reverse order of start on shutdown.
//!
//! Every child is watched by a task of its own: it waits for the process, and when the
//! process exits without having been asked to, it reports the exit (status, how long
//! it ran, its last line on stderr), waits out the backoff and starts the command
//! again.

use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::backoff::{Backoff, Policy};

/// How long a child gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long to wait for the last lines of a child that exited: an app's own children
/// may keep the pipe open after it died.
const LAST_WORDS_WAIT: Duration = Duration::from_millis(200);

/// Builds the command of a child, afresh for every start.
type MakeCommand = Box<dyn FnMut() -> Command + Send>;

/// One supervised child.
struct Unit {
    name: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// The children of one `skiff up` run.
pub(crate) struct Supervisor {
    units: Vec<Unit>,
    width: usize,
    policy: Policy,
}

impl Supervisor {
    pub(crate) fn new(width: usize, policy: Policy) -> Self {
        Self {
            units: Vec::new(),
            width,
            policy,
        }
    }

    /// Starts the command `make` builds as `name`, and keeps it running: restarted
    /// with backoff whenever it exits, until [`Supervisor::stop`] or
    /// [`Supervisor::shutdown`]. Its stdout and stderr are printed line by line,
    /// prefixed with the name. The child gets its own process group, so a Ctrl-C in the
    /// terminal reaches only `skiff up`, which then stops children in order; and it
    /// learns this process's id, so it stops by itself if `skiff up` is killed (see
    /// [`super::lifeline`]). Fails if the first start fails.
    pub(crate) fn spawn(
        &mut self,
        name: &str,
        make: impl FnMut() -> Command + Send + 'static,
    ) -> anyhow::Result<()> {
        let mut make: MakeCommand = Box::new(make);
        let prefix = format!("{name:>width$} |", width = self.width);
        let started = start(name, &prefix, &mut make)?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(keep_running(
            name.to_owned(),
            prefix,
            make,
            started,
            stopped,
            self.policy,
        ));
        self.units.push(Unit {
            name: name.to_owned(),
            stop,
            task,
        });
        Ok(())
    }

    /// Stops the child `name` (SIGTERM to its group, SIGKILL after a grace period) and
    /// no longer restarts it. Nothing happens when there is no such child.
    pub(crate) async fn stop(&mut self, name: &str) {
        if let Some(i) = self.units.iter().position(|u| u.name == name) {
            let unit = self.units.remove(i);
            stop_unit(unit).await;
        }
    }

    /// Stops every child, last started first. Returns once all have exited.
    pub(crate) async fn shutdown(&mut self) {
        while let Some(unit) = self.units.pop() {
            stop_unit(unit).await;
        }
    }
}

async fn stop_unit(unit: Unit) {
    let _ = unit.stop.send(());
    let _ = unit.task.await;
}

/// A started child, with the task collecting its last line on stderr.
struct Started {
    child: Child,
    at: Instant,
    last_words: Option<JoinHandle<String>>,
}

fn start(name: &str, prefix: &str, make: &mut MakeCommand) -> anyhow::Result<Started> {
    let mut command = make();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .env(
            super::lifeline::SUPERVISOR_PID_ENV,
            std::process::id().to_string(),
        )
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward(prefix.to_owned(), out));
    }
    let last_words = child
        .stderr
        .take()
        .map(|err| tokio::spawn(forward(prefix.to_owned(), err)));
    Ok(Started {
        child,
        at: Instant::now(),
        last_words,
    })
}

/// Watches one child until `stop`, restarting it when it exits.
async fn keep_running(
    name: String,
    prefix: String,
    mut make: MakeCommand,
    mut running: Started,
    mut stop: oneshot::Receiver<()>,
    policy: Policy,
) {
    let mut backoff = Backoff::new(policy);
    loop {
        let status = tokio::select! {
            status = running.child.wait() => status,
            _ = &mut stop => {
                terminate(&name, &mut running.child).await;
                return;
            }
        };
        let ran = running.at.elapsed();
        let last = match running.last_words.take() {
            Some(task) => tokio::time::timeout(LAST_WORDS_WAIT, task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => String::new(),
        };
        let mut wait = backoff.after_exit(ran);
        eprintln!(
            "skiff up: {name} {} after {}; last words: {last:?}; restarting in {}",
            describe(status),
            seconds(ran),
            seconds(wait)
        );
        running = loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = &mut stop => return,
            }
            match start(&name, &prefix, &mut make) {
                Ok(started) => break started,
                Err(error) => {
                    wait = backoff.after_exit(Duration::ZERO);
                    eprintln!("skiff up: {error:#}; trying again in {}", seconds(wait));
                }
            }
        };
        eprintln!("skiff up: {name} restarted");
    }
}

/// SIGTERM to the child's group and the child, SIGKILL after [`STOP_GRACE`].
async fn terminate(name: &str, child: &mut Child) {
    if let Some(pid) = child.id() {
        let pid = Pid::from_raw(pid as i32);
        // The whole group: an app started through `sh -c` has children of its own.
        let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGTERM);
        let _ = kill(pid, Signal::SIGTERM);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        eprintln!("skiff up: {name} did not stop in time; killing it");
        if let Some(pid) = child.id() {
            let _ = kill(Pid::from_raw(-(pid as i32)), Signal::SIGKILL);
        }
        let _ = child.kill().await;
    }
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            _ => "exited".to_owned(),
        },
        Err(error) => format!("could not be waited for ({error})"),
    }
}

/// `0.1s`, `2s`, `30s`.
fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}s", d.as_secs())
    }
}

/// Prints a child's output with a prefix, and returns the last line seen.
async fn forward(prefix: String, stream: impl AsyncRead + Unpin) -> String {
    let mut lines = BufReader::new(stream).lines();
    let mut last = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        println!("{prefix} {line}");
        last = line;
    }
    last
}
