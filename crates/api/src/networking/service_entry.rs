//! `ServiceEntry`: adds a service to the mesh's registry (external APIs, VMs, or
//! workloads selected by label).

use serde::{Deserialize, Serialize};

use crate::networking::WorkloadEntry;
use crate::types::WorkloadLabelSelector;

/// The spec of a `ServiceEntry`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntry {
    /// Host names of the service (wildcards allowed). Required.
    pub hosts: Vec<String>,
    /// Virtual IPs or CIDRs of the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Ports of the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// Inside or outside the mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// How endpoints are found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// Endpoints, given inline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<WorkloadEntry>,
    /// Endpoints, selected among WorkloadEntries and Pods by label (exclusive with
    /// `endpoints`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadLabelSelector>,
    /// Namespaces this entry is visible to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Accepted identities of the endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
}

/// A port of a ServiceEntry (or a sidecar listener).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// Port number, 1 to 65535.
    pub number: u32,
    /// `HTTP`, `HTTPS`, `HTTP2`, `GRPC`, `MONGO`, `TCP`, `TLS`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Name of the port.
    pub name: String,
    /// Port the endpoints listen on, when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
}

/// `location` of a ServiceEntry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    /// Outside the mesh: no mTLS, no sidecar at the endpoints.
    MeshExternal,
    /// Part of the mesh.
    MeshInternal,
}

/// `resolution` of a ServiceEntry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    /// Forward to the address the caller connected to.
    None,
    /// Use the addresses in `endpoints` (or selected workloads).
    Static,
    /// Resolve the hosts (or endpoint names) with DNS, all addresses.
    Dns,
    /// Resolve with DNS, first address only.
    DnsRoundRobin,
    /// Resolve dynamically per request (wildcard hosts).
    DynamicDns,
}
