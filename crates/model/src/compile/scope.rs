//! Which services a sidecar sees: all those exported to its namespace, or, under a
//! `Sidecar` resource, those its egress hosts name (on the listener's port, if set).

use std::collections::BTreeMap;

use crate::host;
use crate::registry::Registry;
use crate::rules::SidecarInfo;

/// Ports of a visible service the proxy may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ports {
    /// Every port of the service.
    All,
    /// Only these.
    Only(Vec<u16>),
}

impl Ports {
    pub(super) fn includes(&self, port: u16) -> bool {
        match self {
            Ports::All => true,
            Ports::Only(list) => list.contains(&port),
        }
    }

    fn widen(&mut self, port: Option<u16>) {
        match (self, port) {
            (this, None) => *this = Ports::All,
            (Ports::Only(list), Some(p)) if !list.contains(&p) => list.push(p),
            _ => {}
        }
    }
}

/// The services (indices, in registry order) a proxy of `namespace` sees.
pub(super) fn visible_services(
    registry: &Registry,
    namespace: &str,
    sidecar: Option<&SidecarInfo>,
) -> Vec<(usize, Ports)> {
    let services = registry.services();
    let exported = |id: &usize| services[*id].visibility.includes(namespace);
    let Some(sidecar) = sidecar.filter(|s| !s.egress.is_empty()) else {
        return (0..services.len())
            .filter(exported)
            .map(|id| (id, Ports::All))
            .collect();
    };
    let mut allowed: BTreeMap<usize, Ports> = BTreeMap::new();
    for listener in &sidecar.egress {
        for entry in &listener.hosts {
            if entry.namespace.as_deref() == Some("~") {
                continue;
            }
            let candidates: Vec<usize> = match (&entry.namespace, host::is_wildcard(&entry.host)) {
                (_, false) => registry.services_by_host(&entry.host).to_vec(),
                (Some(ns), true) => registry.services_in_namespace(ns).to_vec(),
                (None, true) => (0..services.len()).collect(),
            };
            for id in candidates.into_iter().filter(exported) {
                let s = &services[id];
                if !entry.admits(&s.namespace, &s.hostname) {
                    continue;
                }
                allowed
                    .entry(id)
                    .and_modify(|p| p.widen(listener.port))
                    .or_insert_with(|| match listener.port {
                        Some(p) => Ports::Only(vec![p]),
                        None => Ports::All,
                    });
            }
        }
    }
    allowed.into_iter().collect()
}
