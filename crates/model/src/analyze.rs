//! `skiff analyze`: the mesh's findings, and checks of their own, as messages with
//! Istio's codes, names, levels and wording where Istio has the check (`IST…`) and
//! skiff's codes for what Istio misses (`SKF…`). See [`codes`] for the list.

pub mod codes;
mod gotchas;
mod istio;
mod selectors;
mod service_entry;
mod tls;
mod workloads;

use serde::Serialize;
use skiff_api::{Loaded, ResourceSet};

pub use codes::{CodeInfo, Level};

use crate::diagnostic::{Code, Diagnostic, Origin, ResourceRef};
use crate::{Mesh, MeshOptions};

/// One message of `skiff analyze`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// `Error`, `Warning` or `Info`.
    pub level: Level,
    /// `IST0101`, `SKF0002`, …
    pub code: &'static str,
    /// `ReferencedResourceNotFound`, …
    pub name: &'static str,
    /// The resource the message is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceRef>,
    /// The field within the resource, when the message is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Where the field (or the resource) was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Origin>,
    /// The message: Istio's wording for Istio's codes.
    pub message: String,
    /// What skiff sees and what to do about it, when it can say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The Istio analyzer that gives the same message (e.g.
    /// `virtualservice.DestinationHostAnalyzer`), for Istio's codes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analyzer: Option<&'static str>,
}

impl Message {
    fn new(info: &CodeInfo, resource: Option<ResourceRef>, message: String) -> Message {
        let location = resource.as_ref().and_then(|r| r.origin.clone());
        Message {
            level: info.level,
            code: info.code,
            name: info.name,
            resource,
            field: None,
            location,
            message,
            fix: None,
            analyzer: None,
        }
    }

    /// istioctl's line: `Error [IST0101] (VirtualService default/foo file.yaml:12) …`.
    pub fn line(&self) -> String {
        let mut s = format!("{} [{}]", self.level, self.code);
        if let Some(r) = &self.resource {
            s.push_str(&format!(" ({r}"));
            if let Some(at) = self.location.as_ref().or(r.origin.as_ref()) {
                s.push_str(&format!(" {}:{}", at.file, at.line));
            }
            s.push(')');
        }
        s.push(' ');
        s.push_str(&self.message);
        s
    }
}

/// Analyzes what a load read: its validation problems and everything the mesh model
/// finds, plus the checks of this module. Sorted by file, line, code.
pub fn analyze(loaded: &Loaded, options: MeshOptions) -> Vec<Message> {
    let mut out: Vec<Message> = loaded.diagnostics.iter().map(from_validation).collect();
    // Rejected resources too: analysis sees what could be read, beside the
    // validation error that keeps it out of the mesh.
    out.extend(findings(&loaded.for_analysis(), options));
    sort(&mut out);
    out
}

/// The messages about the mesh that valid `resources` make (no validation messages):
/// what `skiff validate` does not already say.
pub fn findings(resources: &ResourceSet, options: MeshOptions) -> Vec<Message> {
    let mesh = Mesh::build(resources, options);
    let mut out: Vec<Message> = mesh
        .diagnostics()
        .iter()
        // Conflicts between sidecar VirtualServices: Istio's IST0109 check below says it.
        .filter(|d| d.code != Code::ConflictingVirtualServices || d.args.is_empty())
        // Sidecar selectors and defaults: Istio's checks (IST0101, IST0111) below say it.
        .filter(|d| {
            !(matches!(
                d.code,
                Code::PolicyWithoutWorkload | Code::ConflictingPolicies
            ) && d.resource.as_ref().is_some_and(|r| r.kind == "Sidecar"))
        })
        // AuthorizationPolicies without workloads: Istio's IST0127 check below says it.
        .filter(|d| {
            !(d.code == Code::PolicyWithoutWorkload
                && d.resource
                    .as_ref()
                    .is_some_and(|r| r.kind == "AuthorizationPolicy"))
        })
        // `istio: ingressgateway` is the ingress gateway every Istio installation has
        // (istioctl analyze assumes it too); `skiff up` runs it built in.
        .filter(|d| {
            !(d.code == Code::GatewayWithoutWorkload
                && d.args.get(1).is_some_and(|s| s == "istio=ingressgateway"))
        })
        .map(from_finding)
        .collect();
    istio::run(&mesh, resources, &mut out);
    service_entry::run(resources, &mut out);
    selectors::run(&mesh, resources, &mut out);
    tls::run(resources, &mut out);
    gotchas::run(&mesh, resources, &mut out);
    workloads::run(&mesh, resources, &mut out);
    sort(&mut out);
    out
}

fn sort(out: &mut Vec<Message>) {
    out.sort_by(|a, b| {
        let place = |m: &Message| {
            m.location
                .as_ref()
                .map(|o| (o.file.clone(), o.line, o.column))
        };
        (place(a), a.code, &a.resource, &a.message).cmp(&(
            place(b),
            b.code,
            &b.resource,
            &b.message,
        ))
    });
    out.dedup();
}

/// `Kind namespace/name` (as validation names resources) back into its parts.
fn parse_resource(s: &str, origin: Option<Origin>) -> Option<ResourceRef> {
    let (kind, rest) = s.split_once(' ')?;
    let (namespace, name) = rest.split_once('/').unwrap_or(("", rest));
    Some(ResourceRef {
        kind: kind.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        origin,
    })
}

fn from_validation(d: &skiff_api::Diagnostic) -> Message {
    let origin = d.position.map(|p| Origin {
        file: d.file.display().to_string(),
        line: p.line,
        column: p.column,
    });
    let resource = d
        .resource
        .as_deref()
        .and_then(|r| parse_resource(r, origin.clone()));
    let text = match &d.path {
        Some(p) => format!("{p}: {}", d.message),
        None => d.message.clone(),
    };
    let coded = d
        .analysis
        .as_ref()
        .and_then(|a| codes::lookup(a.code).map(|info| (info, &a.args)));
    let (info, message, fix) = match coded {
        Some((info, args)) => (
            info,
            codes::fill(info.template.unwrap_or("%v"), args),
            Some(text),
        ),
        None if d.is_error() => (
            &codes::SCHEMA_VALIDATION_ERROR,
            codes::fill("Schema validation error: %v", &[text]),
            None,
        ),
        None if d.message.contains("not implemented") || d.message.contains("not supported") => {
            (&codes::NOT_IMPLEMENTED, text, None)
        }
        None => (&codes::VALIDATION_WARNING, text, None),
    };
    let analyzer = match info.code {
        "IST0130" | "IST0131" => {
            Some("schemaValidation.CollectionValidationAnalyzer(collections.VirtualService)")
        }
        _ => None,
    };
    Message {
        field: d.path.clone(),
        location: origin,
        fix,
        analyzer,
        ..Message::new(info, resource, message)
    }
}

/// The code of a finding of the model; Istio's where Istio has the same check.
fn code_of(d: &Diagnostic) -> &'static CodeInfo {
    let kind = d.resource.as_ref().map_or("", |r| r.kind.as_str());
    match d.code {
        Code::UnknownHost | Code::UnknownSubset | Code::UnknownGateway => {
            &codes::REFERENCED_RESOURCE_NOT_FOUND
        }
        Code::GatewayWithoutWorkload if !d.args.is_empty() => &codes::REFERENCED_RESOURCE_NOT_FOUND,
        Code::GatewayWithoutWorkload => &codes::GATEWAY_WITHOUT_SELECTOR,
        Code::AmbiguousPort => &codes::DESTINATION_PORT_SELECTOR_REQUIRED,
        Code::SubsetWithoutEndpoints if !d.args.is_empty() => &codes::SUBSET_NOT_SELECT_PODS,
        Code::SubsetWithoutEndpoints => &codes::WORKLOAD_WITHOUT_ADDRESS,
        Code::DestinationRuleWithoutService => &codes::UNKNOWN_DESTINATION_RULE_HOST,
        Code::GatewayHostMismatch => &codes::VIRTUAL_SERVICE_HOST_NOT_FOUND_IN_GATEWAY,
        Code::InternalGatewayReference => &codes::REFERENCED_INTERNAL_GATEWAY,
        Code::ConflictingVirtualServices if !d.args.is_empty() => {
            &codes::CONFLICTING_MESH_GATEWAY_VS_HOSTS
        }
        Code::ConflictingVirtualServices => &codes::CONFLICTING_POLICIES,
        Code::PolicyWithoutWorkload if kind == "Sidecar" && !d.args.is_empty() => {
            &codes::REFERENCED_RESOURCE_NOT_FOUND
        }
        Code::PolicyWithoutWorkload => &codes::POLICY_WITHOUT_WORKLOAD,
        Code::UnknownPort if !d.args.is_empty() => &codes::REFERENCED_RESOURCE_NOT_FOUND,
        Code::UnknownPort => &codes::UNKNOWN_PORT,
        Code::ServiceWithoutEndpoints => &codes::SERVICE_WITHOUT_ENDPOINTS,
        Code::WorkloadWithoutAddress => &codes::WORKLOAD_WITHOUT_ADDRESS,
        Code::UnresolvedTargetPort => &codes::UNRESOLVED_TARGET_PORT,
        Code::PortWithoutProtocol => &codes::HTTP_ROUTES_ON_UNDECLARED_PORT,
        Code::HttpRouteOnNonHttpPort => &codes::HTTP_ROUTE_ON_NON_HTTP_PORT,
        Code::ProtocolConflict => &codes::PROTOCOL_CONFLICT,
        Code::ProtocolNotProxied => &codes::PROTOCOL_NOT_PROXIED,
        Code::VirtualServiceHostWithoutService => &codes::VIRTUAL_SERVICE_HOST_WITHOUT_SERVICE,
        Code::GatewayPortConflict => &codes::GATEWAY_PORT_CONFLICT,
        Code::ConflictingDestinationRules => &codes::CONFLICTING_DESTINATION_RULES,
        Code::NotImplemented => &codes::NOT_IMPLEMENTED,
        Code::HostReadAsKubernetesName => &codes::HOST_READ_AS_KUBERNETES_NAME,
        Code::DuplicateHost => &codes::DUPLICATE_HOST,
        Code::DuplicateWorkload => &codes::DUPLICATE_WORKLOAD,
        Code::DuplicateRouteName => &codes::DUPLICATE_ROUTE_NAME,
        Code::ConflictingPolicies => &codes::CONFLICTING_POLICIES,
        Code::UnknownDelegate => &codes::UNKNOWN_DELEGATE,
    }
}

/// The Istio analyzer with the same check as a finding of the model.
fn analyzer_of(d: &Diagnostic) -> Option<&'static str> {
    Some(match d.code {
        Code::UnknownHost | Code::AmbiguousPort | Code::UnknownPort => {
            "virtualservice.DestinationHostAnalyzer"
        }
        Code::UnknownSubset => "virtualservice.DestinationRuleAnalyzer",
        Code::UnknownGateway | Code::GatewayHostMismatch | Code::InternalGatewayReference => {
            "virtualservice.GatewayAnalyzer"
        }
        Code::GatewayWithoutWorkload => "gateway.IngressGatewayPortAnalyzer",
        Code::SubsetWithoutEndpoints | Code::DestinationRuleWithoutService => {
            "destinationrule.PodNotSelectedAnalyzer"
        }
        Code::ConflictingVirtualServices => "virtualservice.ConflictingMeshGatewayHostsAnalyzer",
        Code::PolicyWithoutWorkload => "sidecar.SelectorAnalyzer",
        _ => return None,
    })
}

fn from_finding(d: &Diagnostic) -> Message {
    let info = code_of(d);
    let (message, fix) = match info.template {
        Some(t) if !d.args.is_empty() => (codes::fill(t, &d.args), Some(d.message.clone())),
        _ => (d.message.clone(), None),
    };
    Message {
        field: d.field.clone(),
        location: d.location.clone(),
        fix,
        analyzer: info
            .code
            .starts_with("IST")
            .then(|| analyzer_of(d))
            .flatten(),
        ..Message::new(info, d.resource.clone(), message)
    }
}

#[cfg(test)]
mod tests;
