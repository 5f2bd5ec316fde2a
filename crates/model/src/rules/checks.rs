//! Cross-reference checks between routes, services, subsets and gateways: the mistakes
//! that make traffic fail or go somewhere unexpected.

use std::collections::{BTreeMap, HashMap};

use skiff_api::{Kind, Resource, ResourceSet};

use super::{RuleAction, Rules, VirtualServiceInfo};
use crate::config::Protocol;
use crate::diagnostic::{Code, Findings, Severity};
use crate::host;
use crate::protocol::{DeclaredProtocol, ProtocolSource};
use crate::registry::{Labels, Registry, Service};

pub(super) fn run(
    rules: &Rules,
    resources: &ResourceSet,
    registry: &Registry,
    findings: &mut Findings,
) {
    let mut mesh_hosts: HashMap<&str, &VirtualServiceInfo> = HashMap::new();
    for vs in &rules.virtual_services {
        let Some(r) = resources.get(Kind::VirtualService, &vs.namespace, &vs.name) else {
            continue;
        };
        gateways(rules, vs, r, findings);
        destinations(rules, registry, vs, r, findings);
        if vs.mesh {
            for (i, h) in vs.hosts.iter().enumerate() {
                let field = format!("spec.hosts[{i}]");
                if let Some(first) = mesh_hosts.get(h.as_str()) {
                    findings.report_args(
                        Severity::Error,
                        Code::ConflictingVirtualServices,
                        r,
                        Some(&field),
                        format!(
                            "host {h} is also routed by {} for the sidecars; only one \
                             VirtualService per host applies (skiff uses the first by \
                             namespace/name): merge their rules into one",
                            first.resource
                        ),
                        vec![
                            format!(
                                "{}/{},{}/{}",
                                first.namespace, first.name, vs.namespace, vs.name
                            ),
                            h.clone(),
                        ],
                    );
                } else {
                    mesh_hosts.insert(h, vs);
                }
                mesh_host(registry, vs, h, &field, r, findings);
            }
        }
    }
    port_protocols(registry, resources, findings);
}

fn gateways(rules: &Rules, vs: &VirtualServiceInfo, r: &Resource, findings: &mut Findings) {
    for (i, key) in vs.gateways.iter().enumerate() {
        let field = format!("spec.gateways[{i}]");
        let Some(gw) = rules.gateway(key) else {
            findings.report_args(
                Severity::Error,
                Code::UnknownGateway,
                r,
                Some(&field),
                format!("gateway {key} does not exist; no proxy serves these routes for it"),
                vec!["gateway".into(), key.clone()],
            );
            continue;
        };
        let bound = vs.hosts.iter().any(|h| {
            gw.servers
                .iter()
                .flat_map(|s| &s.hosts)
                .any(|sh| sh.admits(&vs.namespace) && host::intersect(h, &sh.host).is_some())
        });
        if !bound {
            findings.report_args(
                Severity::Warning,
                Code::GatewayHostMismatch,
                r,
                Some(&field),
                format!(
                    "none of the hosts {:?} is served by gateway {key} for namespace {}; \
                     its servers allow {:?}",
                    vs.hosts,
                    vs.namespace,
                    gw.servers
                        .iter()
                        .flat_map(|s| &s.hosts)
                        .map(|h| match &h.namespace {
                            Some(ns) => format!("{ns}/{}", h.host),
                            None => h.host.clone(),
                        })
                        .collect::<std::collections::BTreeSet<_>>()
                ),
                vec![
                    vs.hosts.join(","),
                    format!("{}/{}", vs.namespace, vs.name),
                    key.clone(),
                ],
            );
        }
    }
}

fn destinations(
    rules: &Rules,
    registry: &Registry,
    vs: &VirtualServiceInfo,
    r: &Resource,
    findings: &mut Findings,
) {
    for rule in &vs.http {
        let RuleAction::Forward { destinations, .. } = &rule.action else {
            continue;
        };
        let mirrors = rule.mirrors.iter().map(|m| (&m.destination, true));
        for (d, mirror) in destinations.iter().map(|d| (d, false)).chain(mirrors) {
            let Some(service) =
                find_service(registry, &d.host, &vs.namespace).map(|id| &registry.services()[id])
            else {
                // The subset is looked up even so (as Istio's DestinationRuleAnalyzer
                // does): a DestinationRule for the host may say it has no such subset.
                if let Some(subset) = &d.subset
                    && let Some(dr) = rules.destination_rule(
                        &d.host,
                        &vs.namespace,
                        &Labels::new(),
                        &vs.namespace,
                    )
                    && dr.subset(subset).is_none()
                {
                    findings.report_args(
                        Severity::Error,
                        Code::UnknownSubset,
                        r,
                        Some(&format!("{}.subset", d.field)),
                        format!(
                            "subset {subset} of {} is not defined: {} defines no subset named \
                             {subset}; requests routed here fail with 503",
                            d.host, dr.resource
                        ),
                        vec![
                            "host+subset in destinationrule".into(),
                            format!("{}+{subset}", d.host),
                        ],
                    );
                }
                findings.report_args(
                    Severity::Error,
                    Code::UnknownHost,
                    r,
                    Some(&format!("{}.host", d.field)),
                    format!(
                        "destination host {} is not a service of the mesh (no Service or \
                         ServiceEntry declares it); requests routed here fail with 503",
                        d.host
                    ),
                    vec![
                        if mirror { "mirror host" } else { "host" }.into(),
                        d.host.clone(),
                    ],
                );
                continue;
            };
            let shown = host::display_name(&service.hostname, registry.domain_suffix());
            if let Some(subset) = &d.subset {
                let dr = rules.destination_rule(
                    &service.hostname,
                    &vs.namespace,
                    &Labels::new(),
                    &service.namespace,
                );
                if dr.and_then(|dr| dr.subset(subset)).is_none() {
                    let why = match dr {
                        Some(dr) => format!("{} defines no subset named {subset}", dr.resource),
                        None => format!(
                            "no DestinationRule for {shown} is visible from namespace {}",
                            vs.namespace
                        ),
                    };
                    findings.report_args(
                        Severity::Error,
                        Code::UnknownSubset,
                        r,
                        Some(&format!("{}.subset", d.field)),
                        format!("subset {subset} of {shown} is not defined: {why}; requests routed here fail with 503"),
                        vec![
                            "host+subset in destinationrule".into(),
                            format!("{}+{subset}", d.host),
                        ],
                    );
                }
            }
            match d.port {
                Some(port) if !service.ports.iter().any(|p| p.port == port) => findings
                    .report_args(
                        Severity::Error,
                        Code::UnknownPort,
                        r,
                        Some(&format!("{}.port", d.field)),
                        format!(
                            "{shown} has no port {port} (its ports: {:?})",
                            service.ports.iter().map(|p| p.port).collect::<Vec<_>>()
                        ),
                        vec!["host:port".into(), format!("{}:{port}", d.host)],
                    ),
                // Istio's analysis asks for the port whatever the VirtualService is
                // bound to. A sidecar picks the port the call came to, so bound to the
                // mesh the routes still work (a warning); only a gateway cannot pick.
                None if service.ports.len() > 1 => findings.report_args(
                    if vs.mesh {
                        Severity::Warning
                    } else {
                        Severity::Error
                    },
                    Code::AmbiguousPort,
                    r,
                    Some(&d.field),
                    format!(
                        "{shown} has several ports ({:?}); a gateway route must name one with \
                         `port.number`",
                        service.ports.iter().map(|p| p.port).collect::<Vec<_>>()
                    ),
                    vec![
                        d.host.clone(),
                        format!(
                            "{:?}",
                            service.ports.iter().map(|p| p.port).collect::<Vec<_>>()
                        ),
                    ],
                ),
                _ => {}
            }
        }
    }
}

/// The service a destination host names: exactly, or through a wildcard ServiceEntry.
pub(crate) fn find_service(registry: &Registry, hostname: &str, namespace: &str) -> Option<usize> {
    if let Some(id) = registry.lookup(hostname, namespace) {
        return Some(id);
    }
    registry
        .wildcard_services()
        .iter()
        .copied()
        .filter(|&id| {
            let s = &registry.services()[id];
            host::covers(&s.hostname, hostname) && s.visibility.includes(namespace)
        })
        .max_by_key(|&id| registry.services()[id].hostname.len())
}

/// A mesh VirtualService host should be a service, and HTTP routes should land on ports
/// that carry HTTP.
fn mesh_host(
    registry: &Registry,
    vs: &VirtualServiceInfo,
    h: &str,
    field: &str,
    r: &Resource,
    findings: &mut Findings,
) {
    let services: Vec<&Service> = if host::is_wildcard(h) {
        registry
            .services()
            .iter()
            .filter(|s| host::covers(h, &s.hostname))
            .collect()
    } else {
        registry
            .services_by_host(h)
            .iter()
            .map(|&i| &registry.services()[i])
            .collect()
    };
    if services.is_empty() {
        if !vs.gateways.is_empty() {
            // Bound to gateways too: a host that is no service is there for them.
            return;
        }
        findings.report(
            Severity::Warning,
            Code::VirtualServiceHostWithoutService,
            r,
            Some(field),
            format!(
                "host {h} matches no service, so sidecars never route by this VirtualService \
                 for it; a VirtualService host must be the name callers use for a Service or \
                 ServiceEntry"
            ),
        );
        return;
    }
    if vs.http.is_empty() || host::is_wildcard(h) {
        return;
    }
    for s in services {
        let shown = host::display_name(&s.hostname, registry.domain_suffix());
        for p in &s.ports {
            let name = p.name.as_deref().unwrap_or("");
            match p.protocol {
                Protocol::Tcp | Protocol::Tls | Protocol::Https => findings.report(
                    Severity::Warning,
                    Code::HttpRouteOnNonHttpPort,
                    r,
                    Some(field),
                    format!(
                        "port {} of {shown} is {} (port name `{name}`), so the HTTP routes of \
                         this VirtualService do not apply to it",
                        p.port, p.declared
                    ),
                ),
                Protocol::Unspecified if p.source == ProtocolSource::None => findings.report(
                    Severity::Info,
                    Code::PortWithoutProtocol,
                    r,
                    Some(field),
                    format!(
                        "port {} of {shown} {}: its HTTP routes apply only when the proxy \
                         detects HTTP; name it `http-…` (or set appProtocol) to make it explicit",
                        p.port,
                        if name.is_empty() {
                            "has no name".to_string()
                        } else {
                            format!("has no protocol prefix in its name (`{name}`)")
                        }
                    ),
                ),
                _ => {}
            }
        }
    }
}

/// Services that declare different protocol families on one port number.
fn port_protocols(registry: &Registry, resources: &ResourceSet, findings: &mut Findings) {
    let mut by_port: BTreeMap<u16, Vec<(&Service, DeclaredProtocol)>> = BTreeMap::new();
    for s in registry.services() {
        for p in &s.ports {
            if p.declared != DeclaredProtocol::Unspecified {
                by_port.entry(p.port).or_default().push((s, p.declared));
            }
        }
    }
    for (port, users) in by_port {
        let http: Vec<&str> = users
            .iter()
            .filter(|(_, d)| d.carried_as().is_some_and(Protocol::is_http))
            .map(|(s, _)| s.hostname.as_str())
            .collect();
        if http.is_empty() {
            continue;
        }
        for (s, declared) in users
            .iter()
            .filter(|(_, d)| !d.carried_as().is_some_and(Protocol::is_http))
        {
            let kind = if s.kind == crate::registry::ServiceKind::Kubernetes {
                Kind::Service
            } else {
                Kind::ServiceEntry
            };
            let Some(r) = resources.get(kind, &s.namespace, &s.name) else {
                continue;
            };
            findings.report(
                Severity::Warning,
                Code::ProtocolConflict,
                r,
                None,
                format!(
                    "port {port} of {} is {declared}, but {} declare HTTP on the same port; \
                     as in Istio, HTTP wins on a shared port, so opaque traffic to this service \
                     on port {port} may be misread",
                    host::display_name(&s.hostname, registry.domain_suffix()),
                    crate::registry::shorten_names(&http),
                ),
            );
        }
    }
}
