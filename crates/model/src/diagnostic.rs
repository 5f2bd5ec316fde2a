//! What the model finds wrong (or worth knowing) about a mesh: the findings behind
//! `skiff analyze`, each naming the resource it is about and where that resource was
//! written.

use std::fmt;

use serde::Serialize;
use skiff_api::Resource;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration does not do what it says: traffic will fail or go elsewhere.
    Error,
    /// Likely a mistake, or something skiff does not carry out as written.
    Warning,
    /// Worth knowing; nothing is broken.
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// What kind of finding this is. Stable names, so tools and tests can rely on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "PascalCase")]
pub enum Code {
    /// A route names a host that is not a service of the mesh.
    UnknownHost,
    /// A route names a subset that no DestinationRule defines for its host.
    UnknownSubset,
    /// A route names a port the destination service does not have.
    UnknownPort,
    /// A destination names no port and the service has several.
    AmbiguousPort,
    /// A VirtualService is bound to a Gateway that does not exist.
    UnknownGateway,
    /// A VirtualService names the internal Gateway Istio generates for a Kubernetes
    /// Gateway API Gateway.
    InternalGatewayReference,
    /// A subset's labels match none of the service's workloads.
    SubsetWithoutEndpoints,
    /// A service selects no workload with an address.
    ServiceWithoutEndpoints,
    /// A workload has no address, so it cannot be an endpoint.
    WorkloadWithoutAddress,
    /// A Service's named `targetPort` is not a port of a selected workload.
    UnresolvedTargetPort,
    /// A port's name has no protocol prefix and HTTP routes depend on detection.
    PortWithoutProtocol,
    /// A port is declared non-HTTP, yet HTTP routes target it.
    HttpRouteOnNonHttpPort,
    /// Services disagree on the protocol of one port number.
    ProtocolConflict,
    /// A port's protocol is carried in a simpler way than declared, or not at all.
    ProtocolNotProxied,
    /// Two VirtualServices for one host at the same place (the mesh, or a gateway).
    ConflictingVirtualServices,
    /// A VirtualService host matches no service.
    VirtualServiceHostWithoutService,
    /// A VirtualService host is not allowed by the servers of a gateway it binds to.
    GatewayHostMismatch,
    /// A Gateway's selector matches no workload.
    GatewayWithoutWorkload,
    /// Gateway servers on one port disagree on the protocol.
    GatewayPortConflict,
    /// A DestinationRule's host matches no service.
    DestinationRuleWithoutService,
    /// Two DestinationRules for one host in one namespace.
    ConflictingDestinationRules,
    /// A field skiff reads but does not carry out (or carries out differently).
    NotImplemented,
    /// A host written in a form Istio would not expand, which skiff does.
    HostReadAsKubernetesName,
    /// Two services (or service entries) declare the same host.
    DuplicateHost,
    /// A workload name is used twice in one namespace.
    DuplicateWorkload,
    /// Two HTTP rules of one VirtualService carry the same `name`.
    DuplicateRouteName,
    /// Policies of one kind and scope where Istio takes only one.
    ConflictingPolicies,
    /// A policy's selector matches no workload.
    PolicyWithoutWorkload,
    /// A rule delegates to a VirtualService that does not exist (or is no delegate),
    /// or whose rules conflict with the root's matches.
    UnknownDelegate,
}

/// A resource as findings name it: kind, namespace/name and where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    /// Kind, e.g. `VirtualService`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Where the resource's document starts, when it came from a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// A position in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Origin {
    /// File path as given to the loader.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            // A cluster-scoped resource (a Namespace), as Istio names it.
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// One finding about the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostic {
    /// How bad it is.
    pub severity: Severity,
    /// What kind of finding.
    pub code: Code,
    /// The resource it is about, if one (a finding about a port conflict between many
    /// services names the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceRef>,
    /// The field within the resource, as a path (`spec.http[0].route[1].destination.subset`),
    /// when the finding is about one field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Where the field (or, without a field, the resource) was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Origin>,
    /// What is wrong and, where it helps, what to do, in one sentence a user can act on.
    pub message: String,
    /// The values Istio's message for this finding names (e.g. the host not found), in
    /// the order of Istio's template; empty when the finding has no Istio counterpart.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

impl Diagnostic {
    /// A finding about a resource.
    pub fn new(
        severity: Severity,
        code: Code,
        resource: &ResourceRef,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity,
            code,
            resource: Some(resource.clone()),
            field: None,
            location: resource.origin.clone(),
            message: message.into(),
            args: Vec::new(),
        }
    }
}

/// `file:line:column: severity: Kind ns/name: field: message`, the parts that are known.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = self
            .location
            .as_ref()
            .or_else(|| self.resource.as_ref().and_then(|r| r.origin.as_ref()));
        if let Some(origin) = origin {
            write!(f, "{origin}: ")?;
        }
        write!(f, "{}: ", self.severity)?;
        if let Some(resource) = &self.resource {
            write!(f, "{resource}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Findings collected while building the mesh.
#[derive(Debug, Default)]
pub(crate) struct Findings(Vec<Diagnostic>);

impl Findings {
    /// Records a finding about `resource`, at `field` when given (its position is looked
    /// up in the resource's document).
    pub(crate) fn report(
        &mut self,
        severity: Severity,
        code: Code,
        resource: &Resource,
        field: Option<&str>,
        message: impl Into<String>,
    ) {
        self.report_args(severity, code, resource, field, message, Vec::new());
    }

    /// Like [`Findings::report`], with the values Istio's message names.
    pub(crate) fn report_args(
        &mut self,
        severity: Severity,
        code: Code,
        resource: &Resource,
        field: Option<&str>,
        message: impl Into<String>,
        args: Vec<String>,
    ) {
        let mut diagnostic = Diagnostic::new(severity, code, &resource_ref(resource), message);
        diagnostic.args = args;
        if let Some(field) = field {
            diagnostic.field = Some(field.to_string());
            if let Some(pos) = resource.origin.fields.lookup(field) {
                let at = pos.key.unwrap_or(pos.value);
                diagnostic.location = Some(Origin {
                    file: resource.origin.file.display().to_string(),
                    line: at.line,
                    column: at.column,
                });
            }
        }
        self.0.push(diagnostic);
    }

    /// Sorted by place (file, line), then severity and message; duplicates removed.
    pub(crate) fn finish(mut self) -> Vec<Diagnostic> {
        self.0.sort_by(|a, b| {
            let place = |d: &Diagnostic| {
                d.location
                    .clone()
                    .or_else(|| d.resource.as_ref().and_then(|r| r.origin.clone()))
            };
            (
                place(a),
                &a.resource,
                a.severity,
                a.code,
                &a.field,
                &a.message,
            )
                .cmp(&(
                    place(b),
                    &b.resource,
                    b.severity,
                    b.code,
                    &b.field,
                    &b.message,
                ))
        });
        self.0.dedup();
        self.0
    }
}

/// How findings name an api resource.
pub(crate) fn resource_ref(resource: &Resource) -> ResourceRef {
    ResourceRef {
        kind: resource.kind().to_string(),
        namespace: if resource.kind().is_namespaced() {
            resource.namespace().to_string()
        } else {
            String::new()
        },
        name: resource.name().to_string(),
        origin: Some(Origin {
            file: resource.origin.file.display().to_string(),
            line: resource.origin.position.line,
            column: resource.origin.position.column,
        }),
    }
}
