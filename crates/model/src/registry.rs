//! The registry of the mesh: services (Kubernetes Services and ServiceEntry hosts) with
//! their ports and protocols, workloads (WorkloadEntries, Pods, Deployment replicas,
//! ServiceEntry endpoints), and which workloads stand behind which service.
//!
//! Built once per configuration snapshot; lookups by host and by namespace + labels are
//! indexed, so compiling one proxy never scans the whole mesh for them.

mod select;
mod service;
mod workload;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use skiff_api::ResourceSet;

use crate::MeshOptions;
use crate::config::Protocol;
use crate::diagnostic::{Code, Findings, ResourceRef, Severity};
use crate::host;
use crate::protocol::{DeclaredProtocol, ProtocolSource};

pub(crate) use select::LabelIndex;
pub use select::{Labels, display as display_labels, matches as labels_match};

/// A service of the mesh: one Kubernetes Service, or one host of a ServiceEntry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Fully qualified host name: `name.namespace.svc.<domain>` for Kubernetes
    /// services, the host as written (lower-case) for ServiceEntries. May be a wildcard.
    pub hostname: String,
    /// Namespace of the resource that declared it.
    pub namespace: String,
    /// Name of that resource.
    pub name: String,
    /// Kubernetes Service or ServiceEntry, and what that implies.
    pub kind: ServiceKind,
    /// Ports (UDP ports are left out: they are not proxied).
    pub ports: Vec<ServicePort>,
    /// Virtual IPs (cluster IPs, ServiceEntry addresses).
    pub addresses: Vec<IpAddr>,
    /// Which namespaces see this service.
    pub visibility: Visibility,
    /// The workloads behind the service (indices into [`Registry::workloads`]), sorted.
    pub endpoints: Vec<usize>,
    /// The resource that declared it.
    pub resource: ResourceRef,
}

/// Where a service comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// A Kubernetes `Service` (selects Pods and WorkloadEntries by label).
    Kubernetes,
    /// A host of a `ServiceEntry`.
    ServiceEntry {
        /// `MESH_INTERNAL` (true) or `MESH_EXTERNAL` (false, the default).
        mesh_internal: bool,
    },
}

/// A port of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Port name, when given.
    pub name: Option<String>,
    /// The service port.
    pub port: u16,
    /// Where the workloads listen.
    pub target: TargetPort,
    /// The protocol as declared.
    pub declared: DeclaredProtocol,
    /// Where the declaration came from.
    pub source: ProtocolSource,
    /// How the proxy carries it.
    pub protocol: Protocol,
}

/// A service port's `targetPort`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    /// Not given: the service port.
    Same,
    /// A port number.
    Number(u16),
    /// A named port of the workload (a container port name, or a WorkloadEntry port).
    Named(String),
}

/// `exportTo` of a service or config resource.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Visibility {
    /// Every namespace (`*`, the default).
    #[default]
    Public,
    /// Only these namespaces (`.` is resolved to the resource's own; `~` is none).
    Namespaces(BTreeSet<String>),
}

impl Visibility {
    /// Reads an `exportTo` list written in namespace `own`.
    pub fn from_export_to<S: AsRef<str>>(export_to: &[S], own: &str) -> Self {
        if export_to.is_empty() || export_to.iter().any(|e| e.as_ref() == "*") {
            return Visibility::Public;
        }
        let namespaces = export_to
            .iter()
            .filter_map(|e| match e.as_ref().trim() {
                "." => Some(own.to_string()),
                "~" => None,
                ns => Some(ns.to_string()),
            })
            .collect();
        Visibility::Namespaces(namespaces)
    }

    /// Whether a proxy in `namespace` sees it.
    pub fn includes(&self, namespace: &str) -> bool {
        match self {
            Visibility::Public => true,
            Visibility::Namespaces(set) => set.contains(namespace),
        }
    }
}

/// A workload: something with labels (and usually an address) that services select.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Name (a Deployment's replicas are `<deployment>-<i>`).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// What declared it.
    pub kind: WorkloadKind,
    /// Labels.
    pub labels: Labels,
    /// Its IP address, when it has one skiff can use.
    pub address: Option<IpAddr>,
    /// Named ports: container port names for pods; for WorkloadEntries (and ServiceEntry
    /// endpoints) the `ports` map, keyed by service port name.
    pub ports: std::collections::BTreeMap<String, u16>,
    /// Service account (`default` when none is given).
    pub service_account: String,
    /// Whether a skiff sidecar runs beside it.
    pub sidecar: bool,
    /// Load-balancing weight (WorkloadEntry `weight`, default 1).
    pub weight: u32,
    /// A ServiceEntry endpoint named by DNS (`resolution: DNS` or `DNS_ROUND_ROBIN`),
    /// resolved by the proxy; then `address` is `None`.
    pub dns: Option<crate::config::DnsLookup>,
    /// Where it runs: WorkloadEntry `locality`, or its topology labels.
    pub locality: crate::locality::Locality,
    /// The resource that declared it.
    pub resource: ResourceRef,
}

/// What declared a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkloadKind {
    /// A `WorkloadEntry`.
    WorkloadEntry,
    /// A `Pod`.
    Pod,
    /// Replica `replica` (from 0) of a `Deployment`.
    DeploymentReplica {
        /// The Deployment's name.
        deployment: String,
        /// Index of the replica.
        replica: u32,
    },
    /// An inline endpoint of a `ServiceEntry` (no proxy runs beside it).
    ServiceEntryEndpoint,
}

impl Workload {
    /// `<name>.<namespace>`: the proxy id of its sidecar.
    pub fn id(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }

    /// Its SPIFFE identity: `spiffe://<trust domain>/ns/<namespace>/sa/<service
    /// account>`, the one the proxy's certificate carries and peers see.
    pub fn spiffe_id(&self, trust_domain: &str) -> String {
        // Built by hand: one allocation (compiling a proxy builds one per endpoint).
        let parts = [
            "spiffe://",
            trust_domain,
            "/ns/",
            &self.namespace,
            "/sa/",
            &self.service_account,
        ];
        let mut id = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        for part in parts {
            id.push_str(part);
        }
        id
    }

    /// Whether Services and selectors can pick it (inline ServiceEntry endpoints belong
    /// to their entry only).
    pub fn selectable(&self) -> bool {
        self.kind != WorkloadKind::ServiceEntryEndpoint
    }

    /// The port this workload listens on for `port` of a service, or `None` when a
    /// named target port is not among its ports.
    pub fn target_port(&self, port: &ServicePort) -> Option<u16> {
        let by_service_port_name = matches!(
            self.kind,
            WorkloadKind::WorkloadEntry | WorkloadKind::ServiceEntryEndpoint
        );
        if by_service_port_name && let Some(p) = port.name.as_ref().and_then(|n| self.ports.get(n))
        {
            return Some(*p);
        }
        match &port.target {
            TargetPort::Same => Some(port.port),
            TargetPort::Number(n) => Some(*n),
            TargetPort::Named(name) => self.ports.get(name).copied(),
        }
    }
}

/// The services and workloads of the mesh, indexed.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    services: Vec<Service>,
    by_host: HashMap<String, Vec<usize>>,
    wildcard_services: Vec<usize>,
    services_by_namespace: HashMap<String, Vec<usize>>,
    workloads: Vec<Workload>,
    workload_ids: Vec<String>,
    by_id: HashMap<String, usize>,
    index: LabelIndex,
    services_of_workload: Vec<Vec<usize>>,
    domain_suffix: String,
}

impl Registry {
    /// Builds the registry from the resources, reporting what does not add up.
    pub(crate) fn build(
        resources: &ResourceSet,
        options: &MeshOptions,
        findings: &mut Findings,
    ) -> Registry {
        let mut workloads = workload::collect(resources, findings);
        let mut declared = service::collect(resources, options, &mut workloads, findings);
        workloads.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

        let mut registry = Registry {
            domain_suffix: options.domain_suffix.clone(),
            ..Registry::default()
        };
        let mut inline = HashMap::new();
        for (id, w) in workloads.iter().enumerate() {
            if w.selectable() {
                registry.by_id.entry(w.id()).or_insert(id);
                registry.index.insert(id, &w.namespace, &w.labels);
            } else {
                inline.insert(w.id(), id);
            }
        }
        registry.workload_ids = workloads.iter().map(Workload::id).collect();
        registry.workloads = workloads;

        declared.sort_by(|a, b| {
            (&a.service.hostname, &a.service.namespace, &a.service.name).cmp(&(
                &b.service.hostname,
                &b.service.namespace,
                &b.service.name,
            ))
        });
        registry.services_of_workload = vec![Vec::new(); registry.workloads.len()];
        for (id, mut d) in declared.into_iter().enumerate() {
            d.service.endpoints = registry.endpoints_of(&d, &inline);
            service::check(&registry, &d, findings);
            for &w in &d.service.endpoints {
                registry.services_of_workload[w].push(id);
            }
            let same_host = registry
                .by_host
                .entry(d.service.hostname.clone())
                .or_default();
            if let Some(&first) = same_host.first() {
                let first = &registry.services[first];
                if first.namespace == d.service.namespace {
                    findings.report(
                        Severity::Warning,
                        Code::DuplicateHost,
                        d.resource,
                        None,
                        format!(
                            "host {} is also declared by {} in the same namespace; \
                             routes reach only that one",
                            d.service.hostname, first.resource
                        ),
                    );
                }
            }
            registry
                .by_host
                .entry(d.service.hostname.clone())
                .or_default()
                .push(id);
            if host::is_wildcard(&d.service.hostname) {
                registry.wildcard_services.push(id);
            }
            registry
                .services_by_namespace
                .entry(d.service.namespace.clone())
                .or_default()
                .push(id);
            registry.services.push(d.service);
        }
        registry
    }

    fn endpoints_of(
        &self,
        d: &service::Declared<'_>,
        inline: &HashMap<String, usize>,
    ) -> Vec<usize> {
        let mut ids = match &d.selector {
            Some(selector) => self.select(&d.service.namespace, selector),
            None => Vec::new(),
        };
        for name in &d.inline_endpoints {
            if let Some(&id) = inline.get(name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// All services, sorted by host name, then namespace and name.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// All workloads, sorted by namespace and name.
    pub fn workloads(&self) -> &[Workload] {
        &self.workloads
    }

    /// The id (`<name>.<namespace>`) of a workload.
    pub fn workload_id(&self, workload: usize) -> &str {
        &self.workload_ids[workload]
    }

    /// Services declared in a namespace, in registry order.
    pub fn services_in_namespace(&self, namespace: &str) -> &[usize] {
        self.services_by_namespace
            .get(namespace)
            .map_or(&[], Vec::as_slice)
    }

    /// Services whose host is a wildcard (ServiceEntries for `*.example.com`).
    pub fn wildcard_services(&self) -> &[usize] {
        &self.wildcard_services
    }

    /// A workload by its id (`<name>.<namespace>`).
    pub fn workload_by_id(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// The services that a workload stands behind (indices into [`Registry::services`]).
    pub fn services_of(&self, workload: usize) -> &[usize] {
        &self.services_of_workload[workload]
    }

    /// Services declared with exactly this host name (several when namespaces each
    /// declare it).
    pub fn services_by_host(&self, hostname: &str) -> &[usize] {
        self.by_host.get(hostname).map_or(&[], Vec::as_slice)
    }

    /// The service a proxy in `from_namespace` reaches under `hostname`: the one declared
    /// in that namespace when several are, else the first visible one.
    pub fn lookup(&self, hostname: &str, from_namespace: &str) -> Option<usize> {
        let ids = self.services_by_host(hostname);
        ids.iter()
            .copied()
            .find(|&id| self.services[id].namespace == from_namespace)
            .or_else(|| {
                ids.iter()
                    .copied()
                    .find(|&id| self.services[id].visibility.includes(from_namespace))
            })
    }

    /// Reads a `host` written in a resource of `namespace`: Istio's resolution, then
    /// (when that names no service) the Kubernetes forms `name.ns` and `name.ns.svc`.
    /// Returns the host and whether the second reading was used.
    pub fn resolve_host(&self, written: &str, namespace: &str) -> (String, bool) {
        let literal = host::resolve(written, namespace, &self.domain_suffix);
        if self.by_host.contains_key(&literal) || host::is_wildcard(&literal) {
            return (literal, false);
        }
        match host::kubernetes_expansion(written, &self.domain_suffix) {
            Some(expanded) if self.by_host.contains_key(&expanded) => (expanded, true),
            _ => (literal, false),
        }
    }

    /// Workloads of `namespace` that carry all of `selector`'s labels (all of the
    /// namespace for an empty selector), sorted.
    pub fn select(&self, namespace: &str, selector: &Labels) -> Vec<usize> {
        self.index
            .select(namespace, selector, |id| &self.workloads[id].labels)
    }

    /// Like [`Registry::select`], in every namespace.
    pub fn select_everywhere(&self, selector: &Labels) -> Vec<usize> {
        self.index
            .select_everywhere(selector, |id| &self.workloads[id].labels)
    }

    /// The DNS suffix of Kubernetes services.
    pub fn domain_suffix(&self) -> &str {
        &self.domain_suffix
    }
}

#[cfg(test)]
mod tests;

/// Up to three names, then how many more: for messages about many workloads.
pub(crate) fn shorten_names<S: AsRef<str>>(names: &[S]) -> String {
    let mut s = names
        .iter()
        .take(3)
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 3 {
        s.push_str(&format!(" and {} more", names.len() - 3));
    }
    s
}
