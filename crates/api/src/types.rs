//! Value types shared by many kinds: durations, string matches, percentages, port and
//! workload selectors, label maps, policy target references.

mod duration;
mod string_match;
mod timestamp;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use duration::{Duration, DurationError};
pub use string_match::{HeaderMatch, StringMatch};
pub use timestamp::{Timestamp, TimestampError};

/// A map of labels (or annotations). A `BTreeMap` so iteration order is stable.
pub type Labels = BTreeMap<String, String>;

/// Istio's `Percent`: a share of traffic, from 0.0 to 100.0.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Percent {
    /// The percentage, 0.0 to 100.0 inclusive.
    #[serde(default)]
    pub value: f64,
}

/// Istio's `PortSelector`: names a port of a service by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSelector {
    /// The port number, 1 to 65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
}

/// `istio.type.v1beta1.WorkloadSelector`, as used by DestinationRule, the security kinds
/// and Telemetry: selects workloads by their labels.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// Labels a workload must all carry to be selected. Values may not contain `*`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: Labels,
}

/// `networking.v1alpha3.WorkloadSelector`, as used by Sidecar and ServiceEntry: the same
/// idea as [`WorkloadSelector`] but its field is called `labels`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadLabelSelector {
    /// Labels a workload must all carry to be selected.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
}

/// `istio.type.v1beta1.PolicyTargetReference`: attaches a policy to a Kubernetes Gateway
/// API resource (or a Service) instead of selecting workloads by label.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyTargetReference {
    /// API group of the target (`gateway.networking.k8s.io`, or empty for core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind of the target, e.g. `Gateway` or `Service`.
    pub kind: String,
    /// Name of the target.
    pub name: String,
    /// Namespace of the target; must be empty or the policy's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Kubernetes `IntOrString`, as in a Service's `targetPort`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum IntOrString {
    /// A number.
    Int(i64),
    /// A name (for `targetPort`: a named container port).
    String(String),
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(IntOrString::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(IntOrString::String(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}
