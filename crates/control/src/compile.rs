//! From a configuration directory to per-proxy configs.

use std::path::Path;

use skiff_model::config::ProxyParts;

use crate::Finding;

mod keep;
mod mesh;

pub use keep::{KEPT_NOTE, LastGood, Merged};
pub use mesh::{CompileState, MeshCompiler};

/// The result of compiling a configuration directory.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    /// One config per proxy, in its own and shared parts (a `ProxyConfig` converts
    /// with `.into()`); `None` when the configuration cannot be used at all (then
    /// nothing is published and proxies keep what they run). A configuration with
    /// errors may still give configs (the real compiler leaves the refused resources
    /// out): they are published, and the errors reported.
    pub configs: Option<Vec<ProxyParts>>,
    /// True when the configuration is the one compiled last (`configs` is then
    /// `None`): the snapshot being served stays, and nothing is pushed.
    pub unchanged: bool,
    /// True when only endpoints changed since the last compile (the push is
    /// counted as an `endpoint` trigger, else as `config`).
    pub endpoints_only: bool,
    /// Everything worth reporting, errors first.
    pub findings: Vec<Finding>,
}

/// Turns a configuration directory into per-proxy configs. Pure apart from reading
/// the directory; called off the async runtime (it may take a while on a big mesh).
pub trait ConfigCompiler: Send + Sync + 'static {
    /// Reads and compiles the directory.
    fn compile(&self, dir: &Path) -> Compiled;
}
