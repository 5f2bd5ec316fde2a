//! VirtualService rules instantiated for one proxy, one place (`mesh` or a gateway) and
//! one destination port.

use crate::config::{
    DestinationHeaders, Forward, HttpRoutePolicy, Mirror, Route, RouteAction, WeightedCluster,
};
use crate::rules::find_service;
use crate::rules::{DestinationRef, HttpRule, RuleAction, VirtualServiceInfo};

use super::{ClusterKey, Compiler};

impl Compiler<'_> {
    /// The routes of `vs` for requests to `port` at `place`, in rule order. Rules whose
    /// every match is for another port, gateway or source are left out.
    pub(crate) fn virtual_service_routes(
        &mut self,
        vs: &VirtualServiceInfo,
        place: &str,
        port: u16,
    ) -> Vec<Route> {
        let mut routes = Vec::with_capacity(vs.http.len());
        for rule in &vs.http {
            if let Some(route) = self.rule_route(rule, place, port) {
                routes.push(route);
            }
        }
        routes
    }

    fn rule_route(&mut self, rule: &HttpRule, place: &str, port: u16) -> Option<Route> {
        let w = self.workload;
        let matches: Vec<_> = rule
            .matches
            .iter()
            .filter(|m| m.applies(place, &w.labels, &w.namespace, port))
            .map(|m| m.route_match.clone())
            .collect();
        if !rule.matches.is_empty() && matches.is_empty() {
            return None;
        }
        let action = match &rule.action {
            RuleAction::Forward {
                destinations,
                retries,
                rewrite,
            } => RouteAction::Forward(Forward {
                destinations: destinations
                    .iter()
                    .map(|d| WeightedCluster {
                        cluster: self.destination_cluster(d, port),
                        weight: d.weight,
                    })
                    .collect(),
                retries: retries.clone(),
                rewrite: rewrite.clone(),
            }),
            RuleAction::Redirect(r) => {
                let mut r = r.clone();
                if rule.redirect_from_request_port {
                    r.port = Some(port);
                }
                RouteAction::Redirect(r)
            }
            RuleAction::DirectResponse { status, body } => RouteAction::DirectResponse {
                status: *status,
                body: body.clone(),
            },
        };
        if let Some(fault) = &rule.fault {
            self.faults.insert(rule.name.clone(), fault.clone());
        }
        let policy = self.http_policy(rule, port);
        if !policy.is_empty() {
            self.http_policies.insert(rule.name.clone(), policy);
        }
        Some(Route {
            name: rule.name.clone(),
            matches,
            action,
            timeout: rule.timeout,
        })
    }

    /// A rule's header rules, mirrors and CORS for this proxy. Mirrors and
    /// per-destination headers only apply to forwarding rules.
    fn http_policy(&mut self, rule: &HttpRule, port: u16) -> HttpRoutePolicy {
        let mut policy = HttpRoutePolicy {
            headers: rule.headers.clone(),
            cors: rule.cors.clone(),
            ..HttpRoutePolicy::default()
        };
        if let RuleAction::Forward { destinations, .. } = &rule.action {
            policy.destination_headers = destinations
                .iter()
                .enumerate()
                .filter(|(_, d)| !d.headers.is_empty())
                .map(|(index, d)| DestinationHeaders {
                    index,
                    headers: d.headers.clone(),
                })
                .collect();
            policy.mirrors = rule
                .mirrors
                .iter()
                .map(|m| Mirror {
                    cluster: self.destination_cluster(&m.destination, port),
                    per_million: m.per_million,
                })
                .collect();
        }
        policy
    }

    /// The cluster of a destination: its port, else the service's only port, else the
    /// port the request came to.
    pub(super) fn destination_cluster(&mut self, d: &DestinationRef, request_port: u16) -> String {
        let registry = self.mesh.registry();
        let id = find_service(registry, &d.host, &self.workload.namespace);
        let service = id.map(|id| &registry.services()[id]);
        let host = service.map_or_else(|| d.host.clone(), |s| s.hostname.clone());
        let port = d.port.unwrap_or_else(|| match service {
            Some(s) if s.ports.len() == 1 => s.ports[0].port,
            _ => request_port,
        });
        self.use_cluster(ClusterKey {
            host,
            port,
            subset: d.subset.clone(),
            service: id,
        })
    }

    /// The route of a service port that no VirtualService covers: all of it.
    pub(crate) fn default_route(&mut self, service: usize, port: u16) -> Route {
        let cluster = self.use_cluster(ClusterKey {
            host: self.mesh.registry().services()[service].hostname.clone(),
            port,
            subset: None,
            service: Some(service),
        });
        Route {
            name: "default".to_string(),
            matches: Vec::new(),
            action: RouteAction::Forward(Forward {
                destinations: vec![WeightedCluster {
                    cluster,
                    weight: 100,
                }],
                retries: Some(crate::rules::virtual_service::default_retries()),
                rewrite: None,
            }),
            timeout: None,
        }
    }
}
