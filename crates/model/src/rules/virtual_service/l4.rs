//! The `tcp` and `tls` rules of a VirtualService: opaque and TLS-passthrough traffic,
//! matched per connection on its port, destination address, source and (TLS) server name.

use skiff_api::Entry;
use skiff_api::networking::{L4MatchAttributes, RouteDestination, TlsMatchAttributes};

use super::{DestinationRef, Weighted, destinations, resolve_gateway};
use crate::config::L4Match;
use crate::diagnostic::Findings;
use crate::registry::{Labels, Registry};
use skiff_api::networking::VirtualService;

/// One `tcp` or `tls` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L4Rule {
    /// Route name: `<namespace>/<virtualservice>/tcp/<index>` (or `tls/<index>`).
    pub name: String,
    /// Field path, `spec.tcp[i]` or `spec.tls[i]`.
    pub field: String,
    /// Alternatives; empty (only for `tcp`) matches every connection.
    pub matches: Vec<L4Condition>,
    /// Destinations, weights normalised to sum to 100.
    pub destinations: Vec<DestinationRef>,
}

/// One alternative of a `tcp` or `tls` match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct L4Condition {
    /// `gateways` (resolved); when not empty, replaces the VirtualService's.
    pub gateways: Vec<String>,
    /// `sourceLabels`.
    pub source_labels: Labels,
    /// `sourceNamespace`.
    pub source_namespace: Option<String>,
    /// `port`.
    pub port: Option<u16>,
    /// What the proxy checks per connection (`destinationSubnets`, `sniHosts`).
    pub runtime: L4Match,
}

impl L4Condition {
    /// Whether the alternative can hold for a proxy at `place` (`mesh` or a gateway's
    /// `namespace/name`) with these labels and namespace, on `port`.
    pub fn applies(&self, place: &str, labels: &Labels, namespace: &str, port: u16) -> bool {
        (self.gateways.is_empty() || self.gateways.iter().any(|g| g == place))
            && crate::registry::labels_match(&self.source_labels, labels)
            && self
                .source_namespace
                .as_deref()
                .is_none_or(|ns| ns == namespace)
            && self.port.is_none_or(|p| p == port)
    }
}

/// The `tcp` rules, in order.
pub(super) fn tcp_rules(
    vs: &Entry<'_, VirtualService>,
    registry: &Registry,
    findings: &mut Findings,
) -> Vec<L4Rule> {
    let ns = vs.namespace();
    let rules = vs.tcp.iter().map(|rule| {
        let matches = rule.r#match.iter().map(|m| tcp_condition(m, ns)).collect();
        (matches, &rule.route[..])
    });
    l4_rules(vs, "tcp", rules, registry, findings)
}

/// The `tls` rules, in order. Each match must name `sniHosts` (validation says so).
pub(super) fn tls_rules(
    vs: &Entry<'_, VirtualService>,
    registry: &Registry,
    findings: &mut Findings,
) -> Vec<L4Rule> {
    let ns = vs.namespace();
    let rules = vs.tls.iter().map(|rule| {
        let matches = rule.r#match.iter().map(|m| tls_condition(m, ns)).collect();
        (matches, &rule.route[..])
    });
    l4_rules(vs, "tls", rules, registry, findings)
}

/// The rules of one kind (`tcp`, `tls`), given each rule's conditions and route.
fn l4_rules<'a>(
    vs: &Entry<'_, VirtualService>,
    kind: &str,
    rules: impl Iterator<Item = (Vec<L4Condition>, &'a [RouteDestination])>,
    registry: &Registry,
    findings: &mut Findings,
) -> Vec<L4Rule> {
    let ns = vs.namespace();
    rules
        .enumerate()
        .map(|(i, (matches, route))| {
            let field = format!("spec.{kind}[{i}]");
            let route: Vec<Weighted<'_>> = route
                .iter()
                .map(|d| Weighted {
                    destination: &d.destination,
                    weight: d.weight,
                    headers: None,
                })
                .collect();
            L4Rule {
                name: format!("{ns}/{}/{kind}/{i}", vs.name()),
                matches,
                destinations: destinations(
                    &route,
                    "connections",
                    &field,
                    ns,
                    registry,
                    vs.resource,
                    findings,
                ),
                field,
            }
        })
        .collect()
}

fn tcp_condition(m: &L4MatchAttributes, ns: &str) -> L4Condition {
    L4Condition {
        gateways: m.gateways.iter().map(|g| resolve_gateway(g, ns)).collect(),
        source_labels: m.source_labels.clone(),
        source_namespace: m.source_namespace.clone(),
        port: m.port.and_then(|p| u16::try_from(p).ok()),
        runtime: L4Match {
            destination_subnets: m.destination_subnets.clone(),
            sni_hosts: Vec::new(),
        },
    }
}

fn tls_condition(m: &TlsMatchAttributes, ns: &str) -> L4Condition {
    L4Condition {
        gateways: m.gateways.iter().map(|g| resolve_gateway(g, ns)).collect(),
        source_labels: m.source_labels.clone(),
        source_namespace: m.source_namespace.clone(),
        port: m.port.and_then(|p| u16::try_from(p).ok()),
        runtime: L4Match {
            destination_subnets: m.destination_subnets.clone(),
            sni_hosts: m.sni_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        },
    }
}
