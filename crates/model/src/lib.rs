//! The mesh model of skiff.
//!
//! From a validated set of Istio and Kubernetes resources (see `skiff-api`), this crate
//! builds the registry of the mesh (services, their ports and protocols, the workloads
//! behind them, subsets) and compiles it into one [`config::ProxyConfig`] per proxy.
//! Everything here is pure and deterministic: no I/O, stable ordering. The control
//! plane, `skiff analyze` and `skiff explain` all use this same code.

#![warn(missing_docs)]

pub mod config;
pub mod diagnostic;
pub mod host;
pub mod protocol;
