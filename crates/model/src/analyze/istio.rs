//! Istio analyzers that need no finding of the mesh model: port naming
//! (`service.PortNameAnalyzer`).

use std::collections::{BTreeMap, BTreeSet};

use skiff_api::kube::ServiceType;
use skiff_api::types::IntOrString;
use skiff_api::{Resource, ResourceSet};

use super::{Message, codes};
use crate::Mesh;
use crate::diagnostic::{Origin, resource_ref};
use crate::protocol::{DeclaredProtocol, ProtocolSource, of_service_port};

pub(super) fn run(mesh: &Mesh, resources: &ResourceSet, out: &mut Vec<Message>) {
    port_names(resources, out);
    conflicting_mesh_hosts(mesh, resources, out);
    authorization_policies(mesh, resources, out);
    gateway_ports(mesh, resources, out);
}

/// The ports (and target ports) of the Service of the ingress gateway every Istio
/// installation has (`istio: ingressgateway` in istio-system): istioctl analyze's
/// defaults (80, 443, 31400, 15443) and those of today's charts, where the gateway runs
/// unprivileged (80 → 8080, 443 → 8443, status 15021).
const DEFAULT_INGRESS_PORTS: [u32; 7] = [80, 443, 8080, 8443, 15021, 15443, 31400];

/// IST0162 (`gateway.IngressGatewayPortAnalyzer`): a Gateway server port that no
/// Service of the gateway's workloads exposes (as a target port or a port).
fn gateway_ports(mesh: &Mesh, resources: &ResourceSet, out: &mut Vec<Message>) {
    let workloads = mesh.registry().workloads();
    for gw in resources.gateways() {
        let selector = &gw.selector;
        if selector.is_empty() {
            continue;
        }
        let selected: Vec<_> = workloads
            .iter()
            .filter(|w| crate::registry::labels_match(selector, &w.labels))
            .collect();
        let mut ports = BTreeSet::new();
        if selected.is_empty() {
            let default_ingress = selector
                .iter()
                .all(|(k, v)| k == "istio" && v == "ingressgateway");
            if !default_ingress {
                continue; // IST0101: no workload (a finding of the model).
            }
            ports.extend(DEFAULT_INGRESS_PORTS);
        }
        for w in &selected {
            for svc in resources
                .services()
                .filter(|s| s.namespace() == w.namespace)
            {
                let Some(sel) = &svc.selector else { continue };
                if sel.is_empty() || !crate::registry::labels_match(sel, &w.labels) {
                    continue;
                }
                for p in &svc.ports {
                    let tcp = p
                        .protocol
                        .as_deref()
                        .is_none_or(|t| t.eq_ignore_ascii_case("TCP"));
                    if !tcp {
                        continue;
                    }
                    ports.insert(u32::try_from(p.port).unwrap_or(0));
                    if let Some(IntOrString::Int(t)) = p.target_port {
                        ports.insert(u32::try_from(t).unwrap_or(0));
                    }
                }
            }
        }
        let labels = crate::registry::display_labels(selector);
        for server in &gw.servers {
            let number = server.port.number;
            if ports.contains(&number) {
                continue;
            }
            let info = &codes::GATEWAY_PORT_NOT_DEFINED_ON_SERVICE;
            let mut m = Message::new(
                info,
                Some(resource_ref(gw.resource)),
                codes::fill(
                    info.template.unwrap_or_default(),
                    &[number.to_string(), labels.clone()],
                ),
            );
            m.fix = Some(format!(
                "add port {number} to the Service of the gateway workloads ({labels}), or \
                 listen on one of its ports ({})",
                ports
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            m.analyzer = Some("gateway.IngressGatewayPortAnalyzer");
            out.push(m);
        }
    }
}

/// `authz.AuthorizationPoliciesAnalyzer`: IST0127 for a policy that selects no
/// workload (a namespace-wide one in a namespace without workloads), IST0101 for a
/// source namespace that does not exist.
fn authorization_policies(mesh: &Mesh, resources: &ResourceSet, out: &mut Vec<Message>) {
    const ANALYZER: &str = "authz.AuthorizationPoliciesAnalyzer";
    let registry = mesh.registry();
    let root = &mesh.options().root_namespace;
    let known: BTreeSet<&str> = resources
        .iter()
        .map(|r| {
            if r.kind() == skiff_api::Kind::Namespace {
                r.name()
            } else {
                r.namespace()
            }
        })
        .collect();
    for ap in resources.authorization_policies() {
        let ns = ap.namespace();
        let selector = ap.selector.as_ref().map(|s| &s.match_labels);
        let matches = |w: &crate::registry::Workload| {
            selector.is_none_or(|s| crate::registry::labels_match(s, &w.labels))
        };
        let none = if ns == root {
            selector.is_some() && !registry.workloads().iter().any(matches)
        } else {
            !registry
                .workloads()
                .iter()
                .any(|w| w.namespace == ns && matches(w))
        };
        if none {
            let labels = selector
                .map(crate::registry::display_labels)
                .unwrap_or_default();
            let info = &codes::NO_MATCHING_WORKLOADS_FOUND;
            let mut m = Message::new(
                info,
                Some(resource_ref(ap.resource)),
                codes::fill(
                    info.template.unwrap_or_default(),
                    std::slice::from_ref(&labels),
                ),
            );
            m.fix = Some(if labels.is_empty() {
                format!("namespace {ns} has no workloads, so this policy applies to nothing")
            } else {
                format!(
                    "no workload{} has labels {labels}, so this policy applies to nothing; \
                     check the selector against the workloads' labels",
                    if ns == root {
                        String::new()
                    } else {
                        format!(" in namespace {ns}")
                    }
                )
            });
            m.analyzer = Some(ANALYZER);
            out.push(m);
        }
        for (i, rule) in ap.rules.iter().enumerate() {
            for (j, from) in rule.from.iter().enumerate() {
                let Some(src) = &from.source else { continue };
                let lists = [
                    ("namespaces", &src.namespaces),
                    ("notNamespaces", &src.not_namespaces),
                ];
                for (field, list) in lists {
                    for (k, exp) in list.iter().enumerate() {
                        if known.iter().any(|n| namespace_match(n, exp)) {
                            continue;
                        }
                        let info = &codes::REFERENCED_RESOURCE_NOT_FOUND;
                        let path = format!("spec.rules[{i}].from[{j}].source.{field}[{k}]");
                        let mut m = Message::new(
                            info,
                            Some(resource_ref(ap.resource)),
                            codes::fill(
                                info.template.unwrap_or_default(),
                                &["namespace".into(), exp.clone()],
                            ),
                        );
                        if let Some(p) = ap.resource.origin.fields.lookup(&path) {
                            m.location = Some(Origin {
                                file: ap.resource.origin.file.display().to_string(),
                                line: p.value.line,
                                column: p.value.column,
                            });
                        }
                        m.field = Some(path);
                        m.fix = Some(format!(
                            "no resource of the configuration is in namespace {exp}: check its \
                             spelling (the rule never matches a caller from it)"
                        ));
                        m.analyzer = Some(ANALYZER);
                        out.push(m);
                    }
                }
            }
        }
    }
}

/// Istio's `namespaceMatch`: `*`, a `*suffix`, a `prefix*`, or the name (any case).
fn namespace_match(ns: &str, exp: &str) -> bool {
    if exp == "*" {
        return true;
    }
    if let Some(suffix) = exp.strip_prefix('*') {
        return ns.ends_with(suffix);
    }
    if let Some(prefix) = exp.strip_suffix('*') {
        return ns.starts_with(prefix);
    }
    ns.eq_ignore_ascii_case(exp)
}

/// IST0109 (`virtualservice.ConflictingMeshGatewayHostsAnalyzer`): VirtualServices
/// bound to the sidecars (`mesh`) that define the same host for the same namespaces
/// (by `exportTo`). Every VirtualService of a conflict gets the message.
fn conflicting_mesh_hosts(mesh: &Mesh, resources: &ResourceSet, out: &mut Vec<Message>) {
    let suffix = mesh.registry().domain_suffix();
    // (scope, fqdn) → VirtualServices, in resource order.
    let mut hosts: BTreeMap<(String, String), Vec<&Resource>> = BTreeMap::new();
    for vs in resources.virtual_services() {
        if !(vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh")) {
            continue;
        }
        let ns = vs.namespace();
        let scopes: BTreeSet<String> =
            if vs.export_to.is_empty() || vs.export_to.iter().any(|e| e == "*") {
                BTreeSet::from(["*".to_string()])
            } else {
                vs.export_to
                    .iter()
                    .map(|e| if e == "." { ns.to_string() } else { e.clone() })
                    .collect()
            };
        for scope in scopes {
            for h in &vs.hosts {
                let fqdn = if h.starts_with('*') || h.contains('.') {
                    h.clone()
                } else {
                    format!("{h}.{ns}.svc.{suffix}")
                };
                hosts
                    .entry((scope.clone(), fqdn))
                    .or_default()
                    .push(vs.resource);
            }
        }
    }
    let mut reported = BTreeSet::new();
    for ((scope, fqdn), list) in &hosts {
        let mut list = list.clone();
        if scope != "*" {
            for ((s, other), more) in &hosts {
                if s == "*" && (other == fqdn || crate::host::covers(other, fqdn)) {
                    list.extend(more.iter().copied());
                }
            }
        }
        if list.len() < 2 {
            continue;
        }
        let mut names: Vec<String> = list
            .iter()
            .map(|r| format!("{}/{}", r.namespace(), r.name()))
            .collect();
        names.sort();
        let names = names.join(",");
        for r in list {
            if !reported.insert((r.namespace().to_string(), r.name().to_string())) {
                continue;
            }
            let info = &codes::CONFLICTING_MESH_GATEWAY_VS_HOSTS;
            let message = codes::fill(
                info.template.unwrap_or_default(),
                &[names.clone(), format!("{scope}/{fqdn}")],
            );
            let mut m = Message::new(info, Some(resource_ref(r)), message);
            m.fix = Some(format!(
                "sidecars use one VirtualService per host ({fqdn}); merge the rules of {names}                  into one VirtualService"
            ));
            m.analyzer = Some("virtualservice.ConflictingMeshGatewayHostsAnalyzer");
            out.push(m);
        }
    }
}

/// Namespaces istioctl analyze leaves out (Kubernetes' own).
const SYSTEM_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
];

/// Services of gateways Istio deploys for Gateway API resources (not written by users).
const MANAGED_GATEWAY_CONTROLLERS: [&str; 3] = [
    "istio.io-gateway-controller",
    "istio.io-mesh-controller",
    "istio.io-eastwest-controller",
];

/// IST0118: a Service port whose protocol Istio cannot tell from its name or
/// `appProtocol` (IST0150 for an ExternalName Service). Services of Istio's own
/// control plane (labelled `istio`, or `release: istio`) are left out, as in Istio.
fn port_names(resources: &ResourceSet, out: &mut Vec<Message>) {
    for svc in resources.services() {
        let labels = &svc.metadata().labels;
        if labels.contains_key("istio")
            || labels.get("release").is_some_and(|v| v == "istio")
            || labels
                .get("gateway.istio.io/managed")
                .is_some_and(|v| MANAGED_GATEWAY_CONTROLLERS.contains(&v.as_str()))
            || SYSTEM_NAMESPACES.contains(&svc.namespace())
        {
            continue;
        }
        let external = svc.r#type == Some(ServiceType::ExternalName);
        for (i, p) in svc.ports.iter().enumerate() {
            let number = u16::try_from(p.port).unwrap_or(0);
            let (declared, source) = of_service_port(
                number,
                p.name.as_deref(),
                p.app_protocol.as_deref(),
                p.protocol.as_deref(),
            );
            let unsupported = declared == DeclaredProtocol::Unspecified
                || source == ProtocolSource::WellKnownPort;
            let name = p.name.clone().unwrap_or_default();
            if !(unsupported || (external && name == "tcp")) {
                continue;
            }
            let target = match &p.target_port {
                Some(IntOrString::Int(n)) => n.to_string(),
                Some(IntOrString::String(s)) => s.clone(),
                None => p.port.to_string(),
            };
            let field = format!("spec.ports[{i}]");
            let info = if external {
                &codes::EXTERNAL_NAME_INVALID_PORT_NAME
            } else {
                &codes::PORT_NAME_NOT_UNDER_NAMING_CONVENTION
            };
            let message = codes::fill(
                info.template.unwrap_or_default(),
                &[name.clone(), p.port.to_string(), target],
            );
            let fix = format!(
                "without a protocol prefix (http-, http2-, grpc-, tcp-, tls-, https-, mongo-, \
                 redis-, mysql-) or `appProtocol`, the proxy sniffs the protocol or treats the \
                 port as TCP: no HTTP routing, retries or L7 metrics for it; name it e.g. \
                 `http-{}`",
                if name.is_empty() {
                    "web"
                } else {
                    name.as_str()
                }
            );
            let location = svc.resource.origin.fields.lookup(&field).map(|at| Origin {
                file: svc.resource.origin.file.display().to_string(),
                line: at.key.unwrap_or(at.value).line,
                column: at.key.unwrap_or(at.value).column,
            });
            let mut m = Message::new(info, Some(resource_ref(svc.resource)), message);
            m.field = Some(field);
            if location.is_some() {
                m.location = location;
            }
            m.fix = Some(fix);
            m.analyzer = Some("service.PortNameAnalyzer");
            out.push(m);
        }
    }
}
