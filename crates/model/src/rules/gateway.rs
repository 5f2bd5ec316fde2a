//! Gateways: which workloads run them, and the ports and host names they serve.

use skiff_api::ResourceSet;

use crate::config::Protocol;
use crate::diagnostic::{Code, Findings, ResourceRef, Severity, resource_ref};
use crate::protocol::DeclaredProtocol;
use crate::registry::{Labels, Registry, display_labels};

/// A Gateway as the compiler uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayInfo {
    /// The resource.
    pub resource: ResourceRef,
    /// `namespace/name`, as VirtualServices name it.
    pub key: String,
    /// Namespace.
    pub namespace: String,
    /// Selector of the gateway workloads (any namespace).
    pub selector: Labels,
    /// Servers, in order.
    pub servers: Vec<ServerInfo>,
    /// The workloads that run this gateway (indices into the registry's workloads).
    pub workloads: Vec<usize>,
}

/// One server (listener) of a Gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Port number.
    pub port: u16,
    /// How the proxy carries the server's protocol.
    pub protocol: Protocol,
    /// Host names served, with the namespaces whose VirtualServices may bind to them.
    pub hosts: Vec<ServerHost>,
    /// `tls`, as written.
    pub tls: Option<skiff_api::networking::ServerTlsSettings>,
}

impl ServerInfo {
    /// The TLS mode of the server, when it sets one.
    pub fn tls_mode(&self) -> Option<skiff_api::networking::ServerTlsMode> {
        self.tls.as_ref().and_then(|t| t.mode)
    }
}

/// A server host entry: `[namespace/]host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHost {
    /// Namespace of the VirtualServices allowed (`None` for any: `*/` or no prefix).
    pub namespace: Option<String>,
    /// Host pattern (`*`, `*.example.com`, `api.example.com`).
    pub host: String,
}

impl ServerHost {
    /// Reads `ns/host`, `./host`, `*/host` or `host`, written in `gateway_namespace`.
    pub fn parse(written: &str, gateway_namespace: &str) -> ServerHost {
        let (namespace, host) = match written.split_once('/') {
            Some(("*", h)) => (None, h),
            Some((".", h)) => (Some(gateway_namespace.to_string()), h),
            Some((ns, h)) => (Some(ns.to_string()), h),
            None => (None, written),
        };
        ServerHost {
            namespace,
            host: host.to_ascii_lowercase(),
        }
    }

    /// Whether a VirtualService of `namespace` may bind to this entry.
    pub fn admits(&self, namespace: &str) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == namespace)
    }
}

pub(super) fn collect(
    resources: &ResourceSet,
    registry: &Registry,
    findings: &mut Findings,
) -> Vec<GatewayInfo> {
    let mut out = Vec::new();
    for gw in resources.gateways() {
        let r = gw.resource;
        let ns = gw.namespace();
        let mut servers = Vec::new();
        for (i, s) in gw.servers.iter().enumerate() {
            let Some(port) = u16::try_from(s.port.number).ok().filter(|p| *p != 0) else {
                continue;
            };
            let declared =
                DeclaredProtocol::parse(&s.port.protocol).unwrap_or(DeclaredProtocol::Unspecified);
            let protocol = declared.carried_as().unwrap_or(Protocol::Tcp);
            use skiff_api::networking::ServerTlsMode as M;
            let tls_mode_served = matches!(
                s.tls.as_ref().and_then(|t| t.mode),
                Some(M::Passthrough | M::Simple | M::Mutual | M::OptionalMutual | M::IstioMutual)
            );
            let routed = protocol.is_http()
                || protocol == Protocol::Tcp
                || (matches!(protocol, Protocol::Tls | Protocol::Https) && tls_mode_served);
            if !routed {
                findings.report(
                    Severity::Warning,
                    Code::NotImplemented,
                    r,
                    Some(&format!("spec.servers[{i}].port.protocol")),
                    format!(
                        "this {} gateway server is not routed: skiff serves TLS servers in \
                         SIMPLE, MUTUAL, OPTIONAL_MUTUAL, ISTIO_MUTUAL and PASSTHROUGH mode \
                         (not AUTO_PASSTHROUGH), so port {port} carries nothing for it",
                        s.port.protocol
                    ),
                );
            }
            if let Some(previous) = servers
                .iter()
                .find(|p: &&ServerInfo| p.port == port && p.protocol != protocol)
            {
                findings.report(
                    Severity::Warning,
                    Code::GatewayPortConflict,
                    r,
                    Some(&format!("spec.servers[{i}].port")),
                    format!(
                        "port {port} is already served as {:?}; one port carries one protocol, \
                         the first server's",
                        previous.protocol
                    ),
                );
            }
            servers.push(ServerInfo {
                port,
                protocol,
                hosts: s.hosts.iter().map(|h| ServerHost::parse(h, ns)).collect(),
                tls: s.tls.clone(),
            });
        }
        let workloads = if gw.selector.is_empty() {
            findings.report(
                Severity::Warning,
                Code::GatewayWithoutWorkload,
                r,
                Some("spec.selector"),
                "the gateway has no selector; skiff runs gateways only on workloads a \
                 selector names, so this gateway serves nothing",
            );
            Vec::new()
        } else {
            let selected: Vec<usize> = registry
                .select_everywhere(&gw.selector)
                .into_iter()
                .filter(|&w| registry.workloads()[w].selectable())
                .collect();
            if selected.is_empty() {
                findings.report_args(
                    Severity::Warning,
                    Code::GatewayWithoutWorkload,
                    r,
                    Some("spec.selector"),
                    format!(
                        "no workload has labels {}, so no proxy serves this gateway; declare the \
                         gateway workload (e.g. a WorkloadEntry) with these labels",
                        display_labels(&gw.selector)
                    ),
                    // Istio's IST0101 is about labels no workload has; workloads
                    // without an address are another matter.
                    if registry.select_everywhere(&gw.selector).is_empty() {
                        vec!["selector".into(), display_labels(&gw.selector)]
                    } else {
                        Vec::new()
                    },
                );
            }
            selected
        };
        out.push(GatewayInfo {
            resource: resource_ref(r),
            key: format!("{ns}/{}", gw.name()),
            namespace: ns.to_string(),
            selector: gw.selector.clone(),
            servers,
            workloads,
        });
    }
    out
}
