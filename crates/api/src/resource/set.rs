//! [`ResourceSet`]: the resources of a configuration, in a stable order, with typed
//! accessors per kind.

use std::ops::Deref;

use crate::kube::{CronJobSpec, DeploymentSpec, JobSpec, NamespaceSpec, PodSpec, ServiceSpec};
use crate::meta::ObjectMeta;
use crate::networking::{
    DestinationRule, Gateway, ServiceEntry, Sidecar, VirtualService, WorkloadEntry, WorkloadGroup,
};
use crate::resource::{Kind, Origin, Resource, Spec};
use crate::security::{AuthorizationPolicy, PeerAuthentication, RequestAuthentication};
use crate::telemetry::Telemetry;

/// A set of resources, ordered by kind, then namespace, then name (then origin, for
/// the rare duplicates that validation reports).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceSet {
    resources: Vec<Resource>,
}

/// A resource seen through its typed spec. Derefs to the spec.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a, T> {
    /// The whole resource (metadata, origin).
    pub resource: &'a Resource,
    /// Its spec.
    pub spec: &'a T,
}

impl<'a, T> Entry<'a, T> {
    /// `metadata.name`.
    pub fn name(&self) -> &'a str {
        &self.resource.metadata.name
    }

    /// `metadata.namespace`.
    pub fn namespace(&self) -> &'a str {
        &self.resource.metadata.namespace
    }

    /// The metadata.
    pub fn metadata(&self) -> &'a ObjectMeta {
        &self.resource.metadata
    }

    /// Where it was written.
    pub fn origin(&self) -> &'a Origin {
        &self.resource.origin
    }
}

impl<T> Deref for Entry<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.spec
    }
}

macro_rules! accessor {
    ($(#[$doc:meta])* $fn:ident, $variant:ident, $ty:ty) => {
        $(#[$doc])*
        pub fn $fn(&self) -> impl Iterator<Item = Entry<'_, $ty>> + '_ {
            self.of_kind(Kind::$variant).iter().filter_map(|r| match &r.spec {
                Spec::$variant(spec) => Some(Entry { resource: r, spec }),
                _ => None,
            })
        }
    };
}

impl ResourceSet {
    /// Builds a set, sorting the resources.
    pub fn new(mut resources: Vec<Resource>) -> Self {
        resources.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
        ResourceSet { resources }
    }

    /// All resources, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Resource> {
        self.resources.iter()
    }

    /// Number of resources.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// The resources of one kind (a contiguous slice: the set is sorted by kind).
    pub fn of_kind(&self, kind: Kind) -> &[Resource] {
        let start = self.resources.partition_point(|r| r.kind() < kind);
        let end = self.resources.partition_point(|r| r.kind() <= kind);
        &self.resources[start..end]
    }

    /// Finds a resource by kind, namespace and name.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Resource> {
        self.of_kind(kind)
            .iter()
            .find(|r| r.namespace() == namespace && r.name() == name)
    }

    /// Consumes the set, returning its resources in order.
    pub fn into_vec(self) -> Vec<Resource> {
        self.resources
    }

    accessor!(
        /// VirtualServices.
        virtual_services, VirtualService, VirtualService);
    accessor!(
        /// DestinationRules.
        destination_rules, DestinationRule, DestinationRule);
    accessor!(
        /// Gateways.
        gateways, Gateway, Gateway);
    accessor!(
        /// ServiceEntries.
        service_entries, ServiceEntry, ServiceEntry);
    accessor!(
        /// WorkloadEntries.
        workload_entries, WorkloadEntry, WorkloadEntry);
    accessor!(
        /// WorkloadGroups.
        workload_groups, WorkloadGroup, WorkloadGroup);
    accessor!(
        /// Sidecars.
        sidecars, Sidecar, Sidecar);
    accessor!(
        /// PeerAuthentications.
        peer_authentications, PeerAuthentication, PeerAuthentication);
    accessor!(
        /// AuthorizationPolicies.
        authorization_policies, AuthorizationPolicy, AuthorizationPolicy);
    accessor!(
        /// RequestAuthentications.
        request_authentications, RequestAuthentication, RequestAuthentication);
    accessor!(
        /// Telemetry resources.
        telemetries, Telemetry, Telemetry);
    accessor!(
        /// Namespaces.
        namespaces, Namespace, NamespaceSpec);
    accessor!(
        /// Kubernetes Services.
        services, Service, ServiceSpec);
    accessor!(
        /// Pods.
        pods, Pod, PodSpec);
    accessor!(
        /// Deployments.
        deployments, Deployment, DeploymentSpec);
    accessor!(
        /// Jobs.
        jobs, Job, JobSpec);
    accessor!(
        /// CronJobs.
        cron_jobs, CronJob, CronJobSpec);
}

fn sort_key(r: &Resource) -> (Kind, &str, &str, &std::path::Path, usize) {
    (
        r.kind(),
        r.namespace(),
        r.name(),
        &r.origin.file,
        r.origin.document,
    )
}

impl<'a> IntoIterator for &'a ResourceSet {
    type Item = &'a Resource;
    type IntoIter = std::slice::Iter<'a, Resource>;
    fn into_iter(self) -> Self::IntoIter {
        self.resources.iter()
    }
}

impl FromIterator<Resource> for ResourceSet {
    fn from_iter<I: IntoIterator<Item = Resource>>(iter: I) -> Self {
        ResourceSet::new(iter.into_iter().collect())
    }
}
