//! What the push server serves: one compiled configuration per proxy.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use skiff_model::config::ProxyConfig;

use crate::resource::{encode_proxy_config, version_of};

/// The compiled configuration of every proxy at one moment, immutable once built.
///
/// The control plane publishes a new snapshot (through a `tokio::sync::watch` channel)
/// whenever its inputs change; the push server compares each proxy's version with what
/// it last sent that proxy and pushes only the ones that changed.
#[derive(Debug, Clone, Default)]
pub struct PushSnapshot {
    generation: u64,
    proxies: BTreeMap<String, ProxyEntry>,
}

/// One proxy's configuration, encoded once for every push.
#[derive(Debug, Clone)]
pub struct ProxyEntry {
    /// The configuration.
    pub config: Arc<ProxyConfig>,
    /// Its encoding on the wire (see [`crate::resource`]).
    pub body: Bytes,
    /// Its version: a hash of `body`.
    pub version: String,
}

impl ProxyEntry {
    /// Encodes a configuration and computes its version.
    pub fn new(config: ProxyConfig) -> Self {
        let body = encode_proxy_config(&config);
        let version = version_of(&body);
        ProxyEntry {
            config: Arc::new(config),
            body,
            version,
        }
    }
}

impl PushSnapshot {
    /// A snapshot of generation `generation` holding these configurations, each keyed
    /// by its `node.id`. When two configurations share an id, the last one wins.
    pub fn new(generation: u64, configs: impl IntoIterator<Item = ProxyConfig>) -> Self {
        let proxies = configs
            .into_iter()
            .map(|config| (config.node.id.clone(), ProxyEntry::new(config)))
            .collect();
        PushSnapshot {
            generation,
            proxies,
        }
    }

    /// Counts snapshots: each one the control plane publishes has a higher generation.
    /// The empty snapshot a server may start with is generation 0.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The entry of one proxy, if the snapshot knows it.
    pub fn get(&self, proxy_id: &str) -> Option<&ProxyEntry> {
        self.proxies.get(proxy_id)
    }

    /// All proxies, sorted by id.
    pub fn proxies(&self) -> impl Iterator<Item = (&str, &ProxyEntry)> {
        self.proxies.iter().map(|(id, entry)| (id.as_str(), entry))
    }

    /// Number of proxies.
    pub fn len(&self) -> usize {
        self.proxies.len()
    }

    /// True when the snapshot holds no proxy.
    pub fn is_empty(&self) -> bool {
        self.proxies.is_empty()
    }
}
