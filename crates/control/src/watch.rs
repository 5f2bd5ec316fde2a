//! Reloading when the configuration directory changes.
//!
//! File events are debounced: a reload starts once the directory has been quiet for
//! the debounce interval (100 ms by default), so an editor's save or a `cp -r` of many
//! files costs one reload. Events that cannot change the configuration (files opened
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

/// The default quiet time before a reload.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

/// Starts watching the plane's directory. The returned future reloads the plane on
/// every (debounced) change, for as long as it is polled. The watch is in place when
/// this returns, so a change made afterwards is never missed; it does not reload at
/// start (call [`ControlPlane::reload`] for that). Fails if the directory cannot be
/// watched.
pub fn watch(
    plane: Arc<ControlPlane>,
    debounce: Duration,
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
        while let Some(seen) = rx.recv().await {
            // Wait for quiet.
            loop {
                match tokio::time::timeout(debounce, rx.recv()).await {
                    Ok(Some(_later)) => continue,
                    Ok(None) => return,
                    Err(_quiet) => break,
                }
            }
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
