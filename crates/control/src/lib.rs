//! The skiff control plane: what istiod is to Istio.
//!
//! It reads the mesh configuration from a directory of YAML (watched for changes),
//! compiles one [`ProxyConfig`](skiff_model::config::ProxyConfig) per proxy, and
//! publishes the result as a [`PushSnapshot`](skiff_xds::PushSnapshot) to the push
//! server of `skiff-xds`. A resource with errors is reported (every error with its file
//! and line, in the log and on the debug endpoint) and left out, its last good version
//! serving in its place; every other change is published ([`LastGood`]).
//!
//! - [`ControlPlane`]: the state (current snapshot, config status, per-proxy sync state)
//!   and [`ControlPlane::reload`].
//! - [`ConfigCompiler`]: turns the directory into configs; [`MeshCompiler`] is the real
//!   one (`skiff-api` loading and validation, `skiff-model` compiling).
//! - [`watch`]: reloads when the directory changes, debounced.
//! - [`debug`]: the JSON debug endpoint (`/debug/syncz`, `/debug/config_dump`,
//!   `/debug/configz`, `/ready`).
//! - [`start`]: all of it, listening on real sockets.

#![warn(missing_docs)]

mod builtin;
mod compile;
pub mod debug;
mod error;
mod finding;
mod plane;
mod run;
mod status;
pub mod watch;

pub use builtin::{BUILTIN_GATEWAY_NAME, BUILTIN_GATEWAY_NAMESPACE, with_builtin_gateway};
pub use compile::{
    CompileState, Compiled, ConfigCompiler, KEPT_NOTE, LastGood, Merged, MeshCompiler,
};
pub use error::ControlError;
pub use finding::{Finding, Severity};
pub use plane::ControlPlane;
pub use run::{ControlIdentity, ControlOptions, Running, start};
pub use status::ConfigStatus;
