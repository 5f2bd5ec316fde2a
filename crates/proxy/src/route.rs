//! Matching a request against a compiled route table: the virtual host by authority,
//! then the first route whose match holds. Pure functions over a [`Snapshot`] so the
//! same code runs in the proxy, in tests and in the routing benchmark.
//!
//! [`Snapshot`]: crate::config::Snapshot

use http::{HeaderMap, Method};

use crate::config::{MatchRt, RouteRt, RouteTable, VirtualHostRt};

/// The parts of a request that routing looks at, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The method.
    pub method: &'a Method,
    /// The scheme: the absolute URI's, else `https` when the downstream connection is
    /// TLS, else `http` (as Envoy sets `:scheme`).
    pub scheme: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// The authority as the client sent it (`host` or `host:port`).
    pub authority: &'a str,
    /// The destination port.
    pub port: u16,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

/// The outcome of routing a request.
#[derive(Debug)]
pub enum Selection<'a> {
    /// No virtual host claims the authority.
    NoVirtualHost,
    /// The virtual host has no route whose match holds.
    NoRoute(&'a VirtualHostRt),
    /// A route matched.
    Route(Selected<'a>),
}

/// A matched route.
#[derive(Debug, Clone, Copy)]
pub struct Selected<'a> {
    /// The virtual host.
    pub vhost: &'a VirtualHostRt,
    /// The route.
    pub route: &'a RouteRt,
    /// Which alternative of the route's match held (`None` for a match-all route).
    pub(crate) matched: Option<&'a MatchRt>,
}

impl RouteTable {
    /// Routes a request: virtual host first, then the first route that matches.
    pub fn select<'a>(&'a self, req: &RequestView<'_>) -> Selection<'a> {
        let Some(vh) = self.domains.find(req.authority) else {
            return Selection::NoVirtualHost;
        };
        let vhost = &self.vhosts[vh];
        for route in &vhost.routes {
            if route.matches.is_empty() {
                return Selection::Route(Selected {
                    vhost,
                    route,
                    matched: None,
                });
            }
            if let Some(m) = route.matches.iter().find(|m| m.matches(req)) {
                return Selection::Route(Selected {
                    vhost,
                    route,
                    matched: Some(m),
                });
            }
        }
        Selection::NoRoute(vhost)
    }
}

impl Selected<'_> {
    /// The path after the route's `rewrite.uri`, if it has one. Prefix matches replace the
    /// matched prefix; exact and regex matches replace the whole path; a route without a
    /// path match replaces the leading `/`.
    pub(crate) fn rewrite_path(&self, rewrite: &str, path: &str) -> String {
        let span = MatchRt::rewrite_span(self.matched, path);
        let mut out = String::with_capacity(rewrite.len() + path.len() - span);
        out.push_str(rewrite);
        out.push_str(&path[span..]);
        out
    }
}

/// Splits an authority into host and port (`default_port` when it has none).
pub(crate) fn split_authority(authority: &str, default_port: u16) -> (&str, u16) {
    let host = crate::config::strip_port(authority);
    if host.len() == authority.len() {
        return (host, default_port);
    }
    let port = authority[host.len() + 1..].parse().unwrap_or(default_port);
    (host, port)
}

#[cfg(test)]
mod tests;
