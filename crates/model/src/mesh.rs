//! The mesh: registry, translated rules and findings for one configuration snapshot,
//! and the list of proxies to compile for.

use std::collections::BTreeMap;

use skiff_api::ResourceSet;

use crate::config::{ProxyConfig, ProxyKind, ProxyParts};
use crate::diagnostic::{Diagnostic, Findings};
use crate::registry::Registry;
use crate::rules::Rules;
use crate::{Error, MeshOptions};

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
        let span = tracing::debug_span!("mesh_build", resources = resources.len());
        let _entered = span.enter();
        let mut findings = Findings::default();
        let registry = Registry::build(resources, &options, &mut findings);
        let rules = Rules::build(resources, &registry, &options, &mut findings);
        let mut proxies = BTreeMap::new();
        for (i, w) in registry.workloads().iter().enumerate() {
            let is_gateway = rules.gateways_of(i).next().is_some();
            // Of two workloads with one id (reported), the first declared is the proxy.
            let first = registry.workload_by_id(registry.workload_id(i)) == Some(i);
            if first && (w.sidecar || is_gateway) {
                proxies.insert(w.id(), i);
            }
        }
        let diagnostics = findings.finish();
        tracing::debug!(
            services = registry.services().len(),
            workloads = registry.workloads().len(),
            proxies = proxies.len(),
            diagnostics = diagnostics.len(),
            "mesh built"
        );
        Mesh {
            options,
            registry,
            rules,
            proxies,
            diagnostics,
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
        let _span = tracing::debug_span!("compile", proxy = proxy_id).entered();
        Some(crate::compile::proxy_parts(self, w, None).join())
    }

    /// The configuration of every proxy, in [`Mesh::proxies`] order, in its own and
    /// shared parts: [`ProxyParts::join`] gives what [`Mesh::compile`] gives, but
    /// sidecars that see the mesh alike (same namespace and locality, same values of the labels
    /// client-side selectors read) share one compile and one copy of their shared
    /// part, so the cost grows with the distinct views rather than with the proxies.
    pub fn compile_all(&self) -> Vec<ProxyParts> {
        self.compile_all_in(&mut crate::compile::ViewCache::default())
    }

    /// [`Mesh::compile_all`] with the views in `views`, which may hold routes of an
    /// earlier mesh (see [`crate::Incremental`]).
    pub(crate) fn compile_all_in(&self, views: &mut crate::compile::ViewCache) -> Vec<ProxyParts> {
        let _span = tracing::debug_span!("compile_all", proxies = self.proxies.len()).entered();
        let configs: Vec<ProxyParts> = self
            .proxies
            .values()
            .map(|&w| crate::compile::proxy_parts(self, w, Some(&mut *views)))
            .collect();
        tracing::debug!(
            views = views.len(),
            routes_compiled = views.routes_compiled(),
            "compiled every proxy"
        );
        configs
    }

    /// Like [`Mesh::compile`], with an error that says which ids exist when the proxy
    /// is unknown (for callers that report it to a user or a connecting proxy).
    pub fn try_compile(&self, proxy_id: &str) -> Result<ProxyConfig, Error> {
        self.compile(proxy_id).ok_or_else(|| {
            let (name, namespace) = proxy_id.rsplit_once('.').unwrap_or((proxy_id, ""));
            let suggestions = self
                .proxies()
                .filter(|id| {
                    let (n, ns) = id.rsplit_once('.').unwrap_or((id, ""));
                    n == name || (ns == namespace && (n.starts_with(name) || name.starts_with(n)))
                })
                .take(3)
                .map(String::from)
                .collect();
            Error::UnknownProxy {
                id: proxy_id.to_string(),
                suggestions,
            }
        })
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
