//! Reloading when the configuration directory changes.
//!
//! File events are debounced as istiod debounces its pushes (`PILOT_DEBOUNCE_AFTER`,
//! `PILOT_DEBOUNCE_MAX`): a reload starts once the directory has been quiet for
//! [`Debounce::after`] (100 ms by default), or [`Debounce::max`] (10 s) after the first
//! event of a burst if it never goes quiet, so an editor's save or a `cp -r` of many
//! files costs one reload and a file rewritten without pause still gets served. Events that cannot change the configuration (files opened
//! or read, metadata changes, files that are not YAML such as editor swap files) are
//! ignored; in particular the control plane's own reads never trigger a reload.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::{ControlError, ControlPlane};

/// When a burst of file events becomes a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounce {
    /// Quiet time after the last event (istiod's `PILOT_DEBOUNCE_AFTER`, 100 ms).
    pub after: Duration,
    /// The longest a burst may delay its reload, counted from its first event
    /// (istiod's `PILOT_DEBOUNCE_MAX`, 10 s).
    pub max: Duration,
}

impl Debounce {
    /// Istio's defaults: 100 ms quiet, 10 s at most.
    pub const DEFAULT: Debounce = Debounce {
        after: Duration::from_millis(100),
        max: Duration::from_secs(10),
    };

    /// A quiet time of `after` with the default maximum.
    pub fn after(after: Duration) -> Self {
        Debounce {
            after,
            ..Debounce::DEFAULT
        }
    }
}

impl Default for Debounce {
    fn default() -> Self {
        Debounce::DEFAULT
    }
}

/// Waits for the next burst of events and returns when its first event was seen, once
/// the burst is over: quiet for `debounce.after`, or `debounce.max` since its first
/// event. `None` when the sender is gone.
async fn next_burst(
    rx: &mut mpsc::UnboundedReceiver<tokio::time::Instant>,
    debounce: Debounce,
) -> Option<tokio::time::Instant> {
    let first = rx.recv().await?;
    let deadline = first + debounce.max;
    loop {
        let quiet = tokio::time::Instant::now() + debounce.after;
        match tokio::time::timeout_at(quiet.min(deadline), rx.recv()).await {
            Ok(Some(_later)) if tokio::time::Instant::now() < deadline => continue,
            Ok(Some(_later)) => return Some(first),
            // The sender is gone: the last burst is still worth a reload.
            Ok(None) => return Some(first),
            Err(_quiet_or_max) => return Some(first),
        }
    }
}

/// Starts watching the plane's directory. The returned future reloads the plane on
/// every (debounced) change, for as long as it is polled. The watch is in place when
/// this returns, so a change made afterwards is never missed; it does not reload at
/// start (call [`ControlPlane::reload`] for that). Fails if the directory cannot be
/// watched.
pub fn watch(
    plane: Arc<ControlPlane>,
    debounce: Debounce,
) -> Result<impl Future<Output = ()> + Send + 'static, ControlError> {
    let dir = plane.dir().to_path_buf();
    if !dir.is_dir() {
        return Err(ControlError::NotADirectory(dir));
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if !relevant(&event) => {}
            Ok(event) => {
                tracing::trace!(?event, "config change");
                let _ = tx.send(tokio::time::Instant::now());
            }
            Err(error) => {
                tracing::warn!(%error, "file watcher error; reloading to be safe");
                let _ = tx.send(tokio::time::Instant::now());
            }
        })
        .map_err(|source| ControlError::Watch {
            dir: dir.clone(),
            source,
        })?;
    watcher
        .watch(&dir, RecursiveMode::Recursive)
        .map_err(|source| ControlError::Watch {
            dir: dir.clone(),
            source,
        })?;
    tracing::info!(dir = %dir.display(), ?debounce, "watching the config directory");

    Ok(async move {
        // The watcher lives as long as the loop.
        let _watcher = watcher;
        // Each event carries when the watcher saw it: propagation is measured from the
        // first event of a burst, debounce included, as Istio measures its pushes from
        // the first event it debounced.
        while let Some(seen) = next_burst(&mut rx, debounce).await {
            let plane = plane.clone();
            if let Err(error) = tokio::task::spawn_blocking(move || plane.reload_seen(seen)).await {
                tracing::error!(%error, "reload failed; still serving the last snapshot");
            }
        }
    })
}

/// Whether a file event may change the configuration.
fn relevant(event: &notify::Event) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => return false,
        _ => {}
    }
    // A path without a YAML extension may be a directory (created, removed, renamed):
    // reload. Only files with another extension are skipped.
    event.paths.is_empty() || event.paths.iter().any(|p| may_hold_config(p))
}

fn may_hold_config(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') || n.ends_with('~'));
    if hidden {
        return false;
    }
    match path.extension().and_then(|e| e.to_str()) {
        None => true,
        Some(ext) => matches!(ext, "yaml" | "yml"),
    }
}

#[cfg(test)]
mod tests;
