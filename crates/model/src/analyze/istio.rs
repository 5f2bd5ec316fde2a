//! Istio analyzers that need no finding of the mesh model: port naming
//! (`service.PortNameAnalyzer`).

use skiff_api::ResourceSet;
use skiff_api::kube::ServiceType;
use skiff_api::types::IntOrString;

use super::{Message, codes};
use crate::Mesh;
use crate::diagnostic::{Origin, resource_ref};
use crate::protocol::{DeclaredProtocol, ProtocolSource, of_service_port};

pub(super) fn run(_mesh: &Mesh, resources: &ResourceSet, out: &mut Vec<Message>) {
    port_names(resources, out);
}

/// IST0118: a Service port whose protocol Istio cannot tell from its name or
/// `appProtocol` (IST0150 for an ExternalName Service). Services of Istio's own
/// control plane (labelled `istio`, or `release: istio`) are left out, as in Istio.
fn port_names(resources: &ResourceSet, out: &mut Vec<Message>) {
    for svc in resources.services() {
        let labels = &svc.metadata().labels;
        if labels.contains_key("istio") || labels.get("release").is_some_and(|v| v == "istio") {
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
                if name.is_empty() { "web" } else { name.as_str() }
            );
            let location = svc
                .resource
                .origin
                .fields
                .lookup(&field)
                .map(|at| Origin {
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
            out.push(m);
        }
    }
}
