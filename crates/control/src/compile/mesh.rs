//! The real compiler: `skiff-api` loads and validates the directory, `skiff-model`
//! builds the mesh and compiles every proxy.

use std::path::Path;
use std::sync::Arc;

use skiff_api::{Error as LoadError, ResourceStore};
use skiff_model::{Incremental, MeshOptions};

use super::keep::{KEPT_NOTE, LastGood};
use crate::{Compiled, ConfigCompiler, Finding, Severity};

/// Compiles a directory of Istio and Kubernetes YAML into per-proxy configs.
///
/// A resource with an error from loading or validating (a malformed document, an
/// unknown field, an invalid value) is left out and its last good version keeps
/// serving, as Istio's admission webhook keeps the previous version of an object it
/// refuses; every other change applies (see [`LastGood`]). The errors are reported
/// with the file and line of the offending field. Findings of the model (a route to an
/// unknown host, a subset without endpoints, …) are reported but change nothing, as
/// Istio accepts such configuration too.
#[derive(Debug, Clone, Default)]
pub struct MeshCompiler {
    /// Mesh-wide settings (domain suffix, trust domain, inbound port).
    pub options: MeshOptions,
    /// When set, the built-in ingress gateway workload is added at this address if a
    /// Gateway selects labels no workload has (see [`crate::with_builtin_gateway`]).
    pub builtin_gateway: Option<std::net::IpAddr>,
    /// The files parsed by earlier reloads: a reload parses only the files that
    /// changed (shared by clones of this compiler).
    pub files: Arc<skiff_api::LoadCache>,
    /// The resources in force and the routes of the last compile: a reload that
    /// changes nothing compiles nothing, one that changes only endpoints builds only
    /// clusters again (shared by clones of this compiler).
    pub state: Arc<std::sync::Mutex<CompileState>>,
}

/// What a [`MeshCompiler`] keeps from one reload to the next.
#[derive(Debug, Default)]
pub struct CompileState {
    /// The resources in force, as the directory's events left them.
    pub store: ResourceStore,
    /// The routes of the last compile.
    pub incremental: Incremental,
    /// The model's findings of the last compile.
    findings: Vec<Finding>,
}

impl ConfigCompiler for MeshCompiler {
    fn compile(&self, dir: &Path) -> Compiled {
        let started = std::time::Instant::now();
        let loaded = match skiff_api::load_cached(&[dir], &self.files) {
            Ok(loaded) => loaded,
            Err(LoadError::NoFiles { path }) => {
                let warning = Finding::new(
                    Severity::Warning,
                    format!(
                        "{} holds no .yaml or .yml files: the mesh has no proxies",
                        path.display()
                    ),
                );
                // Nothing is in force any more: the next files are all new.
                *self.state.lock().unwrap_or_else(|e| e.into_inner()) = CompileState::default();
                return Compiled {
                    configs: Some(Vec::new()),
                    unchanged: false,
                    endpoints_only: false,
                    findings: vec![warning],
                };
            }
            Err(error) => {
                return Compiled {
                    configs: None,
                    unchanged: false,
                    endpoints_only: false,
                    findings: vec![Finding::new(Severity::Error, error.to_string())],
                };
            }
        };
        let mut findings: Vec<Finding> = loaded
            .diagnostics
            .iter()
            .map(|d| from_api(dir, d))
            .collect();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *state;
        let merged = LastGood::merge_over(&loaded, state.store.iter());
        for kept in &merged.kept {
            let at = &kept.origin;
            findings.push(
                Finding::new(
                    Severity::Warning,
                    format!("{}: {KEPT_NOTE}", kept.display_name()),
                )
                .at(
                    relative(dir, &at.file),
                    at.position.line,
                    at.position.column,
                ),
            );
        }
        let resources = match self.builtin_gateway {
            Some(address) => crate::with_builtin_gateway(merged.resources, address),
            None => merged.resources,
        };
        let load_took = started.elapsed();
        let changes = state.store.diff(&resources);
        if changes.is_empty() && state.store.generation() > 0 {
            // The directory holds what it held: the model's findings are those of
            // the last compile, and nothing is compiled or pushed.
            tracing::debug!(
                resources = resources.len(),
                load_ms = load_took.as_millis() as u64,
                "the configuration is unchanged"
            );
            findings.extend(state.findings.iter().cloned());
            sort(&mut findings);
            return Compiled {
                configs: None,
                unchanged: true,
                endpoints_only: false,
                findings,
            };
        }
        state.store.apply(changes.iter().cloned());
        let compiled = state
            .incremental
            .compile(&state.store, &changes, self.options.clone());
        state.findings = compiled
            .mesh
            .diagnostics()
            .iter()
            .map(|d| from_model(dir, d))
            .collect();
        findings.extend(state.findings.iter().cloned());
        tracing::debug!(
            resources = resources.len(),
            changes = changes.len(),
            load_ms = load_took.as_millis() as u64,
            compile_ms = (started.elapsed() - load_took).as_millis() as u64,
            endpoints_only = compiled.endpoints_only,
            views = compiled.views,
            routes_compiled = compiled.routes_compiled,
            "compiled the configuration"
        );
        sort(&mut findings);
        Compiled {
            configs: Some(compiled.configs),
            unchanged: false,
            endpoints_only: compiled.endpoints_only,
            findings,
        }
    }
}

/// Errors first; within a severity, the order the producers gave (file order).
fn sort(findings: &mut [Finding]) {
    findings.sort_by_key(|f| f.severity);
}

fn from_api(dir: &Path, d: &skiff_api::Diagnostic) -> Finding {
    let severity = match d.severity {
        skiff_api::Severity::Error => Severity::Error,
        skiff_api::Severity::Warning => Severity::Warning,
    };
    let message = join(d.resource.as_deref(), d.path.as_deref(), &d.message);
    let mut finding = Finding::new(severity, message);
    finding.file = Some(relative(dir, &d.file));
    if let Some(p) = d.position {
        finding.line = Some(p.line);
        finding.column = Some(p.column);
    }
    finding
}

fn from_model(dir: &Path, d: &skiff_model::Diagnostic) -> Finding {
    let severity = match d.severity {
        skiff_model::Severity::Error => Severity::Error,
        skiff_model::Severity::Warning => Severity::Warning,
        skiff_model::Severity::Info => Severity::Info,
    };
    let resource = d.resource.as_ref().map(|r| r.to_string());
    let message = join(resource.as_deref(), d.field.as_deref(), &d.message);
    let finding = Finding::new(severity, message);
    match d.resource.as_ref().and_then(|r| r.origin.as_ref()) {
        Some(o) => finding.at(relative(dir, Path::new(&o.file)), o.line, o.column),
        None => finding,
    }
}

/// A file as found under the config directory (relative to it when it is inside).
fn relative(dir: &Path, file: &Path) -> String {
    file.strip_prefix(dir).unwrap_or(file).display().to_string()
}

/// `resource: field: message`, leaving out what is unknown.
fn join(resource: Option<&str>, field: Option<&str>, message: &str) -> String {
    let mut out = String::new();
    for part in [resource, field].into_iter().flatten() {
        out.push_str(part);
        out.push_str(": ");
    }
    out.push_str(message);
    out
}
