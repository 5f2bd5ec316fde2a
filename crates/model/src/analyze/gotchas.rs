//! skiff's own checks (`SKF…`): the gotchas of running a mesh that Istio's analyzers
//! do not catch, each with the fix.

mod pods;
mod policy;

use std::collections::BTreeSet;

use skiff_api::{Kind, Resource, ResourceSet};

use super::{CodeInfo, Message, codes};
use crate::Mesh;
use crate::diagnostic::{Origin, resource_ref};
use crate::host;
use crate::registry::ServiceKind;
use crate::rules::{DestinationRef, RuleAction};

pub(super) fn run(mesh: &Mesh, resources: &ResourceSet, out: &mut Vec<Message>) {
    policy::strict_mtls_plaintext_clients(mesh, resources, out);
    policy::authorization_baseline(mesh, resources, out);
    unused_subsets(mesh, resources, out);
    gateway_binding(mesh, resources, out);
    cross_namespace(mesh, resources, out);
    faults(mesh, resources, out);
    workloads_without_sidecar(mesh, resources, out);
    pods::run(resources, out);
}

/// A message about `r`, placed at `field` when it was written.
pub(super) fn at(
    info: &CodeInfo,
    r: &Resource,
    field: Option<&str>,
    message: String,
    fix: String,
) -> Message {
    let mut m = Message::new(info, Some(resource_ref(r)), message);
    if let Some(field) = field {
        m.field = Some(field.to_string());
        if let Some(p) = r.origin.fields.lookup(field) {
            let p = p.key.unwrap_or(p.value);
            m.location = Some(Origin {
                file: r.origin.file.display().to_string(),
                line: p.line,
                column: p.column,
            });
        }
    }
    m.fix = Some(fix);
    m
}

pub(super) fn list(items: &BTreeSet<String>) -> String {
    items.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Whether workload `w` runs a gateway (its proxy speaks mutual TLS without a sidecar).
pub(super) fn is_gateway(mesh: &Mesh, w: usize) -> bool {
    mesh.rules().gateways_of(w).next().is_some()
}

/// Every destination (routes and mirrors) of every VirtualService.
fn all_destinations(mesh: &Mesh) -> Vec<(&crate::rules::VirtualServiceInfo, &DestinationRef)> {
    let mut out = Vec::new();
    for vs in mesh.rules().virtual_services() {
        for rule in &vs.http {
            if let RuleAction::Forward { destinations, .. } = &rule.action {
                out.extend(destinations.iter().map(|d| (vs, d)));
            }
            out.extend(rule.mirrors.iter().map(|m| (vs, &m.destination)));
        }
        for rule in vs.tcp.iter().chain(&vs.tls) {
            out.extend(rule.destinations.iter().map(|d| (vs, d)));
        }
    }
    out
}

/// SKF0005: DestinationRule subsets that no route uses.
fn unused_subsets(mesh: &Mesh, resources: &ResourceSet, out: &mut Vec<Message>) {
    let used: Vec<(&str, &str)> = all_destinations(mesh)
        .into_iter()
        .filter_map(|(_, d)| d.subset.as_deref().map(|s| (d.host.as_str(), s)))
        .collect();
    for dr in mesh.rules().destination_rules() {
        for subset in &dr.subsets {
            let is_used = used
                .iter()
                .any(|&(h, s)| s == subset.name && (h == dr.host || host::covers(&dr.host, h)));
            if is_used {
                continue;
            }
            let Some(r) = resources.get(
                Kind::DestinationRule,
                &dr.namespace,
                &subset.defined_in.name,
            ) else {
                continue;
            };
            out.push(at(
                &codes::UNUSED_DESTINATION_RULE_SUBSET,
                r,
                Some(&format!("spec.subsets[{}].name", subset.index)),
                format!(
                    "subset {} of {} is used by no VirtualService route: a subset only takes \
                     traffic that a route sends to it",
                    subset.name,
                    host::display_name(&dr.host, mesh.registry().domain_suffix())
                ),
                format!(
                    "route to it from a VirtualService (`destination: {{host: {}, subset: {}}}`), \
                     or remove it",
                    host::display_name(&dr.host, mesh.registry().domain_suffix()),
                    subset.name
                ),
            ));
        }
    }
}

/// SKF0006: a Gateway serves a host that a VirtualService routes, but the
/// VirtualService does not name the Gateway; or a gateway-only VirtualService splits
/// traffic to a mesh service that sidecars route without it (no `mesh`).
fn gateway_binding(mesh: &Mesh, resources: &ResourceSet, out: &mut Vec<Message>) {
    let rules = mesh.rules();
    let vss = rules.virtual_services();
    for gw in rules.gateways() {
        for h in gw.servers.iter().flat_map(|s| &s.hosts) {
            if host::is_wildcard(&h.host) {
                continue;
            }
            let bound = vss.iter().any(|vs| {
                vs.gateways.contains(&gw.key)
                    && vs
                        .hosts
                        .iter()
                        .any(|vh| host::intersect(vh, &h.host).is_some())
            });
            if bound {
                continue;
            }
            for vs in vss.iter().filter(|vs| !vs.gateways.contains(&gw.key)) {
                let Some(vh) = vs
                    .hosts
                    .iter()
                    .filter(|vh| !host::is_wildcard(vh))
                    .find(|vh| host::intersect(vh, &h.host).is_some())
                else {
                    continue;
                };
                if !h.admits(&vs.namespace) {
                    continue;
                }
                let Some(r) = resources.get(Kind::VirtualService, &vs.namespace, &vs.name) else {
                    continue;
                };
                out.push(at(
                    &codes::GATEWAY_NOT_BOUND,
                    r,
                    Some("spec.hosts"),
                    format!(
                        "gateway {} serves host {} and this VirtualService routes {vh}, but its \
                         `gateways` does not name {}: the gateway answers 404 (NR) for it",
                        gw.key, h.host, gw.key
                    ),
                    format!(
                        "add `{}` to spec.gateways (and keep `mesh` there if sidecars should \
                         use these rules too)",
                        gw.key
                    ),
                ));
            }
        }
    }
    for vs in vss.iter().filter(|vs| !vs.mesh && !vs.gateways.is_empty()) {
        let splits = vs.http.iter().any(|rule| match &rule.action {
            RuleAction::Forward { destinations, .. } => {
                destinations.len() > 1 || destinations.iter().any(|d| d.subset.is_some())
            }
            _ => false,
        });
        if !splits {
            continue;
        }
        for h in &vs.hosts {
            if mesh.registry().services_by_host(h).is_empty()
                || rules.mesh_virtual_service(h, &vs.namespace).is_some()
            {
                continue;
            }
            let Some(r) = resources.get(Kind::VirtualService, &vs.namespace, &vs.name) else {
                continue;
            };
            out.push(at(
                &codes::GATEWAY_NOT_BOUND,
                r,
                Some("spec.gateways"),
                format!(
                    "{h} is a service of the mesh, but this VirtualService's `gateways` lacks \
                     `mesh`: its subsets and weights apply at the gateways only, and sidecars \
                     calling {h} spread requests over every endpoint"
                ),
                "add `mesh` to spec.gateways if calls from inside the mesh should follow \
                 these rules"
                    .to_string(),
            ));
        }
    }
}

/// The Kubernetes Services named `short` outside `namespace`, as `name.namespace`.
fn elsewhere(mesh: &Mesh, short: &str, namespace: &str) -> BTreeSet<String> {
    mesh.registry()
        .services()
        .iter()
        .filter(|s| {
            s.kind == ServiceKind::Kubernetes && s.name == short && s.namespace != namespace
        })
        .map(|s| format!("{}.{}", s.name, s.namespace))
        .collect()
}

/// A host as a short Kubernetes name of `namespace` would resolve it.
fn short_name<'h>(h: &'h str, namespace: &str, suffix: &str) -> Option<&'h str> {
    h.strip_suffix(&format!(".{namespace}.svc.{suffix}"))
        .filter(|s| !s.contains('.'))
}

/// SKF0008: a host written as a short name resolves in the resource's own namespace,
/// where no such Service is, while a Service of that name lives in another namespace.
fn cross_namespace(mesh: &Mesh, resources: &ResourceSet, out: &mut Vec<Message>) {
    let registry = mesh.registry();
    let suffix = registry.domain_suffix().to_string();
    let mut seen = BTreeSet::new();
    for (vs, d) in all_destinations(mesh) {
        if !registry.services_by_host(&d.host).is_empty() {
            continue;
        }
        let Some(short) = short_name(&d.host, &vs.namespace, &suffix) else {
            continue;
        };
        let others = elsewhere(mesh, short, &vs.namespace);
        if others.is_empty() || !seen.insert((vs.resource.clone(), d.field.clone())) {
            continue;
        }
        let Some(r) = resources.get(Kind::VirtualService, &vs.namespace, &vs.name) else {
            continue;
        };
        out.push(at(
            &codes::CROSS_NAMESPACE_REFERENCE,
            r,
            Some(&format!("{}.host", d.field)),
            format!(
                "host {short} means {} here (the VirtualService's namespace {}), where there \
                 is no such Service; a Service {short} exists in {}",
                d.host,
                vs.namespace,
                list(&others)
            ),
            format!(
                "write the host with its namespace, e.g. `{}.svc.{suffix}`",
                others.iter().next().map_or("", String::as_str)
            ),
        ));
    }
    for dr in mesh.rules().destination_rules() {
        if !registry.services_by_host(&dr.host).is_empty() {
            continue;
        }
        let Some(short) = short_name(&dr.host, &dr.namespace, &suffix) else {
            continue;
        };
        let others = elsewhere(mesh, short, &dr.namespace);
        if others.is_empty() {
            continue;
        }
        let Some(r) = resources.get(Kind::DestinationRule, &dr.namespace, &dr.resource.name) else {
            continue;
        };
        out.push(at(
            &codes::CROSS_NAMESPACE_REFERENCE,
            r,
            Some("spec.host"),
            format!(
                "host {short} means {} here (the DestinationRule's namespace {}), where there \
                 is no such Service, so this rule applies to nothing; a Service {short} exists \
                 in {}",
                dr.host,
                dr.namespace,
                list(&others)
            ),
            format!(
                "write the host with its namespace, e.g. `{}.svc.{suffix}`",
                others.iter().next().map_or("", String::as_str)
            ),
        ));
    }
}

/// SKF0009: fault injection in a VirtualService (a test left in place bites).
fn faults(mesh: &Mesh, resources: &ResourceSet, out: &mut Vec<Message>) {
    for vs in mesh.rules().virtual_services() {
        for rule in vs.http.iter().filter(|r| r.fault.is_some()) {
            let Some(r) = resources.get(Kind::VirtualService, &vs.namespace, &vs.name) else {
                continue;
            };
            let fault = r
                .origin
                .fields
                .get(&format!("{}.fault.abort", rule.field))
                .map(|_| "aborts")
                .into_iter()
                .chain(
                    r.origin
                        .fields
                        .get(&format!("{}.fault.delay", rule.field))
                        .map(|_| "delays"),
                )
                .collect::<Vec<_>>()
                .join(" and ");
            out.push(at(
                &codes::FAULT_INJECTION_IN_PLACE,
                r,
                Some(&format!("{}.fault", rule.field)),
                format!(
                    "rule {} {} requests on purpose (fault injection): callers see these \
                     failures for as long as it stays",
                    if r.origin
                        .fields
                        .get(&format!("{}.name", rule.field))
                        .is_some()
                    {
                        format!("{:?}", rule.name)
                    } else {
                        rule.field.clone()
                    },
                    if fault.is_empty() { "fails" } else { &fault }
                ),
                "remove `fault` when the test is over (or keep fault rules in a VirtualService \
                 of their own that you delete to stop them)"
                    .to_string(),
            ));
        }
    }
}

/// SKF0010: a workload without a sidecar in a namespace of the mesh (labelled for
/// injection, or where other workloads have sidecars).
fn workloads_without_sidecar(mesh: &Mesh, resources: &ResourceSet, out: &mut Vec<Message>) {
    let registry = mesh.registry();
    let labelled: BTreeSet<&str> = resources
        .namespaces()
        .filter(|n| {
            let l = &n.metadata().labels;
            l.get("istio-injection").is_some_and(|v| v == "enabled")
                || l.contains_key("istio.io/rev")
        })
        .map(|n| n.name())
        .collect();
    let meshed: BTreeSet<&str> = registry
        .workloads()
        .iter()
        .filter(|w| w.sidecar)
        .map(|w| w.namespace.as_str())
        .collect();
    for (i, w) in registry.workloads().iter().enumerate() {
        // Endpoints written in a ServiceEntry are not workloads one injects.
        if w.sidecar || is_gateway(mesh, i) || w.resource.kind == "ServiceEntry" {
            continue;
        }
        let ns = w.namespace.as_str();
        if !labelled.contains(ns) && !meshed.contains(ns) {
            continue;
        }
        let Some(r) = resources.get(
            Kind::ALL
                .into_iter()
                .find(|k| k.as_str() == w.resource.kind)
                .unwrap_or(Kind::WorkloadEntry),
            &w.namespace,
            &w.resource.name,
        ) else {
            continue;
        };
        let why = if labelled.contains(ns) {
            format!("namespace {ns} is labelled for sidecar injection")
        } else {
            format!("the other workloads of namespace {ns} have sidecars")
        };
        out.push(at(
            &codes::WORKLOAD_WITHOUT_SIDECAR,
            r,
            Some("metadata"),
            format!(
                "{} runs without a sidecar although {why}: it gets no mutual TLS, routing, \
                 retries or telemetry, and STRICT workloads refuse its calls",
                w.id()
            ),
            "remove the `sidecar.istio.io/inject: \"false\"` annotation or label (on a Pod \
             created before injection was enabled: restart it)"
                .to_string(),
        ));
    }
}
