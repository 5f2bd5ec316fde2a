//! From a configuration directory to per-proxy configs.

use std::path::Path;

use skiff_model::config::ProxyConfig;

use crate::Finding;

mod mesh;

pub use mesh::MeshCompiler;

/// The result of compiling a configuration directory.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    /// One config per proxy; `None` when the configuration has errors that make it
    /// unusable (then nothing is published and proxies keep what they run).
    pub configs: Option<Vec<ProxyConfig>>,
    /// Everything worth reporting, errors first.
    pub findings: Vec<Finding>,
}

/// Turns a configuration directory into per-proxy configs. Pure apart from reading
/// the directory; called off the async runtime (it may take a while on a big mesh).
pub trait ConfigCompiler: Send + Sync + 'static {
    /// Reads and compiles the directory.
    fn compile(&self, dir: &Path) -> Compiled;
}
