//! Workloads from WorkloadEntries, Pods and Deployments.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use skiff_api::kube::PodSpec;
use skiff_api::{Kind, ObjectMeta, Resource, ResourceSet};

use super::{Workload, WorkloadKind};
use crate::diagnostic::{Code, Findings, Severity, resource_ref};
use crate::locality::Locality;

/// The annotation (or label) that opts a workload out of the sidecar.
pub(crate) const INJECT: &str = "sidecar.istio.io/inject";

pub(super) fn collect(resources: &ResourceSet, findings: &mut Findings) -> Vec<Workload> {
    let mut out = Vec::new();
    let mut seen = HashMap::new();
    for we in resources.workload_entries() {
        let meta = we.metadata();
        let address = parse_address(we.address.as_deref(), we.resource, findings);
        let mut ports = BTreeMap::new();
        for (name, port) in &we.ports {
            if let Some(p) = port_number(i64::from(*port)) {
                ports.insert(name.clone(), p);
            }
        }
        let labels = merged_labels(&we.labels, &meta.labels);
        out.push(Workload {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            kind: WorkloadKind::WorkloadEntry,
            locality: Locality::of_workload(we.locality.as_deref(), &labels),
            labels,
            address,
            ports,
            service_account: we
                .service_account
                .clone()
                .unwrap_or_else(|| "default".to_string()),
            sidecar: has_sidecar(meta, None),
            weight: we.weight.unwrap_or(1).max(1),
            dns: None,
            resource: resource_ref(we.resource),
        });
        check_unique(&mut seen, out.last().unwrap(), we.resource, findings);
    }
    for pod in resources.pods() {
        let meta = pod.metadata();
        let w = pod_workload(
            meta,
            pod.spec,
            meta.name.clone(),
            WorkloadKind::Pod,
            pod.resource,
        );
        check_unique(&mut seen, &w, pod.resource, findings);
        out.push(w);
    }
    for deployment in resources.deployments() {
        let meta = deployment.metadata();
        let template = &deployment.template;
        // The replicas are pods of the Deployment's namespace, whatever the template says.
        let mut pod_meta = template.metadata.clone();
        pod_meta.namespace = meta.namespace.clone();
        let replicas = deployment.replicas.unwrap_or(1).max(0) as u32;
        for replica in 0..replicas {
            let kind = WorkloadKind::DeploymentReplica {
                deployment: meta.name.clone(),
                replica,
            };
            let name = format!("{}-{replica}", meta.name);
            let w = pod_workload(&pod_meta, &template.spec, name, kind, deployment.resource);
            check_unique(&mut seen, &w, deployment.resource, findings);
            out.push(w);
        }
    }
    out
}

/// A Pod (or a Deployment replica) as a workload. Pods carry no address in their spec,
/// so in local mode they are never endpoints.
fn pod_workload(
    meta: &ObjectMeta,
    spec: &PodSpec,
    name: String,
    kind: WorkloadKind,
    resource: &Resource,
) -> Workload {
    let mut ports = BTreeMap::new();
    for container in &spec.containers {
        for port in &container.ports {
            if let (Some(n), Some(p)) = (&port.name, port_number(i64::from(port.container_port))) {
                ports.entry(n.clone()).or_insert(p);
            }
        }
    }
    Workload {
        name,
        namespace: meta.namespace.clone(),
        kind,
        labels: meta.labels.clone(),
        locality: Locality::of_workload(None, &meta.labels),
        address: None,
        ports,
        service_account: spec
            .service_account_name
            .clone()
            .or_else(|| spec.service_account.clone())
            .unwrap_or_else(|| "default".to_string()),
        sidecar: has_sidecar(meta, spec.host_network),
        weight: 1,
        dns: None,
        resource: resource_ref(resource),
    }
}

/// A sidecar runs beside every workload unless `sidecar.istio.io/inject: "false"` is set
/// (as an annotation, or as a label as newer Istio prefers), or the pod uses the host
/// network (its traffic cannot be captured).
pub(crate) fn has_sidecar(meta: &ObjectMeta, host_network: Option<bool>) -> bool {
    let off = |m: &BTreeMap<String, String>| {
        m.get(INJECT)
            .is_some_and(|v| v.eq_ignore_ascii_case("false"))
    };
    !(off(&meta.annotations) || off(&meta.labels) || host_network == Some(true))
}

/// WorkloadEntry labels: the spec's `labels`, and the resource's own labels where the
/// spec does not say otherwise (Istio matches selectors against both).
fn merged_labels(
    spec: &BTreeMap<String, String>,
    meta: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = meta.clone();
    labels.extend(spec.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

/// An address skiff can connect to: an IP. DNS names and unix sockets are reported.
pub(super) fn parse_address(
    address: Option<&str>,
    resource: &Resource,
    findings: &mut Findings,
) -> Option<IpAddr> {
    let address = address?.trim();
    if address.is_empty() {
        return None;
    }
    match address.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            let field = if resource.kind() == Kind::WorkloadEntry {
                "spec.address"
            } else {
                "spec.endpoints"
            };
            findings.report(
                Severity::Warning,
                Code::WorkloadWithoutAddress,
                resource,
                Some(field),
                format!(
                    "address `{address}` is not an IP address; skiff does not resolve DNS names \
                     or unix sockets for endpoints yet, so this workload receives no traffic"
                ),
            );
            None
        }
    }
}

/// A port number from a signed field, when it is in 1..=65535.
pub(super) fn port_number(n: i64) -> Option<u16> {
    u16::try_from(n).ok().filter(|p| *p != 0)
}

/// Two workloads with one id would be one proxy: the later one is reported.
fn check_unique(
    seen: &mut HashMap<String, String>,
    workload: &Workload,
    resource: &Resource,
    findings: &mut Findings,
) {
    let id = workload.id();
    match seen.get(&id) {
        Some(first) => findings.report(
            Severity::Error,
            Code::DuplicateWorkload,
            resource,
            None,
            format!("workload {id} is also declared by {first}; only one of them becomes a proxy"),
        ),
        None => {
            seen.insert(id, workload.resource.to_string());
        }
    }
}
