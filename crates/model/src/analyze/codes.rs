//! The message codes of `skiff analyze`: Istio's (`IST…`, with Istio's names, levels
//! and templates from `pkg/config/analysis/msg/messages.yaml`) where Istio has one, and
//! skiff's own (`SKF…`) for what Istio does not check.

use serde::Serialize;

/// How serious a message is, in Istio's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Level {
    /// Worth knowing; nothing is broken.
    Info,
    /// Likely a mistake.
    Warning,
    /// Traffic fails or goes elsewhere.
    Error,
}

impl Level {
    /// Istio's spelling (`Info`, `Warning`, `Error`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "Info",
            Level::Warning => "Warning",
            Level::Error => "Error",
        }
    }

    /// Reads `Info`, `Warning` or `Error` (any case).
    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "info" => Some(Level::Info),
            "warning" | "warn" => Some(Level::Warning),
            "error" => Some(Level::Error),
            _ => None,
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeInfo {
    /// `IST0101`, `SKF0002`, …
    pub code: &'static str,
    /// `ReferencedResourceNotFound`, …
    pub name: &'static str,
    /// The level every message of this code has.
    pub level: Level,
    /// Istio's template (`%s`, `%q`, `%v`, `%d` filled in order), for Istio's codes.
    pub template: Option<&'static str>,
}

macro_rules! codes {
    ($($id:ident = $code:literal $name:literal $level:ident $template:expr;)*) => {
        $(
            #[doc = concat!("`", $code, "` ", $name, ".")]
            pub const $id: CodeInfo = CodeInfo {
                code: $code,
                name: $name,
                level: Level::$level,
                template: $template,
            };
        )*
        /// Every code, in code order.
        pub const ALL: &[CodeInfo] = &[$($id),*];
    };
}

codes! {
    REFERENCED_RESOURCE_NOT_FOUND = "IST0101" "ReferencedResourceNotFound" Error
        Some("Referenced %s not found: %q");
    NAMESPACE_NOT_INJECTED = "IST0102" "NamespaceNotInjected" Info
        Some("The namespace is not enabled for Istio injection. Run 'kubectl label namespace %s istio-injection=enabled' to enable it, or 'kubectl label namespace %s istio-injection=disabled' to explicitly mark it as not needing injection.");
    POD_MISSING_PROXY = "IST0103" "PodMissingProxy" Warning
        Some("The pod %s is missing the Istio proxy. This can often be resolved by restarting or redeploying the workload.");
    SCHEMA_VALIDATION_ERROR = "IST0106" "SchemaValidationError" Error
        Some("Schema validation error: %v");
    CONFLICTING_MESH_GATEWAY_VS_HOSTS = "IST0109" "ConflictingMeshGatewayVirtualServiceHosts" Error
        Some("The VirtualServices %s associated with mesh gateway define the same host %s which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.");
    CONFLICTING_SIDECAR_WORKLOAD_SELECTORS = "IST0110" "ConflictingSidecarWorkloadSelectors" Error
        Some("The Sidecars %v in namespace %q select the same workload pod %q, which can lead to undefined behavior.");
    MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS = "IST0111" "MultipleSidecarsWithoutWorkloadSelectors" Error
        Some("The Sidecars %v in namespace %q have no workload selector, which can lead to undefined behavior.");
    DESTINATION_PORT_SELECTOR_REQUIRED = "IST0112" "VirtualServiceDestinationPortSelectorRequired" Error
        Some("This VirtualService routes to a service %q that exposes multiple ports %v. Specifying a port in the destination is required to disambiguate.");
    DEPLOYMENT_ASSOCIATED_TO_MULTIPLE_SERVICES = "IST0116" "DeploymentAssociatedToMultipleServices" Warning
        Some("This deployment %s is associated with multiple services using port %d but different protocols: %v");
    PORT_NAME_NOT_UNDER_NAMING_CONVENTION = "IST0118" "PortNameIsNotUnderNamingConvention" Info
        Some("Port name %s (port: %d, targetPort: %s) doesn't follow the naming convention of Istio port.");
    NAMESPACE_MULTIPLE_INJECTION_LABELS = "IST0123" "NamespaceMultipleInjectionLabels" Warning
        Some("The namespace has more than one type of injection labels %v, which may lead to undefined behavior. Make sure only one injection label exists.");
    NO_MATCHING_WORKLOADS_FOUND = "IST0127" "NoMatchingWorkloadsFound" Warning
        Some("No matching workloads for this resource with the following labels: %s");
    NO_SERVER_CERT_VERIFICATION_DESTINATION_LEVEL = "IST0128" "NoServerCertificateVerificationDestinationLevel" Warning
        Some("DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to validate server identity for host: %s");
    NO_SERVER_CERT_VERIFICATION_PORT_LEVEL = "IST0129" "NoServerCertificateVerificationPortLevel" Warning
        Some("DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to validate server identity for host: %s at port %s");
    VIRTUAL_SERVICE_UNREACHABLE_RULE = "IST0130" "VirtualServiceUnreachableRule" Warning
        Some("VirtualService rule %v not used (%s).");
    VIRTUAL_SERVICE_INEFFECTIVE_MATCH = "IST0131" "VirtualServiceIneffectiveMatch" Info
        Some("VirtualService rule %v match %v is not used (duplicate/overlapping match in rule %v).");
    VIRTUAL_SERVICE_HOST_NOT_FOUND_IN_GATEWAY = "IST0132" "VirtualServiceHostNotFoundInGateway" Warning
        Some("one or more host %v defined in VirtualService %s not found in Gateway %s.");
    REFERENCED_INTERNAL_GATEWAY = "IST0165" "ReferencedInternalGateway" Warning
        Some("VirtualService %s references the internal gateway %s, which is generated from a Kubernetes Gateway API Gateway and is not meant to be referenced directly.");
    SERVICE_ENTRY_ADDRESSES_REQUIRED = "IST0134" "ServiceEntryAddressesRequired" Warning
        Some("ServiceEntry addresses are required for this protocol.");
    DEPLOYMENT_CONFLICTING_PORTS = "IST0137" "DeploymentConflictingPorts" Warning
        Some("This deployment %s is associated with multiple services %v using targetPort %q but different ports: %v.");
    CONFLICTING_GATEWAYS = "IST0145" "ConflictingGateways" Error
        Some("Conflict with gateways %s (workload selector %s, port %s, hosts %v).");
    JWT_CLAIM_ROUTING_WITHOUT_REQUEST_AUTHN = "IST0149" "JwtClaimBasedRoutingWithoutRequestAuthN" Error
        Some("The virtual service uses the JWT claim based routing (key: %s) but found no request authentication for the gateway (%s) pod (%s). The request authentication must first be applied for the gateway pods to validate the JWT token and make the claims available for routing.");
    EXTERNAL_NAME_INVALID_PORT_NAME = "IST0150" "ExternalNameServiceTypeInvalidPortName" Warning
        Some("Port name for ExternalName service is invalid. Proxy may prevent tcp named ports and unmatched traffic for ports serving TCP protocol from being forwarded correctly");
    CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS = "IST0159" "ConflictingTelemetryWorkloadSelectors" Error
        Some("The Telemetries %v in namespace %q select the same workload pod %q, which can lead to undefined behavior.");
    MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS = "IST0160" "MultipleTelemetriesWithoutWorkloadSelectors" Error
        Some("The Telemetries %v in namespace %q have no workload selector, which can lead to undefined behavior.");
    GATEWAY_PORT_NOT_DEFINED_ON_SERVICE = "IST0162" "GatewayPortNotDefinedOnService" Warning
        Some("The gateway is listening on a target port (port %d) that is not defined in the Service associated with its workload instances (Pod selector %s). If you need to access the gateway port through the gateway Service, it will not be available.");
    SUBSET_NOT_SELECT_PODS = "IST0173" "DestinationRuleSubsetNotSelectPods" Error
        Some("The Subset %s defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).");
    UNKNOWN_DESTINATION_RULE_HOST = "IST0174" "UnknownDestinationRuleHost" Warning
        Some("The host %s defined in the DestinationRule does not match any services in the mesh.");
    CONFLICTING_SERVICE_ENTRY_PROTOCOL = "IST0177" "ConflictingServiceEntryProtocol" Warning
        Some("Multiple ServiceEntries (%s) define the same host %q and port %d with conflicting protocols (%s).");

    HTTP_ROUTES_ON_UNDECLARED_PORT = "SKF0001" "HttpRoutesOnUndeclaredPort" Info None;
    STRICT_MTLS_PLAINTEXT_CLIENT = "SKF0002" "StrictMtlsPlaintextClient" Warning None;
    ALLOW_WITHOUT_DENY_ALL_BASELINE = "SKF0003" "AllowWithoutDenyAllBaseline" Warning None;
    DENY_ALL_WITH_NOTHING_ALLOWED = "SKF0004" "DenyAllWithNothingAllowed" Warning None;
    UNUSED_DESTINATION_RULE_SUBSET = "SKF0005" "UnusedDestinationRuleSubset" Info None;
    GATEWAY_NOT_BOUND = "SKF0006" "GatewayNotBound" Warning None;
    VIRTUAL_SERVICE_HOST_WITHOUT_SERVICE = "SKF0007" "VirtualServiceHostWithoutService" Warning None;
    CROSS_NAMESPACE_REFERENCE = "SKF0008" "CrossNamespaceReferenceNotResolved" Error None;
    FAULT_INJECTION_IN_PLACE = "SKF0009" "FaultInjectionInPlace" Warning None;
    WORKLOAD_WITHOUT_SIDECAR = "SKF0010" "WorkloadWithoutSidecar" Warning None;
    UNKNOWN_PORT = "SKF0011" "DestinationPortNotFound" Error None;
    SERVICE_WITHOUT_ENDPOINTS = "SKF0012" "ServiceWithoutEndpoints" Warning None;
    WORKLOAD_WITHOUT_ADDRESS = "SKF0013" "WorkloadWithoutAddress" Warning None;
    UNRESOLVED_TARGET_PORT = "SKF0014" "UnresolvedTargetPort" Warning None;
    HTTP_ROUTE_ON_NON_HTTP_PORT = "SKF0015" "HttpRouteOnNonHttpPort" Warning None;
    PROTOCOL_CONFLICT = "SKF0016" "ProtocolConflict" Warning None;
    PROTOCOL_NOT_PROXIED = "SKF0017" "ProtocolNotProxied" Warning None;
    GATEWAY_PORT_CONFLICT = "SKF0018" "GatewayPortConflict" Warning None;
    CONFLICTING_DESTINATION_RULES = "SKF0019" "ConflictingDestinationRules" Warning None;
    NOT_IMPLEMENTED = "SKF0020" "NotImplemented" Warning None;
    HOST_READ_AS_KUBERNETES_NAME = "SKF0021" "HostReadAsKubernetesName" Warning None;
    DUPLICATE_HOST = "SKF0022" "DuplicateHost" Warning None;
    DUPLICATE_WORKLOAD = "SKF0023" "DuplicateWorkload" Warning None;
    DUPLICATE_ROUTE_NAME = "SKF0024" "DuplicateRouteName" Warning None;
    CONFLICTING_POLICIES = "SKF0025" "ConflictingPolicies" Warning None;
    POLICY_WITHOUT_WORKLOAD = "SKF0026" "PolicyWithoutWorkload" Info None;
    UNKNOWN_DELEGATE = "SKF0027" "UnknownDelegate" Error None;
    GATEWAY_WITHOUT_SELECTOR = "SKF0028" "GatewayWithoutSelector" Warning None;
    VALIDATION_WARNING = "SKF0029" "ValidationWarning" Warning None;
    INIT_CONTAINER_BEFORE_SIDECAR = "SKF0030" "InitContainerBeforeSidecar" Warning None;
    SIDECAR_RESOURCE_BUDGET = "SKF0031" "SidecarResourceBudget" Warning None;
    JOB_SIDECAR_NEVER_EXITS = "SKF0032" "JobSidecarNeverExits" Warning None;
}

/// The code of this spelling (`IST0101`), if skiff gives it.
pub fn lookup(code: &str) -> Option<&'static CodeInfo> {
    ALL.iter().find(|c| c.code == code)
}

/// Fills `%s`, `%q`, `%v`, `%d` of a template with `args` in order (`%q` quotes).
pub fn fill(template: &str, args: &[String]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut args = args.iter();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%'
            && let Some(&verb) = chars.peek()
            && matches!(verb, 's' | 'q' | 'v' | 'd')
        {
            chars.next();
            let a = args.next().map(String::as_str).unwrap_or("");
            if verb == 'q' {
                out.push_str(&format!("{a:?}"));
            } else {
                out.push_str(a);
            }
            continue;
        }
        out.push(c);
    }
    out
}
