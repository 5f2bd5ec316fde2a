//! The mesh: registry, translated rules and findings for one configuration snapshot,
//! and the list of proxies to compile for.

use std::collections::BTreeMap;

use skiff_api::ResourceSet;

use crate::MeshOptions;
use crate::config::{ProxyConfig, ProxyKind};
use crate::diagnostic::{Diagnostic, Findings};
use crate::registry::Registry;
use crate::rules::Rules;

/// One configuration snapshot of the mesh, ready to compile per-proxy configs from.
///
/// Building it is the expensive step (done once per snapshot); compiling a proxy reads
/// only indexed data.
#[derive(Debug, Clone)]
pub struct Mesh {
    options: MeshOptions,
    registry: Registry,
    rules: Rules,
    proxies: BTreeMap<String, usize>,
    diagnostics: Vec<Diagnostic>,
}

impl Mesh {
    /// Builds the mesh from validated resources. Never fails: what does not add up is a
    /// [`Diagnostic`] (see [`Mesh::diagnostics`]).
    pub fn build(resources: &ResourceSet, options: MeshOptions) -> Mesh {
        let mut findings = Findings::default();
        let registry = Registry::build(resources, &options, &mut findings);
        let rules = Rules::build(resources, &registry, &options, &mut findings);
        let mut proxies = BTreeMap::new();
        for (i, w) in registry.workloads().iter().enumerate() {
            let is_gateway = rules.gateways_of(i).next().is_some();
            if w.selectable() && (w.sidecar || is_gateway) {
                proxies.entry(w.id()).or_insert(i);
            }
        }
        Mesh {
            options,
            registry,
            rules,
            proxies,
            diagnostics: findings.finish(),
        }
    }

    /// The ids (`<name>.<namespace>`) of every proxy: each workload with a sidecar, and
    /// each workload that runs a Gateway. Sorted.
    pub fn proxies(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.proxies.keys().map(String::as_str)
    }

    /// Whether `proxy_id` is a sidecar or a gateway; `None` for an unknown id.
    pub fn proxy_kind(&self, proxy_id: &str) -> Option<ProxyKind> {
        let &w = self.proxies.get(proxy_id)?;
        Some(if self.rules.gateways_of(w).next().is_some() {
            ProxyKind::Gateway
        } else {
            ProxyKind::Sidecar
        })
    }

    /// The configuration of one proxy, or `None` when no such proxy exists.
    /// Deterministic: the same mesh always gives an identical value.
    pub fn compile(&self, proxy_id: &str) -> Option<ProxyConfig> {
        let &w = self.proxies.get(proxy_id)?;
        Some(crate::compile::proxy_config(self, w))
    }

    /// What the model found wrong or worth knowing, sorted by file position.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// The services and workloads.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The translated routing and policy resources.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The options the mesh was built with.
    pub fn options(&self) -> &MeshOptions {
        &self.options
    }
}
