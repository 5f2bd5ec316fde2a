//! Services from Kubernetes Services and ServiceEntries.

use std::net::IpAddr;

use skiff_api::networking::{Location, Resolution};
use skiff_api::types::IntOrString;
use skiff_api::{Resource, ResourceSet};

use super::workload::{parse_address, port_number};
use super::{
    Labels, Registry, Service, ServiceKind, ServicePort, TargetPort, Visibility, Workload,
    WorkloadKind,
};
use crate::MeshOptions;
use crate::diagnostic::{Code, Findings, Severity, resource_ref};
use crate::host;
use crate::protocol::{self, DeclaredProtocol, ProtocolSource};

/// The annotation that sets `exportTo` on a Kubernetes Service.
const EXPORT_TO: &str = "networking.istio.io/exportTo";

/// A service as declared, before its endpoints are known.
pub(super) struct Declared<'a> {
    pub(super) service: Service,
    /// Label selector over the workloads of the service's namespace, if any.
    pub(super) selector: Option<Labels>,
    /// Ids of the entry's inline endpoints.
    pub(super) inline_endpoints: Vec<String>,
    pub(super) resource: &'a Resource,
}

pub(super) fn collect<'a>(
    resources: &'a ResourceSet,
    options: &MeshOptions,
    workloads: &mut Vec<Workload>,
    findings: &mut Findings,
) -> Vec<Declared<'a>> {
    let mut out = Vec::new();
    for svc in resources.services() {
        let meta = svc.metadata();
        let r = svc.resource;
        if svc.r#type == Some(skiff_api::kube::ServiceType::ExternalName) {
            findings.report(
                Severity::Warning,
                Code::NotImplemented,
                r,
                Some("spec.type"),
                "ExternalName services are not supported yet: skiff gives this service no \
                 endpoints; use a ServiceEntry for an external host",
            );
        }
        let mut ports = Vec::new();
        for (i, p) in svc.ports.iter().enumerate() {
            let Some(number) = port_number(i64::from(p.port)) else {
                continue;
            };
            let target = match &p.target_port {
                None => TargetPort::Same,
                Some(IntOrString::Int(n)) => {
                    port_number(*n).map_or(TargetPort::Same, TargetPort::Number)
                }
                Some(IntOrString::String(name)) => TargetPort::Named(name.clone()),
            };
            let (declared, source) = protocol::of_service_port(
                number,
                p.name.as_deref(),
                p.app_protocol.as_deref(),
                p.protocol.as_deref(),
            );
            if let Some(port) = service_port(
                p.name.clone(),
                number,
                target,
                declared,
                source,
                r,
                &format!("spec.ports[{i}]"),
                findings,
            ) {
                ports.push(port);
            }
        }
        let addresses = svc
            .cluster_ip
            .iter()
            .chain(&svc.cluster_ips)
            .filter_map(|a| a.parse::<IpAddr>().ok())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let export_to: Vec<&str> = meta
            .annotations
            .get(EXPORT_TO)
            .map(|v| v.split(',').map(str::trim).collect())
            .unwrap_or_default();
        out.push(Declared {
            service: Service {
                hostname: format!(
                    "{}.{}.svc.{}",
                    meta.name, meta.namespace, options.domain_suffix
                ),
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                kind: ServiceKind::Kubernetes,
                ports,
                addresses,
                visibility: Visibility::from_export_to(&export_to, &meta.namespace),
                endpoints: Vec::new(),
                resource: resource_ref(r),
            },
            selector: svc.selector.clone().filter(|s| !s.is_empty()),
            inline_endpoints: Vec::new(),
            resource: r,
        });
    }
    for se in resources.service_entries() {
        let meta = se.metadata();
        let r = se.resource;
        let mut ports = Vec::new();
        for (i, p) in se.ports.iter().enumerate() {
            let Some(number) = port_number(i64::from(p.number)) else {
                continue;
            };
            let target = p
                .target_port
                .and_then(|t| port_number(i64::from(t)))
                .map_or(TargetPort::Same, TargetPort::Number);
            let (declared, source) = protocol::of_protocol_field(p.protocol.as_deref());
            let name = Some(p.name.clone()).filter(|n| !n.is_empty());
            if let Some(port) = service_port(
                name,
                number,
                target,
                declared,
                source,
                r,
                &format!("spec.ports[{i}]"),
                findings,
            ) {
                ports.push(port);
            }
        }
        let mut addresses = Vec::new();
        for (i, a) in se.addresses.iter().enumerate() {
            match a.parse::<IpAddr>() {
                Ok(ip) => addresses.push(ip),
                Err(_) => findings.report(
                    Severity::Info,
                    Code::NotImplemented,
                    r,
                    Some(&format!("spec.addresses[{i}]")),
                    format!("address range `{a}` is not used: skiff matches services by name"),
                ),
            }
        }
        // `resolution: DNS` resolves each endpoint's address that is a name, or, with no
        // endpoints, each host, in the proxy (Envoy's STRICT_DNS); `DNS_ROUND_ROBIN`
        // takes only the first address found (LOGICAL_DNS).
        let dns_all = match se.resolution {
            Some(Resolution::Dns) => Some(true),
            Some(Resolution::DnsRoundRobin) => Some(false),
            _ => None,
        };
        let by_name = |name: &str| {
            dns_all.and_then(|all| {
                let name = name.trim().trim_end_matches('.');
                (!name.is_empty() && name.parse::<IpAddr>().is_err() && !name.contains('/')).then(
                    || crate::config::DnsLookup {
                        name: name.to_ascii_lowercase(),
                        all,
                    },
                )
            })
        };
        let mut inline_endpoints = Vec::new();
        for (i, ep) in se.endpoints.iter().enumerate() {
            let name = format!("{}-{i}", meta.name);
            let mut ports = std::collections::BTreeMap::new();
            for (port_name, port) in &ep.ports {
                if let Some(p) = port_number(i64::from(*port)) {
                    ports.insert(port_name.clone(), p);
                }
            }
            let dns = ep.address.as_deref().and_then(by_name);
            let workload = Workload {
                name: name.clone(),
                namespace: meta.namespace.clone(),
                kind: WorkloadKind::ServiceEntryEndpoint,
                labels: ep.labels.clone(),
                locality: crate::locality::Locality::of_workload(
                    ep.locality.as_deref(),
                    &ep.labels,
                ),
                address: if dns.is_some() {
                    None
                } else {
                    parse_address(ep.address.as_deref(), r, findings)
                },
                dns,
                ports,
                service_account: ep
                    .service_account
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                sidecar: false,
                weight: ep.weight.unwrap_or(1).max(1),
                resource: resource_ref(r),
            };
            inline_endpoints.push(workload.id());
            workloads.push(workload);
        }
        let selector = se.workload_selector.as_ref().map(|s| s.labels.clone());
        let mut resolved_hosts = 0;
        // Host index → the endpoint that resolves that host (each host its own name).
        let mut host_endpoints = std::collections::BTreeMap::new();
        if se.endpoints.is_empty() && selector.is_none() {
            // No endpoints: the hosts themselves are resolved (a wildcard host cannot be).
            for (i, h) in se.hosts.iter().enumerate() {
                let Some(dns) = by_name(h).filter(|d| !d.name.starts_with('*')) else {
                    continue;
                };
                let workload = Workload {
                    name: format!("{}-host-{i}", meta.name),
                    namespace: meta.namespace.clone(),
                    kind: WorkloadKind::ServiceEntryEndpoint,
                    labels: Default::default(),
                    locality: Default::default(),
                    address: None,
                    ports: Default::default(),
                    service_account: "default".into(),
                    sidecar: false,
                    weight: 1,
                    dns: Some(dns),
                    resource: resource_ref(r),
                };
                host_endpoints.insert(i, workload.id());
                workloads.push(workload);
                resolved_hosts += 1;
            }
        }
        if se.endpoints.is_empty() && selector.is_none() && resolved_hosts == 0 {
            let why = match se.resolution {
                Some(Resolution::Dns | Resolution::DnsRoundRobin) => {
                    "resolution DNS with only wildcard hosts: there is no name to resolve"
                }
                Some(Resolution::DynamicDns) => {
                    "resolution DYNAMIC_DNS is not implemented: skiff does not resolve \
                     wildcard hosts per request"
                }
                Some(Resolution::Static) => "resolution STATIC without endpoints",
                Some(Resolution::None) | None => {
                    "resolution NONE forwards to the address the app connected to, which \
                     skiff's explicit proxy mode does not know"
                }
            };
            findings.report(
                Severity::Warning,
                Code::NotImplemented,
                r,
                Some("spec.resolution"),
                format!("{why}; this entry has no endpoints and requests to it fail with 503"),
            );
        }
        let mesh_internal = se.location == Some(Location::MeshInternal);
        for (i, h) in se.hosts.iter().enumerate() {
            let inline_endpoints = match host_endpoints.get(&i) {
                Some(id) => vec![String::clone(id)],
                None => inline_endpoints.clone(),
            };
            out.push(Declared {
                service: Service {
                    hostname: h.trim_end_matches('.').to_ascii_lowercase(),
                    namespace: meta.namespace.clone(),
                    name: meta.name.clone(),
                    kind: ServiceKind::ServiceEntry { mesh_internal },
                    ports: ports.clone(),
                    addresses: addresses.clone(),
                    visibility: Visibility::from_export_to(&se.export_to, &meta.namespace),
                    endpoints: Vec::new(),
                    resource: resource_ref(r),
                },
                selector: selector.clone(),
                inline_endpoints,
                resource: r,
            });
        }
    }
    out
}

/// A service port, or `None` (reported) for UDP, which is not proxied.
#[allow(clippy::too_many_arguments)] // reason: one call site per kind, all fields named there
fn service_port(
    name: Option<String>,
    port: u16,
    target: TargetPort,
    declared: DeclaredProtocol,
    source: ProtocolSource,
    resource: &Resource,
    field: &str,
    findings: &mut Findings,
) -> Option<ServicePort> {
    let Some(protocol) = declared.carried_as() else {
        findings.report(
            Severity::Info,
            Code::ProtocolNotProxied,
            resource,
            Some(field),
            format!("port {port} is UDP, which the mesh does not proxy; it is left out"),
        );
        return None;
    };
    if declared.is_downgraded() {
        findings.report(
            Severity::Info,
            Code::ProtocolNotProxied,
            resource,
            Some(field),
            format!("port {port} declares {declared}, which skiff carries as opaque TCP"),
        );
    }
    Some(ServicePort {
        name,
        port,
        target,
        declared,
        source,
        protocol,
    })
}

/// Checks a service once its endpoints are known.
pub(super) fn check(registry: &Registry, d: &Declared<'_>, findings: &mut Findings) {
    let service = &d.service;
    let shown = host::display_name(&service.hostname, registry.domain_suffix());
    let r = d.resource;
    if let Some(selector) = &d.selector
        && service.endpoints.is_empty()
    {
        findings.report(
            Severity::Warning,
            Code::ServiceWithoutEndpoints,
            r,
            Some(if service.kind == ServiceKind::Kubernetes {
                "spec.selector"
            } else {
                "spec.workloadSelector"
            }),
            format!(
                "service {shown} selects no workloads: none in namespace {} has labels {}",
                service.namespace,
                super::display_labels(selector)
            ),
        );
        return;
    }
    let workloads = registry.workloads();
    let without_address: Vec<String> = service
        .endpoints
        .iter()
        .map(|&w| &workloads[w])
        .filter(|w| w.address.is_none() && w.selectable())
        .map(Workload::id)
        .collect();
    if !without_address.is_empty() {
        findings.report(
            Severity::Info,
            Code::WorkloadWithoutAddress,
            r,
            None,
            format!(
                "service {shown}: {} selected workload(s) have no address ({}); Pods and \
                 Deployment replicas carry none in local mode, so they are not endpoints: \
                 declare them as WorkloadEntries with an address",
                without_address.len(),
                super::shorten_names(&without_address)
            ),
        );
    }
    for (i, port) in service.ports.iter().enumerate() {
        let TargetPort::Named(name) = &port.target else {
            continue;
        };
        let missing: Vec<String> = service
            .endpoints
            .iter()
            .map(|&w| &workloads[w])
            .filter(|w| w.target_port(port).is_none())
            .map(Workload::id)
            .collect();
        if !missing.is_empty() {
            findings.report(
                Severity::Warning,
                Code::UnresolvedTargetPort,
                r,
                Some(&format!("spec.ports[{i}].targetPort")),
                format!(
                    "target port `{name}` of service {shown} port {} is not a named port of \
                     {}; those workloads are not endpoints of this port",
                    port.port,
                    super::shorten_names(&missing)
                ),
            );
        }
    }
}
