//! The real compiler: `skiff-api` loads and validates the directory, `skiff-model`
//! builds the mesh and compiles every proxy.

use std::path::Path;

use skiff_api::Error as LoadError;
use skiff_model::{Mesh, MeshOptions};

use crate::{Compiled, ConfigCompiler, Finding, Severity};

/// Compiles a directory of Istio and Kubernetes YAML into per-proxy configs.
///
/// Any error from loading or validating (a malformed file, an unknown field, an
/// invalid value) blocks publishing: proxies keep the last good configuration until
/// the files are fixed. Findings of the model (a route to an unknown host, a subset
/// without endpoints, …) are reported but do not block, as Istio accepts such
/// configuration too.
#[derive(Debug, Clone, Default)]
pub struct MeshCompiler {
    /// Mesh-wide settings (domain suffix, trust domain, inbound port).
    pub options: MeshOptions,
}

impl ConfigCompiler for MeshCompiler {
    fn compile(&self, dir: &Path) -> Compiled {
        let loaded = match skiff_api::load(&[dir]) {
            Ok(loaded) => loaded,
            Err(LoadError::NoFiles { path }) => {
                let warning = Finding::new(
                    Severity::Warning,
                    format!(
                        "{} holds no .yaml or .yml files: the mesh has no proxies",
                        path.display()
                    ),
                );
                return Compiled {
                    configs: Some(Vec::new()),
                    findings: vec![warning],
                };
            }
            Err(error) => {
                return Compiled {
                    configs: None,
                    findings: vec![Finding::new(Severity::Error, error.to_string())],
                };
            }
        };
        let mut findings: Vec<Finding> = loaded.diagnostics.iter().map(from_api).collect();
        if loaded.diagnostics.has_errors() {
            sort(&mut findings);
            return Compiled {
                configs: None,
                findings,
            };
        }
        let mesh = Mesh::build(&loaded.resources, self.options.clone());
        findings.extend(mesh.diagnostics().iter().map(from_model));
        let configs = mesh.proxies().filter_map(|id| mesh.compile(id)).collect();
        sort(&mut findings);
        Compiled {
            configs: Some(configs),
            findings,
        }
    }
}

/// Errors first; within a severity, the order the producers gave (file order).
fn sort(findings: &mut [Finding]) {
    findings.sort_by_key(|f| f.severity);
}

fn from_api(d: &skiff_api::Diagnostic) -> Finding {
    let severity = match d.severity {
        skiff_api::Severity::Error => Severity::Error,
        skiff_api::Severity::Warning => Severity::Warning,
    };
    let message = join(d.resource.as_deref(), d.path.as_deref(), &d.message);
    let mut finding = Finding::new(severity, message);
    finding.file = Some(d.file.display().to_string());
    if let Some(p) = d.position {
        finding.line = Some(p.line);
        finding.column = Some(p.column);
    }
    finding
}

fn from_model(d: &skiff_model::Diagnostic) -> Finding {
    let severity = match d.severity {
        skiff_model::Severity::Error => Severity::Error,
        skiff_model::Severity::Warning => Severity::Warning,
        skiff_model::Severity::Info => Severity::Info,
    };
    let resource = d.resource.as_ref().map(|r| r.to_string());
    let message = join(resource.as_deref(), d.field.as_deref(), &d.message);
    let finding = Finding::new(severity, message);
    match d.resource.as_ref().and_then(|r| r.origin.as_ref()) {
        Some(o) => finding.at(o.file.clone(), o.line, o.column),
        None => finding,
    }
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
