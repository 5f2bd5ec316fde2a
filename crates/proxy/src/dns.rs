//! Endpoints named by DNS (ServiceEntry `resolution: DNS` and `DNS_ROUND_ROBIN`),
//! resolved off the request path, as Envoy's `STRICT_DNS` and `LOGICAL_DNS` clusters.
//!
//! A config whose clusters have such endpoints is applied with the addresses last
//! found for each name (none the first time: the cluster answers `503 UH` until the
//! name resolves). A task of the proxy resolves every name the config in service
//! holds, at once when a new one appears, then every [`REFRESH`] (Istio's default
//! `dnsRefreshRate`; the system resolver does not tell the record's TTL), and every
//! [`RETRY`] while a name has no address; when what a name resolves to changes, the
//! same config is applied again with the new addresses. A lookup that fails keeps the
//! addresses found before, as Envoy keeps a DNS cluster's hosts when resolution fails.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use skiff_model::config::{DnsLookup, ProxyConfig};
use tokio::sync::Notify;

/// How often names are resolved again (Istio's MeshConfig `dnsRefreshRate` default).
pub(crate) const REFRESH: Duration = Duration::from_secs(60);
/// How soon a name without any address is tried again.
pub(crate) const RETRY: Duration = Duration::from_secs(1);
/// How long one lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The names of the config in service and what they resolved to.
#[derive(Debug, Default)]
pub(crate) struct Names {
    state: Mutex<NamesState>,
    /// Woken when the config names a name never looked up.
    pub(crate) wake: Notify,
}

#[derive(Debug, Default)]
struct NamesState {
    /// The names the config in service holds.
    wanted: BTreeSet<String>,
    /// The addresses each name last resolved to, in the resolver's order.
    found: BTreeMap<String, Vec<IpAddr>>,
    /// Whether the resolving task runs.
    started: bool,
}

impl Names {
    /// `config` with every DNS endpoint replaced by the endpoints its name last
    /// resolved to (every address, or the first for `DNS_ROUND_ROBIN`); records the
    /// names it holds. `None` when it names none (the config is used as it is).
    /// Returns also whether a name is new (then the resolver should be woken).
    pub(crate) fn expand(&self, config: &ProxyConfig) -> Option<(ProxyConfig, bool)> {
        let names: BTreeSet<&str> = config
            .clusters
            .iter()
            .flat_map(|c| c.endpoints.iter())
            .filter_map(|e| e.dns.as_ref().map(|d| d.name.as_str()))
            .collect();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if names.is_empty() {
            state.wanted.clear();
            return None;
        }
        let new = names.iter().any(|n| !state.found.contains_key(*n));
        state.wanted = names.iter().map(|n| n.to_string()).collect();
        let mut out = config.clone();
        for cluster in &mut out.clusters {
            if cluster.endpoints.iter().all(|e| e.dns.is_none()) {
                continue;
            }
            let mut endpoints = Vec::with_capacity(cluster.endpoints.len());
            for e in cluster.endpoints.drain(..) {
                let Some(DnsLookup { name, all }) = &e.dns else {
                    endpoints.push(e);
                    continue;
                };
                let found = state.found.get(name).map_or(&[][..], Vec::as_slice);
                let take = if *all {
                    found.len()
                } else {
                    found.len().min(1)
                };
                for ip in &found[..take] {
                    let mut one = e.clone();
                    one.address = SocketAddr::new(*ip, e.address.port());
                    endpoints.push(one);
                }
            }
            endpoints.sort_by(|a, b| (a.address, &a.workload).cmp(&(b.address, &b.workload)));
            endpoints.dedup_by(|a, b| a.address == b.address && a.workload == b.workload);
            cluster.endpoints = endpoints;
        }
        Some((out, new))
    }

    /// Marks the resolving task started; `false` if it already was.
    pub(crate) fn start(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        !std::mem::replace(&mut state.started, true)
    }

    fn wanted(&self) -> Vec<String> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.wanted.iter().cloned().collect()
    }

    /// Records what `name` resolved to; `true` when that changed anything.
    fn record(&self, name: &str, ips: Vec<IpAddr>) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.found.get(name) == Some(&ips) {
            return false;
        }
        state.found.insert(name.to_owned(), ips);
        true
    }

    /// Forgets names the config no longer holds; whether any wanted name has no
    /// address.
    fn tidy(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let NamesState { wanted, found, .. } = &mut *state;
        found.retain(|n, _| wanted.contains(n));
        wanted
            .iter()
            .any(|n| found.get(n).is_none_or(|ips| ips.is_empty()))
    }

    /// One round: resolves every wanted name; `true` when an answer changed.
    pub(crate) async fn resolve_all(&self) -> bool {
        let mut changed = false;
        for name in self.wanted() {
            match lookup(&name).await {
                Ok(ips) if !ips.is_empty() => changed |= self.record(&name, ips),
                Ok(_) => {
                    tracing::warn!(name, "DNS name resolved to no address");
                    changed |= self.record_missing(&name);
                }
                Err(e) => {
                    tracing::warn!(name, error = %e, "DNS lookup failed; keeping the addresses found before");
                    changed |= self.record_missing(&name);
                }
            }
        }
        changed
    }

    /// A name that gave no address: known as tried (so it is not "new" again), its
    /// earlier addresses kept.
    fn record_missing(&self, name: &str) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.found.contains_key(name) {
            return false;
        }
        state.found.insert(name.to_owned(), Vec::new());
        false
    }

    /// How long to wait before the next round.
    pub(crate) fn next_round(&self) -> Duration {
        if self.tidy() { RETRY } else { REFRESH }
    }
}

/// The addresses `name` resolves to, in the resolver's order, each once.
async fn lookup(name: &str) -> std::io::Result<Vec<IpAddr>> {
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, 0)))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "DNS lookup timed out"))??;
    let mut ips: Vec<IpAddr> = Vec::new();
    for addr in found {
        if !ips.contains(&addr.ip()) {
            ips.push(addr.ip());
        }
    }
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_model::config::{Cluster, Endpoint};

    fn endpoint(name: &str, all: bool, port: u16) -> Endpoint {
        Endpoint {
            address: SocketAddr::from(([0, 0, 0, 0], port)),
            proxy_port: None,
            workload: format!("{name}.default"),
            weight: 1,
            spiffe_id: String::new(),
            sidecar: false,
            mtls: false,
            locality: String::new(),
            priority: 0,
            dns: Some(DnsLookup {
                name: name.to_owned(),
                all,
            }),
        }
    }

    fn config(endpoints: Vec<Endpoint>) -> ProxyConfig {
        let mut config = ProxyConfig::default();
        config.clusters.push(Cluster {
            name: "outbound|80||ext".into(),
            service: "ext".into(),
            port: 80,
            subset: None,
            protocol: skiff_model::config::Protocol::Http,
            lb: Default::default(),
            endpoints,
            connect_timeout: Duration::from_secs(1),
            tls: Default::default(),
            traffic: Default::default(),
        });
        config
    }

    #[test]
    fn strict_takes_every_address_and_logical_the_first() {
        let names = Names::default();
        let c = config(vec![endpoint("a", true, 80), endpoint("b", false, 81)]);
        let (first, new) = names.expand(&c).expect("names");
        assert!(new);
        assert!(
            first.clusters[0].endpoints.is_empty(),
            "nothing resolved yet"
        );
        let ips: Vec<IpAddr> = vec![[10, 0, 0, 2].into(), [10, 0, 0, 1].into()];
        assert!(names.record("a", ips.clone()));
        assert!(names.record("b", ips.clone()));
        assert!(!names.record("b", ips), "the same answer changes nothing");
        let (out, new) = names.expand(&c).expect("names");
        assert!(!new);
        let got: Vec<String> = out.clusters[0]
            .endpoints
            .iter()
            .map(|e| e.address.to_string())
            .collect();
        assert_eq!(got, ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.2:81"]);
        assert_eq!(names.next_round(), REFRESH);
    }

    #[test]
    fn a_config_without_names_is_left_alone_and_old_names_are_forgotten() {
        let names = Names::default();
        names.expand(&config(vec![endpoint("a", true, 80)]));
        names.record_missing("a");
        assert_eq!(
            names.next_round(),
            RETRY,
            "a name without address is retried soon"
        );
        assert!(names.expand(&ProxyConfig::default()).is_none());
        assert_eq!(names.next_round(), REFRESH);
        assert!(names.wanted().is_empty());
    }

    #[tokio::test]
    async fn localhost_resolves_to_loopback() {
        let names = Names::default();
        names.expand(&config(vec![endpoint("localhost", true, 80)]));
        assert!(names.resolve_all().await);
        let (out, _) = names
            .expand(&config(vec![endpoint("localhost", true, 80)]))
            .expect("names");
        assert!(
            !out.clusters[0].endpoints.is_empty()
                && out.clusters[0]
                    .endpoints
                    .iter()
                    .all(|e| e.address.ip().is_loopback()),
            "{:?}",
            out.clusters[0].endpoints
        );
    }
}
