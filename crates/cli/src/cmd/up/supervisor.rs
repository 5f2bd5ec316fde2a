//! Child processes of `skiff up`: started in their own process group, their output
//! prefixed with their name, and stopped in reverse order of start on shutdown.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long a child gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// One supervised child.
struct Managed {
    name: String,
    child: Child,
}

/// The children of one `skiff up` run.
pub(crate) struct Supervisor {
    children: Vec<Managed>,
    exited_tx: mpsc::UnboundedSender<(String, String)>,
    exited_rx: mpsc::UnboundedReceiver<(String, String)>,
    width: usize,
}

impl Supervisor {
    pub(crate) fn new(width: usize) -> Self {
        let (exited_tx, exited_rx) = mpsc::unbounded_channel();
        Self {
            children: Vec::new(),
            exited_tx,
            exited_rx,
            width,
        }
    }

    /// Starts `command` as `name`. Its stdout and stderr are printed line by line,
    /// prefixed with the name. The child gets its own process group, so a Ctrl-C in
    /// the terminal reaches only `skiff up`, which then stops children in order; and
    /// it learns this process's id, so it stops by itself if `skiff up` is killed
    /// (see [`super::lifeline`]).
    pub(crate) fn spawn(&mut self, name: &str, mut command: Command) -> anyhow::Result<()> {
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
        let prefix = format!("{name:>width$} |", width = self.width);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward(prefix.clone(), out, self.exited_tx.clone(), None));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward(
                prefix,
                err,
                self.exited_tx.clone(),
                Some(name.to_owned()),
            ));
        }
        self.children.push(Managed {
            name: name.to_owned(),
            child,
        });
        Ok(())
    }

    /// Waits until some child's output ends (it exited or closed its stderr), and
    /// returns its name and last line.
    pub(crate) async fn next_exit(&mut self) -> Option<(String, String)> {
        self.exited_rx.recv().await
    }

    /// Stops every child, last started first: SIGTERM, then SIGKILL after a grace
    /// period. Returns once all have exited.
    pub(crate) async fn shutdown(&mut self) {
        while let Some(mut managed) = self.children.pop() {
            if let Some(pid) = managed.child.id() {
                let pid = Pid::from_raw(pid as i32);
                // The whole group: an app started through `sh -c` has children of its own.
                let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGTERM);
                let _ = kill(pid, Signal::SIGTERM);
            }
            match tokio::time::timeout(STOP_GRACE, managed.child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    eprintln!("{} did not stop in time; killing it", managed.name);
                    if let Some(pid) = managed.child.id() {
                        let _ = kill(Pid::from_raw(-(pid as i32)), Signal::SIGKILL);
                    }
                    let _ = managed.child.kill().await;
                }
            }
        }
    }
}

/// Prints a child's output with a prefix. When `report` names the child, the end of
/// the stream is reported as an exit with the last line seen.
async fn forward(
    prefix: String,
    stream: impl AsyncRead + Unpin,
    exited: mpsc::UnboundedSender<(String, String)>,
    report: Option<String>,
) {
    let mut lines = BufReader::new(stream).lines();
    let mut last = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        println!("{prefix} {line}");
        last = line;
    }
    if let Some(name) = report {
        let _ = exited.send((name, last));
    }
}
