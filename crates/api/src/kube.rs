//! The Kubernetes kinds the mesh reads: `v1` Namespace, Service and Pod, and `apps/v1`
//! Deployment; and `batch/v1` Job and CronJob, read for analysis only.
//!
//! The parts the mesh uses are typed strictly. Other valid Kubernetes fields (images,
//! resources, probes, volumes, …) are accepted and kept as opaque JSON values, so real
//! manifests load, while a misspelt field at a level skiff reads is still an error.

mod pod;

use serde::{Deserialize, Serialize};

use crate::types::{IntOrString, Labels};

pub use pod::{Container, ContainerPort, LabelSelector, PodSpec, PodTemplateSpec};

type Opaque = Option<serde_json::Value>;

/// The spec of a `Namespace` (nothing the mesh reads; its labels are in metadata).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceSpec {
    /// Finalizers (kept as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalizers: Opaque,
}

/// The spec of a `Service`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// Pods (and WorkloadEntries) with all these labels are the service's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Labels>,
    /// Ports of the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// `ClusterIP` (default), `NodePort`, `LoadBalancer` or `ExternalName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<ServiceType>,
    /// Virtual IP, or `None` for a headless service.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    /// Virtual IPs (dual stack).
    #[serde(default, rename = "clusterIPs", skip_serializing_if = "Vec::is_empty")]
    pub cluster_ips: Vec<String>,
    /// DNS name for `ExternalName` services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_name: Option<String>,
    /// Kept as written.
    #[serde(
        default,
        rename = "externalIPs",
        skip_serializing_if = "Option::is_none"
    )]
    pub external_ips: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_traffic_policy: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity_config: Opaque,
    /// Kept as written.
    #[serde(
        default,
        rename = "loadBalancerIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub load_balancer_ip: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_source_ranges: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocate_load_balancer_node_ports: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_node_port: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_families: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family_policy: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_not_ready_addresses: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_distribution: Opaque,
}

/// `type` of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceType {
    /// A virtual IP inside the cluster.
    ClusterIP,
    /// Also a port on every node.
    NodePort,
    /// Also an external load balancer.
    LoadBalancer,
    /// A DNS alias (`externalName`).
    ExternalName,
}

/// A port of a Service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// Name. Its prefix (`http-`, `grpc-`, `tcp-`, …) tells the mesh the protocol
    /// when `appProtocol` is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The service port, 1 to 65535.
    pub port: i32,
    /// The port on the pods: a number or a container port name. Default: `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Application protocol (`http`, `http2`, `grpc`, `tcp`, `tls`, `https`, …);
    /// takes precedence over the name prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    /// Node port (NodePort and LoadBalancer services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<i32>,
}

/// The spec of a `Deployment`. The model turns each into workloads using the pod
/// template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Number of pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Must select the template's labels.
    pub selector: LabelSelector,
    /// The pods to run.
    pub template: PodTemplateSpec,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Opaque,
}

/// The spec of a `batch/v1` Job. skiff does not run Jobs: it reads them so that
/// `skiff analyze` can say what a sidecar does to them (a Job whose sidecar never
/// exits never completes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSpec {
    /// The pods to run.
    pub template: PodTemplateSpec,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completions: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_mode: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_limit: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_limit_per_index: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failed_indexes: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_failure_policy: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_replacement_policy: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_policy: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual_selector: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Opaque,
}

/// The template of the Jobs a CronJob creates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobTemplateSpec {
    /// Labels and annotations of the Jobs.
    #[serde(default)]
    pub metadata: crate::meta::ObjectMeta,
    /// The Job spec.
    pub spec: JobSpec,
}

/// The spec of a `batch/v1` CronJob (read for analysis, as [`JobSpec`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CronJobSpec {
    /// The cron schedule.
    pub schedule: String,
    /// The Jobs it creates.
    pub job_template: JobTemplateSpec,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_jobs_history_limit: Opaque,
    /// Kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_jobs_history_limit: Opaque,
}
