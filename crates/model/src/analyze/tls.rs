//! Istio's `destinationrule.CaCertificateAnalyzer`: TLS origination (SIMPLE or MUTUAL)
//! without `caCertificates` does not verify who the server is (IST0128 for the
//! DestinationRule's policy, IST0129 for a port's).

use skiff_api::ResourceSet;
use skiff_api::networking::{ClientTlsMode, ClientTlsSettings};

use super::{CodeInfo, Message, codes};
use crate::diagnostic::resource_ref;

const ANALYZER: &str = "destinationrule.CaCertificateAnalyzer";

pub(super) fn run(resources: &ResourceSet, out: &mut Vec<Message>) {
    for dr in resources.destination_rules() {
        let Some(policy) = &dr.traffic_policy else {
            continue;
        };
        let name = format!("{}/{}", dr.namespace(), dr.name());
        let selected = dr.workload_selector.is_some();
        let mut report = |info: &CodeInfo, mode: &str, port: Option<String>| {
            let mut args = vec![
                name.clone(),
                dr.namespace().to_string(),
                mode.to_string(),
                dr.host.clone(),
            ];
            args.extend(port.clone());
            let mut m = Message::new(
                info,
                Some(resource_ref(dr.resource)),
                codes::fill(info.template.unwrap_or_default(), &args),
            );
            m.fix = Some(format!(
                "set `caCertificates` (or `credentialName` with a workloadSelector) on the TLS \
                 settings{}, or the client accepts any server certificate",
                port.map_or(String::new(), |p| format!(" of port {p}"))
            ));
            m.analyzer = Some(ANALYZER);
            out.push(m);
        };
        if let Some(mode) = unverified(policy.tls.as_ref(), selected) {
            report(
                &codes::NO_SERVER_CERT_VERIFICATION_DESTINATION_LEVEL,
                mode,
                None,
            );
        }
        for p in &policy.port_level_settings {
            if let Some(mode) = unverified(p.tls.as_ref(), selected) {
                let port = p
                    .port
                    .as_ref()
                    .and_then(|s| s.number)
                    .map_or_else(String::new, |n| format!("number:{n}"));
                report(
                    &codes::NO_SERVER_CERT_VERIFICATION_PORT_LEVEL,
                    mode,
                    Some(port),
                );
            }
        }
    }
}

/// The mode, when TLS settings originate TLS without a way to verify the server.
fn unverified(tls: Option<&ClientTlsSettings>, selected: bool) -> Option<&'static str> {
    let tls = tls?;
    let mode = match tls.mode? {
        ClientTlsMode::Simple => "SIMPLE",
        ClientTlsMode::Mutual => "MUTUAL",
        _ => return None,
    };
    let has_ca = tls
        .ca_certificates
        .as_deref()
        .is_some_and(|c| !c.is_empty());
    let has_credential = tls
        .credential_name
        .as_deref()
        .is_some_and(|c| !c.is_empty());
    let verified = has_ca || (has_credential && selected);
    (!verified).then_some(mode)
}
