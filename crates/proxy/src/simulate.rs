//! The proxy's own decisions for a request that is not sent: which route of a compiled
//! route table takes it (and which earlier routes did not), and what the workload's
//! AuthorizationPolicies decide. `skiff explain --from` walks a request through the
//! mesh with these, so a simulation and the live proxy use the same matching code.

use std::net::IpAddr;

use http::HeaderMap;

use crate::config::{RouteTable, Snapshot};
use crate::route::RequestView;

/// How a route table treated a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTrace {
    /// The virtual host that claimed the authority (`None`: no virtual host did).
    pub virtual_host: Option<String>,
    /// The routes tried in order, with whether each one's match held; the walk stops at
    /// the first that held.
    pub routes: Vec<(String, bool)>,
}

impl RouteTrace {
    /// The route that took the request.
    pub fn chosen(&self) -> Option<&str> {
        self.routes
            .iter()
            .find(|(_, m)| *m)
            .map(|(n, _)| n.as_str())
    }
}

impl RouteTable {
    /// Routes `req` as [`RouteTable::select`] does, recording every route it tried.
    pub fn trace(&self, req: &RequestView<'_>) -> RouteTrace {
        let Some(vh) = self.domains.find(req.authority) else {
            return RouteTrace {
                virtual_host: None,
                routes: Vec::new(),
            };
        };
        let vhost = &self.vhosts[vh];
        let mut routes = Vec::new();
        for route in &vhost.routes {
            let held = route.matches.is_empty() || route.matches.iter().any(|m| m.matches(req));
            routes.push((route.name.to_string(), held));
            if held {
                break;
            }
        }
        RouteTrace {
            virtual_host: Some(vhost.name.to_string()),
            routes,
        }
    }
}

/// A request as a workload's inbound authorization sees it.
#[derive(Debug, Clone, Copy)]
pub struct AuthzRequest<'a> {
    /// The caller's address.
    pub peer_ip: IpAddr,
    /// The caller's SPIFFE id, when it calls over mutual TLS.
    pub peer: Option<&'a str>,
    /// The workload's address.
    pub dest_ip: IpAddr,
    /// The app port.
    pub dest_port: u16,
    /// HTTP method.
    pub method: &'a str,
    /// Path, without the query.
    pub path: &'a str,
    /// Authority.
    pub host: &'a str,
    /// Request headers.
    pub headers: &'a HeaderMap,
}

/// What the workload of `snapshot` decides for `req`: `None` allows, `Some` is the
/// denial's details as the access log and `/failures` give them
/// (`rbac_access_denied_matched_policy[...]: ...`). No JWT is taken into account.
pub fn authorize(snapshot: &Snapshot, req: &AuthzRequest<'_>) -> Option<String> {
    if snapshot.authz.is_empty() {
        return None;
    }
    let attrs = crate::authz::Attrs {
        peer_ip: req.peer_ip,
        remote_ip: req.peer_ip,
        peer: req.peer,
        dest_ip: req.dest_ip,
        dest_port: req.dest_port,
        sni: None,
        http: Some(crate::authz::HttpAttrs {
            method: req.method,
            path: req.path,
            host: req.host,
            headers: req.headers,
        }),
        jwt: None,
    };
    snapshot.authz.check(&attrs).details()
}
