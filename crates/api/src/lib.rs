//! The Istio API as users write it.
//!
//! This crate holds skiff's typed view of the configuration kinds it reads
//! (networking.istio.io, security.istio.io, telemetry.istio.io, and the Kubernetes
//! Namespace, Service, Pod and Deployment), the loader that reads them from YAML files
//! with file, line and column for every problem, and the validation that applies
//! Istio's own rules.
//!
//! Field names follow Istio's (in snake_case); `match` is spelled `r#match`.
//!
//! ```
//! let loaded = skiff_api::load_str("vs.yaml", "
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata: {name: backend, namespace: prod}
//! spec:
//!   hosts: [backend]
//!   http:
//!   - route:
//!     - destination: {host: backend}
//! ");
//! assert!(!loaded.diagnostics.has_errors());
//! let vs = loaded.resources.virtual_services().next().unwrap();
//! assert_eq!(vs.hosts, ["backend"]);
//! ```

#![warn(missing_docs)]

pub mod cel;
mod diagnostic;
mod error;
pub mod kube;
mod load;
pub mod mesh_config;
pub mod meta;
mod mistakes;
pub mod networking;
pub mod resource;
pub mod security;
pub mod store;
pub mod telemetry;
pub mod types;
pub mod unenforced;
pub mod validate;
mod yaml;

pub use diagnostic::{AnalysisCode, Diagnostic, Diagnostics, Severity};
pub use error::Error;
pub use load::{IGNORED_KINDS, IgnoredKind, LoadCache, Loaded, load, load_cached, load_str};
pub use meta::ObjectMeta;
pub use resource::{Entry, Kind, Origin, Position, Resource, ResourceSet, Spec};
pub use store::{ResourceEvent, ResourceKey, ResourceStore};
pub use types::{Duration, HeaderMatch, Labels, Percent, PortSelector, StringMatch};
