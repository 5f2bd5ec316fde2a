//! The workloads `skiff up` runs, kept in step with the directory: a WorkloadEntry
//! added while it runs gets its proxy and app, one removed has them stopped, one
//! changed (address, identity, command, ports) has them restarted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use skiff_identity::BootstrapTokens;

use super::ProxyPlan;
use super::launch::{Launch, wait_alive, wait_ready};
use super::supervisor::Supervisor;

/// How often the directory is looked at for changes.
pub(crate) const WATCH_EVERY: Duration = Duration::from_millis(300);

/// What is known of a workload's app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AppState {
    /// Its ports answer (or it has none to check).
    Running,
    /// Started, but this port did not answer within the ready timeout.
    NotAnswering(u16),
    /// Not started: `--no-apps`.
    NotStarted,
    /// The workload names no app (no `skiff.dev/run`).
    None,
}

/// The workloads being run.
pub(crate) struct Fleet {
    pub(crate) launch: Launch,
    pub(crate) tokens: BootstrapTokens,
    pub(crate) no_apps: bool,
    pub(crate) ready_timeout: Duration,
    /// By proxy id, with the state of its app.
    pub(crate) running: BTreeMap<String, (ProxyPlan, AppState)>,
}

fn app_name(id: &str) -> String {
    format!("{id}/app")
}

impl Fleet {
    /// Starts the proxies of `plans`, waits for them to be ready, then starts their
    /// apps and waits for them to answer. With `strict`, a proxy that does not become
    /// ready is an error (at start, `skiff up` gives up); otherwise it is reported and
    /// left to its restarts.
    pub(crate) async fn start(
        &mut self,
        children: &mut Supervisor,
        plans: Vec<ProxyPlan>,
        strict: bool,
    ) -> anyhow::Result<()> {
        for p in &plans {
            let token = self.tokens.token_for(&p.identity()?);
            children.spawn(&p.id, self.launch.proxy(p, token))?;
        }
        for p in &plans {
            let ready = wait_ready(
                std::net::SocketAddr::new(p.address, 15000),
                self.ready_timeout,
            )
            .await
            .with_context(|| format!("the proxy of {} did not become ready", p.id));
            match ready {
                Ok(()) => {}
                Err(error) if strict => return Err(error),
                Err(error) => eprintln!("skiff up: {error:#}"),
            }
        }
        let mut started = Vec::new();
        for p in plans {
            let state = match (&p.run, self.no_apps) {
                (None, _) => AppState::None,
                (Some(_), true) => AppState::NotStarted,
                (Some(_), false) => {
                    children.spawn(&app_name(&p.id), self.launch.app(&p))?;
                    AppState::Running
                }
            };
            started.push((p, state));
        }
        for (p, state) in &mut started {
            if *state == AppState::Running
                && let Err(port) = wait_alive(p.address, &p.app_ports, self.ready_timeout).await
            {
                *state = AppState::NotAnswering(port);
            }
        }
        for (p, state) in started {
            self.running.insert(p.id.clone(), (p, state));
        }
        Ok(())
    }

    /// Brings the running workloads in line with `plans`: stops what is gone or
    /// changed, then starts what is new or changed. Prints what it did.
    pub(crate) async fn apply(
        &mut self,
        children: &mut Supervisor,
        plans: Vec<ProxyPlan>,
    ) -> anyhow::Result<()> {
        let mut wanted: BTreeMap<String, ProxyPlan> =
            plans.into_iter().map(|p| (p.id.clone(), p)).collect();
        let gone: Vec<(String, &'static str)> = self
            .running
            .iter()
            .filter_map(|(id, (old, _))| match wanted.get(id) {
                None => Some((id.clone(), "its workload is gone")),
                Some(new) if needs_restart(old, new) => Some((id.clone(), "its workload changed")),
                Some(_) => None,
            })
            .collect();
        for (id, why) in &gone {
            children.stop(&app_name(id)).await;
            children.stop(id).await;
            self.running.remove(id);
            println!("skiff up: stopped {id} ({why})");
        }
        // What the proxy learns over xDS (gateway ports) or only the summary uses
        // (app ports) is updated in place.
        wanted.retain(|id, new| match self.running.get_mut(id) {
            Some((old, _)) => {
                *old = new.clone();
                false
            }
            None => true,
        });
        if wanted.is_empty() {
            return Ok(());
        }
        let new: Vec<ProxyPlan> = wanted.into_values().collect();
        let ids: Vec<String> = new.iter().map(|p| p.id.clone()).collect();
        self.start(children, new, false).await?;
        for id in ids {
            if let Some((p, state)) = self.running.get(&id) {
                println!("skiff up: started {}", describe(p, state));
            }
        }
        Ok(())
    }
}

/// Whether a workload changed in a way its running processes cannot follow: another
/// address, identity, kind or app command.
fn needs_restart(old: &ProxyPlan, new: &ProxyPlan) -> bool {
    (
        &old.address,
        old.kind,
        &old.run,
        &old.service_account,
        &old.spiffe_id,
    ) != (
        &new.address,
        new.kind,
        &new.run,
        &new.service_account,
        &new.spiffe_id,
    )
}

/// `frontend.prod at 127.0.10.10 (proxy admin http://…:15000/, app running)`.
pub(crate) fn describe(p: &ProxyPlan, state: &AppState) -> String {
    format!(
        "{} at {} (proxy admin http://{}:15000/, {})",
        p.id,
        p.address,
        p.address,
        app_words(p, state)
    )
}

/// What the summary says of a workload's app.
pub(crate) fn app_words(p: &ProxyPlan, state: &AppState) -> String {
    match state {
        AppState::Running if p.app_ports.is_empty() => {
            "app started (no Service port to check)".to_owned()
        }
        AppState::Running => "app running".to_owned(),
        AppState::NotAnswering(port) => format!("app started, port {port} not answering yet"),
        AppState::NotStarted => "app not started (--no-apps)".to_owned(),
        AppState::None => "no app (no skiff.dev/run annotation)".to_owned(),
    }
}

/// What the configuration files of `dir` look like: every YAML file (hidden files and
/// directories left out) with its modification time and size. Two equal fingerprints
/// mean nothing changed.
pub(crate) fn fingerprint(dir: &Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut out = Vec::new();
    collect(dir, &mut out);
    out.sort();
    out
}

fn collect(dir: &Path, out: &mut Vec<(PathBuf, Option<SystemTime>, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push((path, meta.modified().ok(), meta.len()));
        }
    }
}

#[cfg(test)]
mod tests;
