//! Istio's analyzers of workloads and the gateways that select them: conflicting
//! Gateways (`gateway.ConflictingGatewayAnalyzer`), sidecar injection
//! (`injection.Analyzer`) and the Services of a Deployment
//! (`deployment.ServiceAssociationAnalyzer`).

use std::collections::{BTreeMap, BTreeSet};

use skiff_api::types::IntOrString;

use skiff_api::ResourceSet;
use skiff_api::meta::ObjectMeta;

use super::{Message, codes};
use crate::Mesh;
use crate::diagnostic::resource_ref;
use crate::registry::{Labels, labels_match};

pub(super) fn run(mesh: &Mesh, resources: &ResourceSet, out: &mut Vec<Message>) {
    conflicting_gateways(mesh, resources, out);
    injection(resources, out);
    deployment_services(resources, out);
    jwt_claim_routes(mesh, resources, out);
}

/// Whether a header name of a match is a JWT claim (`@request.auth.claims.NAME` or
/// `@request.auth.claims[NAME]…`), which only a RequestAuthentication makes available.
fn is_claim_key(key: &str) -> bool {
    key.strip_prefix("@request.auth.claims")
        .is_some_and(|rest| (rest.starts_with('.') && rest.len() > 1) || rest.starts_with('['))
}

/// IST0149 (`virtualservice.JWTClaimRouteAnalyzer`): a VirtualService bound to a Gateway
/// routes by a JWT claim, while a workload of that Gateway has no RequestAuthentication
/// (of its namespace or the root namespace) to validate the token: the claim is never
/// there and the rule never matches.
fn jwt_claim_routes(mesh: &Mesh, resources: &ResourceSet, out: &mut Vec<Message>) {
    let root = mesh.options().root_namespace.as_str();
    for vs in resources.virtual_services() {
        let key = vs.http.iter().flat_map(|h| &h.r#match).find_map(|m| {
            m.headers
                .keys()
                .chain(m.without_headers.keys())
                .find(|k| is_claim_key(k))
        });
        let Some(key) = key else { continue };
        for gw_name in &vs.gateways {
            if gw_name == "mesh" {
                continue;
            }
            let full = if gw_name.contains('/') {
                gw_name.clone()
            } else {
                format!("{}/{gw_name}", vs.namespace())
            };
            let Some(gw) = resources
                .gateways()
                .find(|g| format!("{}/{}", g.namespace(), g.name()) == full)
            else {
                continue; // IST0101 says the gateway does not exist.
            };
            if gw.selector.is_empty() {
                continue;
            }
            let mut selected: Vec<(&str, &str, Labels)> = mesh
                .registry()
                .workloads()
                .iter()
                .filter(|w| labels_match(&gw.selector, &w.labels))
                .map(|w| (w.name.as_str(), w.namespace.as_str(), w.labels.clone()))
                .collect();
            // The ingress gateway every installation has (istioctl analyze assumes it
            // too; `skiff up` runs it built in).
            let default_ingress = gw.selector.len() == 1
                && gw
                    .selector
                    .get("istio")
                    .is_some_and(|v| v == "ingressgateway");
            if selected.is_empty() && default_ingress {
                selected.push(("istio-ingressgateway", root, gw.selector.clone()));
            }
            for (name, namespace, labels) in selected {
                let authenticated = resources.request_authentications().any(|ra| {
                    (ra.namespace() == root || ra.namespace() == namespace)
                        && ra
                            .selector
                            .as_ref()
                            .is_none_or(|s| labels_match(&s.match_labels, &labels))
                });
                if authenticated {
                    continue;
                }
                let info = &codes::JWT_CLAIM_ROUTING_WITHOUT_REQUEST_AUTHN;
                let mut m = Message::new(
                    info,
                    Some(resource_ref(vs.resource)),
                    codes::fill(
                        info.template.unwrap_or_default(),
                        &[key.clone(), full.clone(), name.to_string()],
                    ),
                );
                m.fix = Some(format!(
                    "add a RequestAuthentication selecting the gateway workload {} (in \
                     namespace {} or {root}) with the issuer of the token",
                    name, namespace
                ));
                m.analyzer = Some("virtualservice.JWTClaimRouteAnalyzer");
                out.push(m);
            }
        }
    }
}

/// Whether Istio's analyzers take a Deployment to be in the mesh: an `istio-proxy`
/// container, else the template's `sidecar.istio.io/inject` (label, then annotation),
/// else its Namespace's `istio-injection=enabled` (when the Namespace is given).
fn deployment_in_mesh(
    resources: &ResourceSet,
    d: &skiff_api::Entry<'_, skiff_api::kube::DeploymentSpec>,
) -> bool {
    let t = &d.spec.template;
    if t.spec.containers.iter().any(|c| c.name == PROXY_CONTAINER) {
        return true;
    }
    if let Some(v) = t
        .metadata
        .labels
        .get(INJECT)
        .or_else(|| t.metadata.annotations.get(INJECT))
    {
        return v == "true";
    }
    resources
        .namespaces()
        .find(|n| n.name() == d.namespace())
        .is_some_and(|n| {
            n.metadata()
                .labels
                .get(INJECTION_LABEL)
                .is_some_and(|v| v == "enabled")
        })
}

/// `%v` of a Go slice: `[a b]`.
fn go_list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    format!("[{}]", v.join(" "))
}

/// IST0116: the Services that select a Deployment's pods use one port number with
/// different (Kubernetes) protocols; IST0137: they send one target port different
/// service ports. Both confuse the sidecar, which keys its inbound listeners by port.
fn deployment_services(resources: &ResourceSet, out: &mut Vec<Message>) {
    const ANALYZER: &str = "deployment.ServiceAssociationAnalyzer";
    for d in resources.deployments() {
        if !deployment_in_mesh(resources, &d) {
            continue;
        }
        let labels = &d.spec.template.metadata.labels;
        let services: Vec<_> = resources
            .services()
            .filter(|s| s.namespace() == d.namespace())
            .filter(|s| {
                s.selector
                    .as_ref()
                    .is_some_and(|sel| !sel.is_empty() && labels_match(sel, labels))
            })
            .collect();
        // port → protocol → services; target port → port → service.
        let mut protocols: BTreeMap<i32, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        let mut targets: BTreeMap<String, BTreeMap<i32, String>> = BTreeMap::new();
        for s in &services {
            let name = format!("{}/{}", s.namespace(), s.name());
            for p in &s.ports {
                let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".to_string());
                protocols
                    .entry(p.port)
                    .or_default()
                    .entry(protocol)
                    .or_default()
                    .push(name.clone());
                let target = match &p.target_port {
                    Some(IntOrString::Int(0)) | None => p.port.to_string(),
                    Some(IntOrString::Int(n)) => n.to_string(),
                    Some(IntOrString::String(s)) if s.is_empty() => p.port.to_string(),
                    Some(IntOrString::String(s)) => s.clone(),
                };
                targets
                    .entry(target)
                    .or_default()
                    .insert(p.port, name.clone());
            }
        }
        let mut report = |info: &'static codes::CodeInfo, args: Vec<String>, fix: String| {
            let mut m = Message::new(
                info,
                Some(resource_ref(d.resource)),
                codes::fill(info.template.unwrap_or_default(), &args),
            );
            m.fix = Some(fix);
            m.analyzer = Some(ANALYZER);
            out.push(m);
        };
        for (port, by_protocol) in &protocols {
            if by_protocol.len() < 2 {
                continue;
            }
            let mut names: Vec<&String> = by_protocol.values().flatten().collect();
            names.sort();
            report(
                &codes::DEPLOYMENT_ASSOCIATED_TO_MULTIPLE_SERVICES,
                vec![d.name().to_string(), port.to_string(), go_list(&names)],
                format!(
                    "the Services {} give port {port} the protocols {}: use one protocol for                      the port in every Service that selects these pods",
                    go_list(&names),
                    go_list(by_protocol.keys())
                ),
            );
        }
        for (target, by_port) in &targets {
            if by_port.len() < 2 {
                continue;
            }
            let mut names: Vec<&String> = by_port.values().collect();
            names.sort();
            report(
                &codes::DEPLOYMENT_CONFLICTING_PORTS,
                vec![
                    d.name().to_string(),
                    go_list(&names),
                    target.clone(),
                    go_list(by_port.keys()),
                ],
                format!(
                    "Services selecting the same pods must map target port {target} from one                      service port: make the ports of {} agree",
                    go_list(&names)
                ),
            );
        }
    }
}

/// A selector the way Kubernetes prints one (`k=v,k2=v2`, keys sorted): Istio compares
/// Gateway selectors by this text.
fn selector_text(selector: &Labels) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// IST0145: two Gateways whose selectors pick the same gateway workloads (the same
/// selector, or one a part of the other with a workload matching both) listen on one
/// port for one host with the same `bind`. The gateway proxy takes one of them.
fn conflicting_gateways(mesh: &Mesh, resources: &ResourceSet, out: &mut Vec<Message>) {
    let workloads = mesh.registry().workloads();
    let gateways: Vec<_> = resources.gateways().collect();
    let key = |g: &skiff_api::Entry<'_, skiff_api::networking::Gateway>| {
        format!("{}/{}", g.namespace(), g.name())
    };
    let same_workloads = |a: &Labels, b: &Labels| {
        let (ta, tb) = (selector_text(a), selector_text(b));
        if ta == tb {
            return true;
        }
        (ta.contains(&tb) || tb.contains(&ta))
            && workloads
                .iter()
                .any(|w| labels_match(a, &w.labels) && labels_match(b, &w.labels))
    };
    for g in &gateways {
        let selector = selector_text(&g.selector);
        for server in &g.servers {
            let bind = server.bind.as_deref().unwrap_or("");
            let mut with: BTreeSet<String> = BTreeSet::new();
            for other in &gateways {
                if key(other) == key(g) || !same_workloads(&g.selector, &other.selector) {
                    continue;
                }
                let conflict = other
                    .servers
                    .iter()
                    .filter(|s| s.port.number == server.port.number)
                    .any(|s| {
                        s.bind.as_deref().unwrap_or("") == bind
                            && s.hosts.iter().any(|h| server.hosts.contains(h))
                    });
                if conflict {
                    with.insert(key(other));
                }
            }
            if with.is_empty() {
                continue;
            }
            let info = &codes::CONFLICTING_GATEWAYS;
            let names = with.iter().cloned().collect::<Vec<_>>().join(",");
            let mut m = Message::new(
                info,
                Some(resource_ref(g.resource)),
                codes::fill(
                    info.template.unwrap_or_default(),
                    &[
                        names.clone(),
                        selector.clone(),
                        server.port.number.to_string(),
                        server.hosts.join(","),
                    ],
                ),
            );
            m.fix = Some(format!(
                "the gateway workloads ({selector}) take one server per host and port: \
                 merge the servers of {} and {names} for port {} into one Gateway, or \
                 serve different hosts",
                key(g),
                server.port.number
            ));
            m.analyzer = Some("gateway.ConflictingGatewayAnalyzer");
            out.push(m);
        }
    }
}

const INJECTION_LABEL: &str = "istio-injection";
const REVISION_LABEL: &str = "istio.io/rev";
const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";
const INJECT: &str = "sidecar.istio.io/inject";
/// The name of the container Istio's injector adds.
const PROXY_CONTAINER: &str = "istio-proxy";

/// Whether the pod turns injection off (`sidecar.istio.io/inject: "false"`; the label
/// wins over the annotation).
fn injection_off(meta: &ObjectMeta) -> bool {
    meta.labels
        .get(INJECT)
        .or_else(|| meta.annotations.get(INJECT))
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
}

/// `injection.Analyzer`: IST0123 for a namespace with more than one kind of injection
/// label, IST0102 for a namespace without any (and not ambient), IST0103 for a Pod of an
/// injected namespace that runs without the proxy.
///
/// skiff runs a sidecar beside every workload it is given, so a Pod written without an
/// `istio-proxy` container is normal input. IST0103 is given only when the files are
/// what a cluster stored (some Pod carries the injected `istio-proxy` container): then
/// a Pod without one really runs without its proxy.
fn injection(resources: &ResourceSet, out: &mut Vec<Message>) {
    const ANALYZER: &str = "injection.Analyzer";
    let mut injected: BTreeSet<&str> = BTreeSet::new();
    for ns in resources.namespaces() {
        let name = ns.name();
        if name == "istio-system" {
            continue;
        }
        let labels = &ns.metadata().labels;
        let legacy = labels.get(INJECTION_LABEL);
        let mut found = Vec::new();
        if let Some(v) = legacy {
            found.push(format!("{INJECTION_LABEL}={v}"));
        }
        for l in [REVISION_LABEL, DATAPLANE_MODE_LABEL] {
            if let Some(v) = labels.get(l)
                && legacy.is_none_or(|v| v == "enabled")
            {
                found.push(format!("{l}={v}"));
            }
        }
        if found.len() > 1 {
            let info = &codes::NAMESPACE_MULTIPLE_INJECTION_LABELS;
            let mut m = Message::new(
                info,
                Some(resource_ref(ns.resource)),
                codes::fill(
                    info.template.unwrap_or_default(),
                    &[format!("[{}]", found.join(" "))],
                ),
            );
            m.fix = Some(format!(
                "keep one of {}: `{INJECTION_LABEL}` for the default control plane or \
                 `{REVISION_LABEL}` for a revision",
                found.join(", ")
            ));
            m.analyzer = Some(ANALYZER);
            out.push(m);
        }
        if labels
            .get(DATAPLANE_MODE_LABEL)
            .is_some_and(|v| v == "ambient")
        {
            continue;
        }
        if legacy.is_none_or(String::is_empty) && !labels.contains_key(REVISION_LABEL) {
            let info = &codes::NAMESPACE_NOT_INJECTED;
            let mut m = Message::new(
                info,
                Some(resource_ref(ns.resource)),
                codes::fill(
                    info.template.unwrap_or_default(),
                    &[name.to_string(), name.to_string()],
                ),
            );
            m.fix = Some(format!(
                "skiff runs a sidecar beside each workload whatever the label, but Istio \
                 injects none in namespace {name} until it is labelled"
            ));
            m.analyzer = Some(ANALYZER);
            out.push(m);
            continue;
        }
        if legacy.is_none_or(|v| v == "enabled") {
            injected.insert(name);
        }
    }
    let has_proxy = |spec: &skiff_api::kube::PodSpec| {
        spec.containers
            .iter()
            .chain(&spec.init_containers)
            .any(|c| c.name == PROXY_CONTAINER)
    };
    let stored = resources.pods().any(|p| has_proxy(p.spec));
    if !stored {
        return;
    }
    for pod in resources.pods() {
        if !injected.contains(pod.namespace())
            || injection_off(pod.metadata())
            || pod.host_network == Some(true)
            || has_proxy(pod.spec)
        {
            continue;
        }
        let info = &codes::POD_MISSING_PROXY;
        let full = format!("{}/{}", pod.namespace(), pod.name());
        let mut m = Message::new(
            info,
            Some(resource_ref(pod.resource)),
            codes::fill(info.template.unwrap_or_default(), &[full]),
        );
        m.fix = Some(format!(
            "namespace {} is labelled for injection, but this Pod has no `{PROXY_CONTAINER}` \
             container: it was created before the label (restart it) or the injector did \
             not run",
            pod.namespace()
        ));
        m.analyzer = Some(ANALYZER);
        out.push(m);
    }
}
