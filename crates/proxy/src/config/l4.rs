//! TCP and TLS routes compiled for the data path, and the per-connection choice among
//! them: by the destination's name (a `CONNECT` tunnel), its address
//! (`destinationSubnets`) and the ClientHello's server name (`sniHosts`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use skiff_model::config::{self as model, sni_matches};

use super::{PortRoutes, WeightedClusters};
use crate::Error;
use crate::authz::IpBlock;

/// A compiled TCP route.
#[derive(Debug)]
pub(crate) struct TcpRouteRt {
    pub(crate) name: Arc<str>,
    pub(crate) domains: Vec<Box<str>>,
    pub(crate) destinations: WeightedClusters,
    /// Alternatives; empty: always.
    pub(crate) matches: Vec<L4MatchRt>,
}

/// One compiled alternative of a TCP or TLS match.
#[derive(Debug)]
pub(crate) struct L4MatchRt {
    subnets: Vec<IpBlock>,
    sni: Vec<Box<str>>,
}

/// What is known of a connection when its route is chosen.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct L4Target<'a> {
    /// The name it was sent to (`CONNECT host:port`), lower-case.
    pub(crate) host: Option<&'a str>,
    /// The address it was sent to.
    pub(crate) ip: Option<IpAddr>,
    /// The ClientHello's server name.
    pub(crate) sni: Option<&'a str>,
}

impl L4MatchRt {
    fn holds(&self, t: &L4Target<'_>) -> bool {
        (self.subnets.is_empty()
            || t.ip
                .is_some_and(|ip| self.subnets.iter().any(|b| b.contains(ip))))
            && (self.sni.is_empty()
                || t.sni
                    .is_some_and(|name| self.sni.iter().any(|p| sni_matches(p, name))))
    }
}

impl TcpRouteRt {
    fn holds(&self, t: &L4Target<'_>) -> bool {
        self.matches.is_empty() || self.matches.iter().any(|m| m.holds(t))
    }

    fn names(&self, host: &str, with_port: &str) -> bool {
        self.domains
            .iter()
            .any(|d| **d == *host || **d == *with_port)
    }

    /// True when the route needs the ClientHello's server name.
    pub(crate) fn needs_sni(&self) -> bool {
        self.matches.iter().any(|m| !m.sni.is_empty())
    }
}

impl PortRoutes {
    /// The route for a connection: the first whose domains hold its name (with or
    /// without the port) and whose match holds, else the first without domains whose
    /// match holds.
    pub(crate) fn tcp_route_for(&self, t: &L4Target<'_>) -> Option<&TcpRouteRt> {
        let named = t.host.and_then(|host| {
            let with_port = format!("{host}:{}", self.port);
            self.tcp
                .iter()
                .find(|r| r.names(host, &with_port) && r.holds(t))
        });
        named.or_else(|| self.tcp.iter().find(|r| r.domains.is_empty() && r.holds(t)))
    }

    /// True when some route of the port is chosen by SNI, so the ClientHello must be
    /// read before the route is known.
    pub(crate) fn routes_by_sni(&self) -> bool {
        self.tcp.iter().any(TcpRouteRt::needs_sni)
    }
}

/// Compiles the TCP routes of a port.
pub(crate) fn compile_routes(
    routes: &[model::TcpRoute],
    index: &HashMap<&str, usize>,
) -> Result<Vec<TcpRouteRt>, Error> {
    let mut out = Vec::with_capacity(routes.len());
    for r in routes {
        let mut matches = Vec::with_capacity(r.matches.len());
        for m in &r.matches {
            let mut subnets = Vec::with_capacity(m.destination_subnets.len());
            for s in &m.destination_subnets {
                subnets.push(
                    IpBlock::parse(s)
                        .map_err(|e| Error::config(format!("TCP route {}", r.name), e))?,
                );
            }
            matches.push(L4MatchRt {
                subnets,
                sni: m
                    .sni_hosts
                    .iter()
                    .map(|h| h.to_ascii_lowercase().into_boxed_str())
                    .collect(),
            });
        }
        out.push(TcpRouteRt {
            name: r.name.as_str().into(),
            domains: r
                .domains
                .iter()
                .map(|d| d.to_ascii_lowercase().into_boxed_str())
                .collect(),
            destinations: WeightedClusters::compile(&r.name, &r.destinations, index)?,
            matches,
        });
    }
    Ok(out)
}
