//! VirtualService rules.

mod http;
mod policies;
mod unreachable;

use crate::networking::{Destination, HttpRouteDestination, RouteDestination, VirtualService};
use crate::validate::Report;
use crate::validate::common::{
    export_to, gateway_names, is_dns1123_label, is_ip, labels, validate_host, validate_ip_subnet,
    validate_port,
};

pub(super) fn validate(r: &mut Report<'_>, vs: &VirtualService) {
    let delegate = vs.hosts.is_empty();
    if delegate {
        if !vs.gateways.is_empty() {
            r.error(
                "spec.gateways",
                "delegate virtual service must have no gateways specified",
            );
        }
        if !vs.tls.is_empty() {
            r.error(
                "spec.tls",
                "delegate virtual service must have no tls route specified",
            );
        }
        if !vs.tcp.is_empty() {
            r.error(
                "spec.tcp",
                "delegate virtual service must have no tcp route specified",
            );
        }
        if vs.http.is_empty() {
            r.error("spec", "missing `hosts`: a VirtualService needs at least one host (only a delegate VirtualService has none, and it needs http rules)");
        }
    }
    gateway_names(r, "spec.gateways", &vs.gateways);
    let applies_to_gateway = !vs.gateways.is_empty() && !vs.gateways.iter().any(|g| g == "mesh");
    let applies_to_mesh = !applies_to_gateway;

    let mut all_valid = true;
    for (i, host) in vs.hosts.iter().enumerate() {
        let path = format!("spec.hosts[{i}]");
        match validate_host(host) {
            Err(_) if is_ip(host) => {}
            Err(e) => {
                r.error(path, e);
                all_valid = false;
            }
            Ok(()) if applies_to_mesh && host == "*" => {
                r.error(
                    path,
                    "wildcard host * is not allowed for virtual services bound to the mesh gateway",
                );
                all_valid = false;
            }
            Ok(()) => {}
        }
    }
    if all_valid {
        for i in 0..vs.hosts.len() {
            for j in i + 1..vs.hosts.len() {
                if hosts_overlap(&vs.hosts[i], &vs.hosts[j]) {
                    r.error(
                        format!("spec.hosts[{j}]"),
                        format!(
                            "duplicate hosts in virtual service: {} & {}",
                            vs.hosts[i], vs.hosts[j]
                        ),
                    );
                }
            }
        }
    }
    if vs.http.is_empty() && vs.tcp.is_empty() && vs.tls.is_empty() {
        r.error(
            "spec",
            "http, tcp or tls must be provided in virtual service",
        );
    }
    for (i, route) in vs.http.iter().enumerate() {
        http::http_route(r, &format!("spec.http[{i}]"), route, delegate);
    }
    for (i, tls) in vs.tls.iter().enumerate() {
        let path = format!("spec.tls[{i}]");
        if tls.r#match.is_empty() {
            r.error(
                format!("{path}.match"),
                "TLS route must have at least one match condition",
            );
        }
        for (j, m) in tls.r#match.iter().enumerate() {
            let mp = format!("{path}.match[{j}]");
            if m.sni_hosts.is_empty() {
                r.error(
                    format!("{mp}.sniHosts"),
                    "TLS match must have at least one SNI host",
                );
            }
            for (k, sni) in m.sni_hosts.iter().enumerate() {
                let sp = format!("{mp}.sniHosts[{k}]");
                match validate_host(sni) {
                    Err(_) if is_ip(sni) => r.warn(sp, format!("using an IP address ({sni:?}) goes against the SNI spec and most clients do not support it")),
                    Err(e) => r.error(sp, e),
                    Ok(()) => {
                        if !vs.hosts.iter().any(|h| host_subset_of(sni, h)) {
                            r.error(sp, format!("SNI host {sni:?} is not a compatible subset of any of the virtual service hosts: [{}]", vs.hosts.join(", ")));
                        }
                    }
                }
            }
            for (k, s) in m.destination_subnets.iter().enumerate() {
                r.check(
                    format!("{mp}.destinationSubnets[{k}]"),
                    validate_ip_subnet(s),
                );
            }
            if let Some(p) = m.port {
                r.check(format!("{mp}.port"), validate_port(p.into()));
            }
            labels(r, &format!("{mp}.sourceLabels"), &m.source_labels);
            gateway_names(r, &format!("{mp}.gateways"), &m.gateways);
        }
        if tls.route.is_empty() {
            r.error(format!("{path}.route"), "TLS route is required");
        }
        route_destinations(r, &path, &tls.route);
    }
    for (i, tcp) in vs.tcp.iter().enumerate() {
        let path = format!("spec.tcp[{i}]");
        for (j, m) in tcp.r#match.iter().enumerate() {
            let mp = format!("{path}.match[{j}]");
            for (k, s) in m.destination_subnets.iter().enumerate() {
                r.check(
                    format!("{mp}.destinationSubnets[{k}]"),
                    validate_ip_subnet(s),
                );
            }
            if let Some(p) = m.port {
                r.check(format!("{mp}.port"), validate_port(p.into()));
            }
            labels(r, &format!("{mp}.sourceLabels"), &m.source_labels);
            gateway_names(r, &format!("{mp}.gateways"), &m.gateways);
        }
        if tcp.route.is_empty() {
            r.error(format!("{path}.route"), "TCP route is required");
        }
        route_destinations(r, &path, &tcp.route);
    }
    export_to(r, "spec.exportTo", &vs.export_to, false);
    unreachable::check(r, vs);
}

pub(super) fn destination(r: &mut Report<'_>, path: &str, d: &Destination) {
    if d.host == "*" {
        r.error(format!("{path}.host"), "invalid destination host *");
    } else {
        r.check(format!("{path}.host"), validate_host(&d.host));
    }
    if let Some(s) = &d.subset
        && !is_dns1123_label(s)
    {
        r.error(
            format!("{path}.subset"),
            if s.is_empty() {
                "subset name cannot be empty".to_owned()
            } else {
                format!("subset name is invalid: {s}")
            },
        );
    }
    if let Some(p) = &d.port {
        r.check(
            format!("{path}.port.number"),
            validate_port(p.number.unwrap_or(0).into()),
        );
    }
}

fn weights(r: &mut Report<'_>, path: &str, w: &[(Option<i32>, &Destination)]) {
    let mut total: i64 = 0;
    for (i, (weight, dest)) in w.iter().enumerate() {
        let p = format!("{path}.route[{i}]");
        destination(r, &format!("{p}.destination"), dest);
        let weight = weight.unwrap_or(0);
        if weight < 0 {
            r.error(
                format!("{p}.weight"),
                format!("weight {weight} < 0: weights must be in 0..=100"),
            );
        } else if weight > 100 {
            r.error(
                format!("{p}.weight"),
                format!("weight {weight} > 100: weights are percentages, in 0..=100"),
            );
        }
        total += i64::from(weight);
    }
    if w.len() > 1 && total == 0 {
        r.error(format!("{path}.route"), "total destination weight = 0");
    } else if w.len() > 1 && total != 100 {
        r.warn(
            format!("{path}.route"),
            format!("weights add up to {total}, not 100; traffic is shared in proportion to them"),
        );
    }
}

pub(super) fn http_route_destinations(
    r: &mut Report<'_>,
    path: &str,
    route: &[HttpRouteDestination],
) {
    for (i, d) in route.iter().enumerate() {
        if let Some(h) = &d.headers {
            http::headers(r, &format!("{path}.route[{i}].headers"), h);
        }
    }
    let w: Vec<_> = route.iter().map(|d| (d.weight, &d.destination)).collect();
    weights(r, path, &w);
}

fn route_destinations(r: &mut Report<'_>, path: &str, route: &[RouteDestination]) {
    let w: Vec<_> = route.iter().map(|d| (d.weight, &d.destination)).collect();
    weights(r, path, &w);
}

/// Two host names overlap when one matches the other (Istio's duplicate host rule).
fn hosts_overlap(a: &str, b: &str) -> bool {
    host_subset_of(a, b) || host_subset_of(b, a)
}

/// Whether every name `a` covers is covered by `b` (`a` is a subset of `b`).
pub(super) fn host_subset_of(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    if a == b || b == "*" {
        return true;
    }
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (_, Some(bs)) => a.strip_prefix('*').unwrap_or(&a).ends_with(bs),
        (Some(_), None) => false,
        (None, None) => false,
    }
}
