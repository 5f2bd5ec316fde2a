//! Config from a JSON file: the file holds one [`ProxyConfig`] (as the control plane
//! would push it, and as `/config_dump` shows it under `config`). It goes through
//! [`Proxy::apply`], the same update path as the xDS client; the version is a hash of
//! the file's bytes. [`watch`] re-reads the file when it changes.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use skiff_model::config::ProxyConfig;

use crate::{Error, Proxy};

/// Reads and parses a config file, with the version its contents give.
pub fn load(path: &Path) -> Result<(String, ProxyConfig), Error> {
    let err = |reason: String| Error::ConfigFile {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let config: ProxyConfig = serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
    Ok((version_of(&bytes), config))
}

/// `file-<16 hex digits>`: FNV-1a of the bytes, so the same file gives the same version.
pub fn version_of(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("file-{h:016x}")
}

/// Loads the file and applies it.
pub fn apply(proxy: &Proxy, path: &Path) -> Result<String, Error> {
    let (version, config) = load(path)?;
    proxy.apply(version.clone(), config)?;
    Ok(version)
}

/// Polls the file every `interval` and applies it again when its modification time or
/// size changes. A bad file is logged and the config in service stays. Never returns.
pub async fn watch(proxy: Proxy, path: PathBuf, interval: Duration) {
    let stamp = |p: &Path| -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    let mut last = stamp(&path);
    let mut applied = proxy.snapshot().map(|s| s.version().to_owned());
    loop {
        tokio::time::sleep(interval).await;
        let now = stamp(&path);
        if now == last {
            continue;
        }
        last = now;
        match load(&path) {
            Ok((version, _)) if applied.as_deref() == Some(version.as_str()) => {}
            Ok((version, config)) => {
                if proxy.apply(version.clone(), config).is_ok() {
                    applied = Some(version);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "config file not usable; keeping the config in service")
            }
        }
    }
}
