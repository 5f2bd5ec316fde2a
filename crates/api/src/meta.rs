//! Kubernetes object metadata, as every resource carries it.

use serde::{Deserialize, Serialize};

use crate::types::{Labels, Timestamp};

/// The namespace a resource lands in when its metadata names none.
pub const DEFAULT_NAMESPACE: &str = "default";

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_owned()
}

/// `metadata` of a resource. skiff reads `name`, `namespace`, `labels` and
/// `annotations`; the fields Kubernetes fills in itself (`uid`, `resourceVersion`, …)
/// are accepted so that `kubectl get -o yaml` output loads, and kept as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Name of the resource. Required at the top level of a document (validation
    /// reports it when empty); optional in a pod template.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Namespace; `default` when not written.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Labels.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub annotations: Labels,
    /// Prefix for a generated name (tolerated; skiff needs `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    /// Set by Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Set by Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Set by Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// When the resource was created (set by Kubernetes; RFC 3339). Istio uses it to
    /// choose among policies of one scope: the oldest wins. `null` and absent are the
    /// same (older than any written time, as Go's zero time is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Timestamp>,
    /// Set by Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<serde_json::Value>,
    /// Set by Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    /// Set by Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_link: Option<String>,
    /// Owners (kept as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_references: Option<serde_json::Value>,
    /// Finalizers (kept as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalizers: Option<serde_json::Value>,
    /// Server-side apply bookkeeping (kept as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_fields: Option<serde_json::Value>,
}

impl Default for ObjectMeta {
    fn default() -> Self {
        ObjectMeta {
            name: String::new(),
            namespace: default_namespace(),
            labels: Labels::new(),
            annotations: Labels::new(),
            generate_name: None,
            uid: None,
            resource_version: None,
            generation: None,
            creation_timestamp: None,
            deletion_timestamp: None,
            deletion_grace_period_seconds: None,
            self_link: None,
            owner_references: None,
            finalizers: None,
            managed_fields: None,
        }
    }
}

impl ObjectMeta {
    /// Metadata with just a name and namespace.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectMeta {
            name: name.into(),
            namespace: namespace.into(),
            ..ObjectMeta::default()
        }
    }
}
