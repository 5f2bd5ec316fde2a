//! Istio's ServiceEntry analyzers: `serviceentry.ProtocolAddressesAnalyzer` (IST0134)
//! and `serviceentry.ConflictingServiceEntryProtocolAnalyzer` (IST0177).

use std::collections::{BTreeMap, BTreeSet};

use skiff_api::{Resource, ResourceSet};

use super::{Message, codes};
use crate::diagnostic::{Origin, resource_ref};

pub(super) fn run(resources: &ResourceSet, out: &mut Vec<Message>) {
    addresses_required(resources, out);
    conflicting_protocols(resources, out);
}

/// IST0134: a ServiceEntry without `addresses` with a TCP (or unset) port: the proxy
/// cannot tell its traffic from other TCP traffic on that port. One message per port.
fn addresses_required(resources: &ResourceSet, out: &mut Vec<Message>) {
    for se in resources.service_entries() {
        if !se.addresses.is_empty() {
            continue;
        }
        for (i, p) in se.ports.iter().enumerate() {
            let protocol = p.protocol.as_deref().unwrap_or("");
            if !(protocol.is_empty() || protocol.eq_ignore_ascii_case("TCP")) {
                continue;
            }
            let info = &codes::SERVICE_ENTRY_ADDRESSES_REQUIRED;
            let mut m = Message::new(
                info,
                Some(resource_ref(se.resource)),
                info.template.unwrap_or_default().to_string(),
            );
            let field = format!("spec.ports[{i}]");
            if let Some(at) = se.resource.origin.fields.lookup(&field) {
                m.location = Some(Origin {
                    file: se.resource.origin.file.display().to_string(),
                    line: at.value.line,
                    column: at.value.column,
                });
            }
            m.field = Some(field);
            m.fix = Some(format!(
                "port {} is TCP{}: without an address, connections to it cannot be told from \
                 other TCP traffic on port {}; add `addresses`, or declare the protocol (e.g. \
                 HTTP, TLS) so the host can be read from the traffic",
                p.number,
                if protocol.is_empty() {
                    " (no protocol)"
                } else {
                    ""
                },
                p.number
            ));
            m.analyzer = Some("serviceentry.ProtocolAddressesAnalyzer");
            out.push(m);
        }
    }
}

/// (exportTo scope, host, port): where ServiceEntries can conflict.
type ScopedPort = (String, String, u32);

/// IST0177: ServiceEntries that define one host and port, visible to the same
/// namespaces (by `exportTo`), with different protocols. Every one of them gets it.
fn conflicting_protocols(resources: &ResourceSet, out: &mut Vec<Message>) {
    let mut index: BTreeMap<ScopedPort, Vec<(String, &Resource)>> = BTreeMap::new();
    for se in resources.service_entries() {
        let ns = se.namespace();
        let scopes: BTreeSet<String> =
            if se.export_to.is_empty() || se.export_to.iter().any(|e| e == "*") {
                BTreeSet::from(["*".to_string()])
            } else {
                se.export_to
                    .iter()
                    .map(|e| if e == "." { ns.to_string() } else { e.clone() })
                    .collect()
            };
        for scope in &scopes {
            for h in &se.hosts {
                for p in &se.ports {
                    index
                        .entry((scope.clone(), h.clone(), p.number))
                        .or_default()
                        .push((
                            p.protocol.clone().unwrap_or_default().to_uppercase(),
                            se.resource,
                        ));
                }
            }
        }
    }
    let mut reported = BTreeSet::new();
    for ((scope, host, port), entries) in &index {
        let mut entries = entries.clone();
        if scope != "*"
            && let Some(all) = index.get(&("*".to_string(), host.clone(), *port))
        {
            entries.extend(all.iter().cloned());
        }
        let protocols: BTreeSet<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
        if protocols.len() < 2 {
            continue;
        }
        let names: BTreeSet<String> = entries
            .iter()
            .map(|(_, r)| format!("{}/{}", r.namespace(), r.name()))
            .collect();
        let names = names.into_iter().collect::<Vec<_>>().join(", ");
        let protocols = protocols.into_iter().collect::<Vec<_>>().join(", ");
        for (_, r) in &entries {
            if !reported.insert((r.namespace().to_string(), r.name().to_string())) {
                continue;
            }
            let info = &codes::CONFLICTING_SERVICE_ENTRY_PROTOCOL;
            let mut m = Message::new(
                info,
                Some(resource_ref(r)),
                codes::fill(
                    info.template.unwrap_or_default(),
                    &[
                        names.clone(),
                        host.clone(),
                        port.to_string(),
                        protocols.clone(),
                    ],
                ),
            );
            m.fix = Some(format!(
                "one protocol applies to {host}:{port}; give it the same protocol in every \
                 ServiceEntry ({names}), or merge them"
            ));
            m.analyzer = Some("serviceentry.ConflictingServiceEntryProtocolAnalyzer");
            out.push(m);
        }
    }
}
