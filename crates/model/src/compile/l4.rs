//! TCP and TLS routes of VirtualServices instantiated for one proxy, place and port, in
//! the order and with the fall-backs Istio's listener builder gives them.
//!
//! TCP (every non-TLS opaque port): rules in order; the first rule without a match, or
//! with an alternative that applies here and has no `destinationSubnets`, takes every
//! remaining connection, so nothing after it is compiled. Alternatives with
//! subnets become runtime conditions. The service itself comes last unless such a
//! catch-all came first. TLS (`TLS`, `HTTPS` ports): every alternative that applies here
//! becomes a route matched by SNI (and subnets); alternatives whose runtime conditions
//! an earlier one already has are left out (they can never be reached). The service
//! itself is the route only when no alternative applies.

use crate::config::{L4Match, TcpRoute, WeightedCluster};
use crate::rules::{L4Rule, VirtualServiceInfo};

use super::Compiler;

/// Which rules a port takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum L4Kind {
    /// `tcp` rules.
    Tcp,
    /// `tls` rules, by SNI.
    Tls,
}

impl Compiler<'_> {
    /// The TCP or TLS routes of `vs` for connections to `port` at `place`. `domains` are
    /// given to every route (the service's names for a sidecar; none at a gateway).
    pub(crate) fn l4_routes(
        &mut self,
        vs: &VirtualServiceInfo,
        kind: L4Kind,
        place: &str,
        port: u16,
        domains: &[String],
    ) -> L4Routes {
        let w = self.workload;
        let mut out = L4Routes::default();
        let rules = match kind {
            L4Kind::Tcp => &vs.tcp,
            L4Kind::Tls => &vs.tls,
        };
        let mut handled: Vec<L4Match> = Vec::new();
        for rule in rules {
            let applying: Vec<&L4Match> = rule
                .matches
                .iter()
                .filter(|m| m.applies(place, &w.labels, &w.namespace, port))
                .map(|m| &m.runtime)
                .collect();
            match kind {
                L4Kind::Tcp => {
                    if rule.matches.is_empty() || applying.iter().any(|m| m.is_empty()) {
                        out.routes
                            .push(self.l4_route(rule, port, domains, Vec::new()));
                        out.catch_all = true;
                        break;
                    }
                    if !applying.is_empty() {
                        let matches = applying.into_iter().cloned().collect();
                        out.routes.push(self.l4_route(rule, port, domains, matches));
                    }
                }
                L4Kind::Tls => {
                    let fresh: Vec<L4Match> = applying
                        .into_iter()
                        .filter(|m| !handled.contains(m))
                        .cloned()
                        .collect();
                    if fresh.is_empty() {
                        continue;
                    }
                    handled.extend(fresh.iter().cloned());
                    out.routes.push(self.l4_route(rule, port, domains, fresh));
                    out.catch_all = true;
                }
            }
        }
        out
    }

    fn l4_route(
        &mut self,
        rule: &L4Rule,
        port: u16,
        domains: &[String],
        matches: Vec<L4Match>,
    ) -> TcpRoute {
        TcpRoute {
            name: rule.name.clone(),
            domains: domains.to_vec(),
            destinations: rule
                .destinations
                .iter()
                .map(|d| WeightedCluster {
                    cluster: self.destination_cluster(d, port),
                    weight: d.weight,
                })
                .collect(),
            matches,
        }
    }
}

/// The routes of one VirtualService for a port.
#[derive(Debug, Default)]
pub(crate) struct L4Routes {
    pub(crate) routes: Vec<TcpRoute>,
    /// For TCP: a route takes every connection, so the service's own route is not
    /// added. For TLS: some alternative applies, so the service's own route is not
    /// added either (as in Istio).
    pub(crate) catch_all: bool,
}

#[cfg(test)]
mod tests;
