//! What the control plane reports about its configuration (`/debug/configz`).

use serde::{Deserialize, Serialize};

use crate::Finding;

/// The outcome of the latest reload, and what is being served.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigStatus {
    /// The directory the configuration is read from.
    pub config_dir: String,
    /// Reloads attempted so far (0 before the first).
    pub reloads: u64,
    /// Whether the latest reload was free of errors. When false, `errors` says what
    /// is wrong, with file and line: the resources with errors are left out (their
    /// last good versions keep serving, named in `warnings`) and everything else is
    /// served by the snapshot of generation `serving_generation`.
    pub ok: bool,
    /// When the latest reload finished, in milliseconds since the Unix epoch.
    pub reloaded_at_ms: u64,
    /// How long the latest reload took, in milliseconds.
    pub reload_duration_ms: u64,
    /// Generation of the snapshot being served (0: none yet).
    pub serving_generation: u64,
    /// Number of proxies in the snapshot being served.
    pub proxies: usize,
    /// Errors of the latest reload.
    pub errors: Vec<Finding>,
    /// Warnings of the latest reload.
    pub warnings: Vec<Finding>,
    /// Informational findings of the latest reload.
    pub infos: Vec<Finding>,
}
