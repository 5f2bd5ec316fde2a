//! Pods, pod templates and containers.

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::types::Labels;

type Opaque = Option<serde_json::Value>;

/// A Kubernetes label selector.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels that must all match.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub match_labels: Labels,
    /// Set-based requirements (kept as written; skiff does not evaluate them yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_expressions: Opaque,
}

/// The pod template of a Deployment.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodTemplateSpec {
    /// Labels and annotations of the pods.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The pod spec.
    #[serde(default)]
    pub spec: PodSpec,
}

/// The spec of a `Pod` (and of a pod template).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSpec {
    /// The app containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Container>,
    /// Init containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    /// The pod's identity (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Deprecated alias of `serviceAccountName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Host name of the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Uses the node's network namespace (no sidecar capture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_containers: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_policy: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_config: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Opaque,
    /// Kept as written.
    #[serde(default, rename = "hostPID", skip_serializing_if = "Option::is_none")]
    pub host_pid: Opaque,
    /// Kept as written.
    #[serde(default, rename = "hostIPC", skip_serializing_if = "Option::is_none")]
    pub host_ipc: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_users: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_process_namespace: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_aliases: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_gates: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_service_links: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemption_policy: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Opaque,
    /// Kept as written.
    #[serde(
        default,
        rename = "setHostnameAsFQDN",
        skip_serializing_if = "Option::is_none"
    )]
    pub set_hostname_as_fqdn: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_gates: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_claims: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Opaque,
}

/// A container of a pod.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    /// Container name. Required, but read when missing so that the rest of the pod
    /// still counts for analysis; validation rejects the pod ("container name cannot be
    /// empty").
    #[serde(default)]
    pub name: String,
    /// Ports the container listens on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_from: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_policy: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_devices: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_message_path: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_message_policy: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_once: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Opaque,
}

/// A port of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerPort {
    /// The port number, 1 to 65535.
    pub container_port: i32,
    /// Name (a Service's `targetPort` may refer to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Port on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i32>,
    /// Host IP to bind.
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}
