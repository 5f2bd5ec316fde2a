//! The kinds skiff reads, their API groups and served versions.

use std::fmt;

use serde::Serialize;

/// A kind skiff reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    /// Kubernetes Namespace.
    Namespace,
    /// Kubernetes Service.
    Service,
    /// Kubernetes Pod.
    Pod,
    /// Kubernetes Deployment.
    Deployment,
    /// Kubernetes Job (read for analysis; skiff does not run it).
    Job,
    /// Kubernetes CronJob (read for analysis; skiff does not run it).
    CronJob,
    /// Istio ServiceEntry.
    ServiceEntry,
    /// Istio WorkloadEntry.
    WorkloadEntry,
    /// Istio WorkloadGroup.
    WorkloadGroup,
    /// Istio Gateway.
    Gateway,
    /// Istio VirtualService.
    VirtualService,
    /// Istio DestinationRule.
    DestinationRule,
    /// Istio Sidecar.
    Sidecar,
    /// Istio PeerAuthentication.
    PeerAuthentication,
    /// Istio RequestAuthentication.
    RequestAuthentication,
    /// Istio AuthorizationPolicy.
    AuthorizationPolicy,
    /// Istio Telemetry.
    Telemetry,
}

impl Kind {
    /// Every kind, in a stable order.
    pub const ALL: [Kind; 17] = [
        Kind::Namespace,
        Kind::Service,
        Kind::Pod,
        Kind::Deployment,
        Kind::Job,
        Kind::CronJob,
        Kind::ServiceEntry,
        Kind::WorkloadEntry,
        Kind::WorkloadGroup,
        Kind::Gateway,
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::Sidecar,
        Kind::PeerAuthentication,
        Kind::RequestAuthentication,
        Kind::AuthorizationPolicy,
        Kind::Telemetry,
    ];

    /// The name as written in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Service => "Service",
            Kind::Pod => "Pod",
            Kind::Deployment => "Deployment",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::WorkloadGroup => "WorkloadGroup",
            Kind::Gateway => "Gateway",
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::Sidecar => "Sidecar",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::RequestAuthentication => "RequestAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::Telemetry => "Telemetry",
        }
    }

    /// The API group (empty for the Kubernetes core group).
    pub fn group(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::Service | Kind::Pod => "",
            Kind::Deployment => "apps",
            Kind::Job | Kind::CronJob => "batch",
            Kind::ServiceEntry
            | Kind::WorkloadEntry
            | Kind::WorkloadGroup
            | Kind::Gateway
            | Kind::VirtualService
            | Kind::DestinationRule
            | Kind::Sidecar => "networking.istio.io",
            Kind::PeerAuthentication | Kind::RequestAuthentication | Kind::AuthorizationPolicy => {
                "security.istio.io"
            }
            Kind::Telemetry => "telemetry.istio.io",
        }
    }

    /// The versions skiff reads for this kind.
    pub fn versions(self) -> &'static [&'static str] {
        match self.group() {
            "" | "apps" | "batch" => &["v1"],
            "networking.istio.io" => &["v1", "v1beta1", "v1alpha3"],
            "security.istio.io" => &["v1", "v1beta1"],
            _ => &["v1", "v1alpha1"],
        }
    }

    /// Whether resources of this kind live in a namespace.
    pub fn is_namespaced(self) -> bool {
        self != Kind::Namespace
    }

    /// Looks a kind up by group and `kind:` name (any version).
    pub fn find(group: &str, name: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.group() == group && k.as_str() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
