//! Which `apiVersion`/`kind` pairs skiff reads, ignores or rejects.

use crate::resource::Kind;

/// A kind skiff recognises but does not read: loading it gives a warning, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IgnoredKind {
    /// API group (empty for the Kubernetes core group).
    pub group: &'static str,
    /// The kind.
    pub kind: &'static str,
    /// Why it is ignored.
    pub reason: &'static str,
}

const NOT_MESH: &str = "not a mesh resource, skiff ignores it";

macro_rules! ignored {
    ($($group:literal: [$($kind:literal),* $(,)?] => $reason:expr;)*) => {
        &[$($(IgnoredKind { group: $group, kind: $kind, reason: $reason },)*)*]
    };
}

/// Well-known kinds that are not part of the mesh configuration (or mesh kinds skiff
/// does not implement), with the reason given in the warning.
pub const IGNORED_KINDS: &[IgnoredKind] = ignored! {
    "": ["ConfigMap", "Secret", "ServiceAccount", "PersistentVolumeClaim",
         "PersistentVolume", "LimitRange", "ResourceQuota", "Endpoints", "Event", "Node",
         "ReplicationController"] => NOT_MESH;
    "apps": ["StatefulSet", "DaemonSet", "ReplicaSet"] =>
        "skiff does not turn this kind into workloads yet, it is ignored (use a Deployment, \
         a Pod or a WorkloadEntry)";
    "rbac.authorization.k8s.io": ["Role", "RoleBinding", "ClusterRole",
         "ClusterRoleBinding"] => NOT_MESH;
    "policy": ["PodDisruptionBudget"] => NOT_MESH;
    "autoscaling": ["HorizontalPodAutoscaler"] => NOT_MESH;
    "networking.k8s.io": ["NetworkPolicy", "Ingress", "IngressClass"] => NOT_MESH;
    "discovery.k8s.io": ["EndpointSlice"] => NOT_MESH;
    "storage.k8s.io": ["StorageClass"] => NOT_MESH;
    "scheduling.k8s.io": ["PriorityClass"] => NOT_MESH;
    "apiextensions.k8s.io": ["CustomResourceDefinition"] => NOT_MESH;
    "admissionregistration.k8s.io": ["MutatingWebhookConfiguration",
         "ValidatingWebhookConfiguration"] => NOT_MESH;
    "cert-manager.io": ["Certificate", "Issuer", "ClusterIssuer"] => NOT_MESH;
    "monitoring.coreos.com": ["ServiceMonitor", "PodMonitor", "PrometheusRule"] => NOT_MESH;
    "install.istio.io": ["IstioOperator"] =>
        "an installation resource, not mesh configuration; skiff ignores it";
    "networking.istio.io": ["EnvoyFilter"] =>
        "skiff has no Envoy to patch; EnvoyFilter is ignored";
    "networking.istio.io": ["ProxyConfig"] => "skiff does not implement ProxyConfig; it is ignored";
    "extensions.istio.io": ["WasmPlugin"] => "skiff does not run Wasm plugins; it is ignored";
    "gateway.networking.k8s.io": ["Gateway", "HTTPRoute", "GRPCRoute", "TCPRoute",
         "TLSRoute", "ReferenceGrant", "GatewayClass"] =>
        "the Kubernetes Gateway API is not supported yet; skiff ignores it";
};

/// What to do with a document of this `apiVersion` and `kind`.
pub(crate) enum KindLookup {
    /// A kind skiff reads.
    Read(Kind),
    /// A kind skiff knows and ignores, with the warning text.
    Ignore(&'static str),
    /// An error, with the field at fault (`kind` or `apiVersion`) and its message.
    Reject(&'static str, String),
}

/// Splits `apps/v1` into (`apps`, `v1`) and `v1` into (``, `v1`).
pub(crate) fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

pub(crate) fn lookup(api_version: &str, kind: &str) -> KindLookup {
    let (group, version) = split_api_version(api_version);
    if let Some(ignored) = IGNORED_KINDS
        .iter()
        .find(|i| i.group == group && i.kind == kind)
    {
        return KindLookup::Ignore(ignored.reason);
    }
    if let Some(k) = Kind::find(group, kind) {
        if k.versions().contains(&version) {
            return KindLookup::Read(k);
        }
        return KindLookup::Reject(
            "apiVersion",
            format!(
                "unknown version `{version}` of {kind}: skiff reads {}",
                k.versions()
                    .iter()
                    .map(|v| format!(
                        "{}{v}",
                        if group.is_empty() {
                            String::new()
                        } else {
                            format!("{group}/")
                        }
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    // Wrong group for a kind skiff knows (e.g. `apiVersion: v1` on a Deployment)?
    if let Some(k) = Kind::ALL.into_iter().find(|k| k.as_str() == kind) {
        let group_of = |k: Kind| {
            if k.group().is_empty() {
                "the core group".to_owned()
            } else {
                k.group().to_owned()
            }
        };
        return KindLookup::Reject(
            "apiVersion",
            format!(
                "{kind} belongs to {} (apiVersion {}), not `{api_version}`",
                group_of(k),
                k.versions()
                    .iter()
                    .map(|v| if k.group().is_empty() {
                        (*v).to_owned()
                    } else {
                        format!("{}/{v}", k.group())
                    })
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        );
    }
    let in_group: Vec<&str> = Kind::ALL
        .into_iter()
        .filter(|k| k.group() == group)
        .map(Kind::as_str)
        .collect();
    if in_group.is_empty() {
        KindLookup::Reject(
            "kind",
            format!(
                "unknown kind `{kind}` (apiVersion `{api_version}`): skiff reads the Istio \
             networking, security and telemetry kinds, and Kubernetes Namespace, Service, \
             Pod, Deployment, Job and CronJob"
            ),
        )
    } else {
        KindLookup::Reject(
            "kind",
            format!(
                "unknown kind `{kind}`{} in {}: expected one of {}",
                crate::yaml::suggestion(kind, &in_group),
                if group.is_empty() {
                    "the core group"
                } else {
                    group
                },
                crate::yaml::list_kinds(&in_group)
            ),
        )
    }
}
