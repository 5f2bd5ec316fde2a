//! The proxy's own decisions for a request that is not sent: which route of a compiled
//! route table takes it (and which earlier routes did not), what the workload's
//! RequestAuthentications make of its token, and what its AuthorizationPolicies decide. `skiff explain --from` walks a request through the
//! mesh with these, so a simulation and the live proxy use the same matching code.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, Method, Uri};

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

/// What a workload's RequestAuthentications made of a request (phase 3): the token it
/// verified, if any, and the headers as its app would see them (a verified token taken
/// out unless `forwardOriginalToken`, `outputClaimToHeaders` written).
#[derive(Debug, Clone)]
pub struct Authentication {
    jwt: Option<Arc<crate::authn::VerifiedJwt>>,
    /// The request's headers after authentication.
    pub headers: HeaderMap,
}

impl Authentication {
    /// The request principal (`iss/sub`) of the verified token.
    pub fn principal(&self) -> Option<String> {
        self.jwt.as_ref().map(|j| j.principal())
    }

    /// The RequestAuthentication (`namespace/name`) whose rule verified the token.
    pub fn policy(&self) -> Option<&str> {
        self.jwt.as_ref().map(|j| &*j.policy)
    }
}

/// A token the workload refuses: the request is answered `401`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtRefusal {
    /// The 401's body, in Envoy's words ("Jwt is expired", "Jwt issuer is not
    /// configured", ...).
    pub reason: String,
    /// The RequestAuthentication (`namespace/name`) whose rule refused it; none when no
    /// rule accepts the token's issuer.
    pub policy: Option<String>,
    /// The whole line, as the access log's details give it.
    pub details: String,
}

/// Phase 3 of the workload of `snapshot` for a request with `headers` to `uri`, with
/// the proxy's own code: the tokens are found where its rules look, verified (fetching
/// a `jwksUri` as the proxy would), and a request with no token goes on without a
/// request principal. `Err`: the 401.
pub async fn authenticate(
    snapshot: &Snapshot,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Authentication, JwtRefusal> {
    if snapshot.jwt.is_empty() {
        return Ok(Authentication {
            jwt: None,
            headers: headers.clone(),
        });
    }
    let mut request = http::Request::new(());
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri.clone();
    *request.headers_mut() = headers.clone();
    let (mut parts, ()) = request.into_parts();
    match snapshot.jwt.authenticate(&mut parts).await {
        Ok(jwt) => Ok(Authentication {
            jwt,
            headers: parts.headers,
        }),
        Err(rejected) => Err(JwtRefusal {
            details: rejected.to_string(),
            policy: rejected.policy.as_deref().map(str::to_owned),
            reason: rejected.reason,
        }),
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
    /// Request headers (after [`authenticate`], as the proxy authorizes them).
    pub headers: &'a HeaderMap,
    /// What [`authenticate`] verified: `requestPrincipals` and `request.auth.*` read it.
    pub authentication: Option<&'a Authentication>,
}

/// What the workload of `snapshot` decides for `req`: `None` allows, `Some` is the
/// denial's details as the access log and `/failures` give them
/// (`rbac_access_denied_matched_policy[...]: ...`).
pub fn authorize(snapshot: &Snapshot, req: &AuthzRequest<'_>) -> Option<String> {
    if snapshot.authz.is_empty() {
        return None;
    }
    let jwt = req
        .authentication
        .and_then(|a| a.jwt.as_deref())
        .map(|j| j as &dyn crate::authz::JwtView);
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
        jwt,
    };
    snapshot.authz.check(&attrs).details()
}
