//! The control plane's state, and reloading it from the configuration directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use skiff_xds::{PushSnapshot, SyncTable};
use tokio::sync::watch;

use crate::{ConfigCompiler, ConfigStatus, Finding, Severity};

/// The control plane: the snapshot being served, the status of the configuration, and
/// the sync state of every proxy. Share it behind an `Arc`.
pub struct ControlPlane {
    dir: PathBuf,
    compiler: Box<dyn ConfigCompiler>,
    snapshots: watch::Sender<Arc<PushSnapshot>>,
    status: watch::Sender<Arc<ConfigStatus>>,
    sync: SyncTable,
    /// One reload at a time.
    reloading: Mutex<()>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("dir", &self.dir)
            .field("generation", &self.snapshots.borrow().generation())
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// A control plane for `dir`, serving an empty snapshot (generation 0) until the
    /// first [`reload`](Self::reload).
    pub fn new(dir: impl Into<PathBuf>, compiler: impl ConfigCompiler) -> Self {
        let dir = dir.into();
        let status = ConfigStatus {
            config_dir: dir.display().to_string(),
            ..ConfigStatus::default()
        };
        ControlPlane {
            dir,
            compiler: Box::new(compiler),
            snapshots: watch::Sender::new(Arc::new(PushSnapshot::default())),
            status: watch::Sender::new(Arc::new(status)),
            sync: SyncTable::new(),
            reloading: Mutex::new(()),
        }
    }

    /// The configuration directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The snapshot being served.
    pub fn snapshot(&self) -> Arc<PushSnapshot> {
        self.snapshots.borrow().clone()
    }

    /// Follows the snapshots; this is what the push server serves.
    pub fn subscribe(&self) -> watch::Receiver<Arc<PushSnapshot>> {
        self.snapshots.subscribe()
    }

    /// The status of the latest reload.
    pub fn status(&self) -> Arc<ConfigStatus> {
        self.status.borrow().clone()
    }

    /// Follows the status of reloads.
    pub fn subscribe_status(&self) -> watch::Receiver<Arc<ConfigStatus>> {
        self.status.subscribe()
    }

    /// The per-proxy sync state (written by the push server).
    pub fn sync(&self) -> &SyncTable {
        &self.sync
    }

    /// Reads and compiles the configuration directory. When the compiler gives configs,
    /// they are published as a new snapshot, even with errors (the real compiler
    /// leaves the refused resources out, serving their last good versions); when it
    /// gives none, the snapshot being served stays. Every error is logged with its file
    /// and line, and the status is updated (`ok` is false while there are errors). Blocking (file I/O and compiling): call it from a blocking thread.
    pub fn reload(&self) -> Arc<ConfigStatus> {
        self.reload_seen(tokio::time::Instant::now())
    }

    /// [`reload`](Self::reload) for a change first seen at `seen` (the first file event
    /// of the debounced burst): the proxies the new snapshot changes are followed from
    /// then until each acknowledges it (`skiff_config_propagation_seconds`,
    /// `pilot_proxy_convergence_time`).
    pub fn reload_seen(&self, seen: tokio::time::Instant) -> Arc<ConfigStatus> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let span = tracing::info_span!("reload", dir = %self.dir.display());
        let _enter = span.enter();
        let compiled = self.compiler.compile(&self.dir);
        let previous = self.status();
        let mut status = ConfigStatus {
            config_dir: self.dir.display().to_string(),
            reloads: previous.reloads + 1,
            ok: (compiled.configs.is_some() || compiled.unchanged)
                && !compiled
                    .findings
                    .iter()
                    .any(|f| f.severity == Severity::Error),
            serving_generation: previous.serving_generation,
            proxies: previous.proxies,
            ..ConfigStatus::default()
        };
        for finding in compiled.findings {
            match finding.severity {
                Severity::Error => {
                    tracing::error!("{finding}");
                    status.errors.push(finding);
                }
                Severity::Warning => {
                    tracing::warn!("{finding}");
                    status.warnings.push(finding);
                }
                Severity::Info => {
                    tracing::debug!("{finding}");
                    status.infos.push(finding);
                }
            }
        }
        match compiled.configs {
            None if compiled.unchanged => {
                tracing::info!(
                    generation = status.serving_generation,
                    errors = status.errors.len(),
                    warnings = status.warnings.len(),
                    "the configuration is unchanged: nothing to push"
                );
            }
            Some(configs) => {
                let generation = previous.serving_generation + 1;
                let encoding = Instant::now();
                let snapshot = self.snapshot().next(generation, configs);
                tracing::debug!(
                    pieces = snapshot.pieces(),
                    views = snapshot.shared_parts(),
                    encode_ms = encoding.elapsed().as_millis() as u64,
                    "encoded the snapshot"
                );
                status.serving_generation = generation;
                status.proxies = snapshot.len();
                self.sync.triggered(if compiled.endpoints_only {
                    skiff_xds::Trigger::Endpoint
                } else {
                    skiff_xds::Trigger::Config
                });
                let affected = self.sync.publish(&self.snapshot(), &snapshot, seen);
                self.snapshots.send_replace(Arc::new(snapshot));
                tracing::info!(
                    generation,
                    proxies = status.proxies,
                    changed = affected,
                    errors = status.errors.len(),
                    warnings = status.warnings.len(),
                    "published a new snapshot"
                );
                if !status.errors.is_empty() {
                    tracing::error!(
                        errors = status.errors.len(),
                        generation,
                        "the configuration has errors: the resources they are in are left out (their last good versions keep serving); every other change is published"
                    );
                }
            }
            None => {
                if status.errors.is_empty() {
                    // A compiler that refuses without saying why would leave users
                    // guessing: say it here.
                    status.errors.push(Finding::new(
                        Severity::Error,
                        "the configuration could not be compiled (no reason given)",
                    ));
                }
                tracing::error!(
                    errors = status.errors.len(),
                    serving_generation = status.serving_generation,
                    "the configuration has errors; proxies keep the last good snapshot"
                );
            }
        }
        status.reload_duration_ms =
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        status.reloaded_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or_default();
        let status = Arc::new(status);
        self.status.send_replace(status.clone());
        status
    }
}
