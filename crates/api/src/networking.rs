//! `networking.istio.io` kinds (served as `v1`, `v1beta1` and `v1alpha3`; the schemas
//! are the same in all three).

mod destination_rule;
mod gateway;
mod service_entry;
mod sidecar;
mod virtual_service;
mod workload;

pub use destination_rule::*;
pub use gateway::*;
pub use service_entry::*;
pub use sidecar::*;
pub use virtual_service::*;
pub use workload::*;
