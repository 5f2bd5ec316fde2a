//! The Istio API as users write it.
//!
//! This crate holds skiff's typed view of the configuration kinds it reads
//! (networking.istio.io, security.istio.io, telemetry.istio.io, and the Kubernetes
//! Namespace, Service, Pod and Deployment), the loader that reads them from YAML files
//! with file, line and column for every problem, and the validation that applies
//! Istio's own rules.
//!
//! Field names follow Istio's (in snake_case); `match` is spelled `r#match`.

#![warn(missing_docs)]

pub mod kube;
pub mod meta;
pub mod networking;
pub mod resource;
pub mod security;
pub mod telemetry;
pub mod types;

pub use meta::ObjectMeta;
pub use resource::{Entry, Kind, Origin, Position, Resource, ResourceSet, Spec};
pub use types::{Duration, HeaderMatch, Labels, Percent, PortSelector, StringMatch};
