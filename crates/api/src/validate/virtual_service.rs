//! VirtualService rules.

use crate::networking::{
    Destination, HeaderOperations, Headers, HttpRoute, HttpRouteDestination, RouteDestination,
    VirtualService,
};
use crate::types::{HeaderMatch, Percent};
use crate::validate::Report;
use crate::validate::common::{
    RETRY_ON_POLICIES, export_to, gateway_names, is_dns1123_label, is_ip, labels, string_match,
    validate_duration, validate_header_name, validate_host, validate_ip_subnet, validate_port,
    validate_regex,
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
        http_route(r, &format!("spec.http[{i}]"), route, delegate);
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
    unreachable_rules(r, vs);
}

fn http_route(r: &mut Report<'_>, path: &str, h: &HttpRoute, in_delegate: bool) {
    let root = h.delegate.is_some();
    if root {
        if h.redirect.is_some() {
            r.error(
                format!("{path}.redirect"),
                "a rule with `delegate` must not specify redirect",
            );
        }
        if !h.route.is_empty() {
            r.error(
                format!("{path}.route"),
                "a rule with `delegate` must not specify route",
            );
        }
        if h.direct_response.is_some() {
            r.error(
                format!("{path}.directResponse"),
                "a rule with `delegate` must not specify directResponse",
            );
        }
        if in_delegate {
            r.error(
                format!("{path}.delegate"),
                "delegate HTTP route cannot contain delegate",
            );
        }
    } else if h.redirect.is_some() {
        if !h.route.is_empty() {
            r.error_at_key(
                format!("{path}.redirect"),
                "HTTP route cannot contain both route and redirect",
            );
        }
        if h.fault.is_some() {
            r.error_at_key(
                format!("{path}.fault"),
                "HTTP route cannot contain both fault and redirect",
            );
        }
        if h.rewrite.is_some() {
            r.error_at_key(
                format!("{path}.rewrite"),
                "HTTP route rule cannot contain both rewrite and redirect",
            );
        }
        if h.direct_response.is_some() {
            r.error_at_key(
                format!("{path}.directResponse"),
                "HTTP route cannot contain both redirect and directResponse",
            );
        }
    } else if h.direct_response.is_some() {
        if !h.route.is_empty() {
            r.error_at_key(
                format!("{path}.directResponse"),
                "HTTP route cannot contain both route and directResponse",
            );
        }
        if h.fault.is_some() {
            r.error_at_key(
                format!("{path}.fault"),
                "HTTP route cannot contain both fault and directResponse",
            );
        }
        if h.rewrite.is_some() {
            r.error_at_key(
                format!("{path}.rewrite"),
                "HTTP route rule cannot contain both rewrite and directResponse",
            );
        }
    } else if h.route.is_empty() {
        r.error(path, "HTTP route, redirect or directResponse is required");
    }

    for (i, m) in h.r#match.iter().enumerate() {
        let mp = format!("{path}.match[{i}]");
        for (field, sm) in [
            ("uri", &m.uri),
            ("scheme", &m.scheme),
            ("method", &m.method),
            ("authority", &m.authority),
        ] {
            if let Some(sm) = sm {
                string_match(r, &format!("{mp}.{field}"), sm);
            }
        }
        for (field, map) in [
            ("headers", &m.headers),
            ("withoutHeaders", &m.without_headers),
        ] {
            for (name, hm) in map {
                let hp = crate::yaml::join_key(&format!("{mp}.{field}"), name);
                if !name.starts_with("@request.auth.claims") {
                    r.check(hp.clone(), validate_header_name(name));
                }
                if let HeaderMatch::Value(sm) = hm {
                    string_match(r, &hp, sm);
                }
            }
        }
        for (name, hm) in &m.query_params {
            if let HeaderMatch::Value(sm) = hm {
                string_match(
                    r,
                    &crate::yaml::join_key(&format!("{mp}.queryParams"), name),
                    sm,
                );
            }
        }
        if let Some(p) = m.port {
            r.check(format!("{mp}.port"), validate_port(p.into()));
        }
        labels(r, &format!("{mp}.sourceLabels"), &m.source_labels);
        gateway_names(r, &format!("{mp}.gateways"), &m.gateways);
        if let Some(ns) = &m.source_namespace
            && !is_dns1123_label(ns)
        {
            r.error(
                format!("{mp}.sourceNamespace"),
                format!("sourceNamespace match {ns} is invalid"),
            );
        }
    }

    if let Some(hs) = &h.headers {
        headers(r, &format!("{path}.headers"), hs);
    }
    if let Some(c) = &h.cors_policy {
        let cp = format!("{path}.corsPolicy");
        for (i, o) in c.allow_origins.iter().enumerate() {
            if o.value().is_empty() {
                r.error(
                    format!("{cp}.allowOrigins[{i}]"),
                    "an empty origin is not a valid CORS allow origin",
                );
            }
            string_match(r, &format!("{cp}.allowOrigins[{i}]"), o);
        }
        for (i, m) in c.allow_methods.iter().enumerate() {
            if !matches!(
                m.as_str(),
                "GET"
                    | "HEAD"
                    | "POST"
                    | "PUT"
                    | "PATCH"
                    | "DELETE"
                    | "CONNECT"
                    | "OPTIONS"
                    | "TRACE"
            ) {
                r.error(
                    format!("{cp}.allowMethods[{i}]"),
                    format!("{m:?} is not a supported HTTP method"),
                );
            }
        }
        for (field, list) in [
            ("allowHeaders", &c.allow_headers),
            ("exposeHeaders", &c.expose_headers),
        ] {
            for (i, name) in list.iter().enumerate() {
                if name != "*" {
                    r.check(format!("{cp}.{field}[{i}]"), validate_header_name(name));
                }
            }
        }
        if let Some(d) = &c.max_age {
            r.check(format!("{cp}.maxAge"), validate_duration(d));
            if d.value().subsec_nanos() > 0 {
                r.error(
                    format!("{cp}.maxAge"),
                    "maxAge is accurate only to seconds precision",
                );
            }
        }
    }
    if let Some(f) = &h.fault {
        let fp = format!("{path}.fault");
        if f.abort.is_none() && f.delay.is_none() {
            r.error(
                fp.clone(),
                "HTTP fault injection must have an abort and/or a delay",
            );
        }
        if let Some(a) = &f.abort {
            let ap = format!("{fp}.abort");
            percentage(r, &format!("{ap}.percentage"), a.percentage.as_ref());
            let set = [
                a.http_status.is_some(),
                a.grpc_status.is_some(),
                a.http2_error.is_some(),
            ];
            match set {
                [true, false, false] => {
                    let s = a.http_status.unwrap_or_default();
                    if !(200..=599).contains(&s) {
                        r.error(
                            format!("{ap}.httpStatus"),
                            format!("HTTP status {s} is not in range 200-599"),
                        );
                    }
                }
                [false, true, false] => {
                    let s = a.grpc_status.as_deref().unwrap_or_default();
                    if !GRPC_STATUS.contains(&s) {
                        r.error(
                            format!("{ap}.grpcStatus"),
                            format!(
                                "gRPC status {s:?} is not supported; use one of {}",
                                GRPC_STATUS.join(", ")
                            ),
                        );
                    }
                }
                [false, false, true] => r.error(
                    format!("{ap}.http2Error"),
                    "HTTP/2 abort fault injection is not supported",
                ),
                [false, false, false] => r.warn(ap, "abort configured, but error type not set"),
                _ => r.error(ap, "set only one of httpStatus, grpcStatus or http2Error"),
            }
        }
        if let Some(d) = &f.delay {
            let dp = format!("{fp}.delay");
            percentage(r, &format!("{dp}.percentage"), d.percentage.as_ref());
            if let Some(p) = d.percent
                && !(0..=100).contains(&p)
            {
                r.error(
                    format!("{dp}.percent"),
                    format!("percentage {p} is not in range 0..100"),
                );
            }
            match (&d.fixed_delay, &d.exponential_delay) {
                (Some(fd), None) => r.check(format!("{dp}.fixedDelay"), validate_duration(fd)),
                (None, Some(_)) => r.error(
                    format!("{dp}.exponentialDelay"),
                    "exponentialDelay is not supported",
                ),
                (Some(_), Some(_)) => r.error(dp, "set only one of fixedDelay or exponentialDelay"),
                (None, None) => r.error(dp, "a delay needs fixedDelay"),
            }
        }
    }
    if let Some(p) = h.mirror_percent {
        if p > 100 {
            r.error(
                format!("{path}.mirrorPercent"),
                format!("mirrorPercent must have a max value of 100 (it has {p})"),
            );
        }
        r.warn(
            format!("{path}.mirrorPercent"),
            "using deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead",
        );
    }
    if let Some(p) = &h.mirror_percentage
        && !(0.0..=100.0).contains(&p.value)
    {
        r.error(
            format!("{path}.mirrorPercentage.value"),
            format!(
                "mirrorPercentage must be in range 0..100 (it has {})",
                p.value
            ),
        );
    }
    if h.mirror.is_some() && !h.mirrors.is_empty() {
        r.error(
            format!("{path}.mirrors"),
            "HTTP route cannot contain both mirror and mirrors",
        );
    }
    if let Some(m) = &h.mirror {
        destination(r, &format!("{path}.mirror"), m);
    }
    for (i, m) in h.mirrors.iter().enumerate() {
        let mp = format!("{path}.mirrors[{i}]");
        destination(r, &format!("{mp}.destination"), &m.destination);
        if let Some(p) = &m.percentage
            && !(0.0..=100.0).contains(&p.value)
        {
            r.error(
                format!("{mp}.percentage.value"),
                format!(
                    "mirror percentage must be in range 0..100 (it has {})",
                    p.value
                ),
            );
        }
    }
    if let Some(rd) = &h.redirect {
        let rp = format!("{path}.redirect");
        if rd.uri.is_none()
            && rd.authority.is_none()
            && rd.port.is_none()
            && rd.derive_port.is_none()
            && rd.scheme.is_none()
        {
            r.error(
                rp.clone(),
                "redirect must specify uri, authority, scheme, or port",
            );
        }
        if rd.port.is_some() && rd.derive_port.is_some() {
            r.error(
                format!("{rp}.derivePort"),
                "set only one of port or derivePort",
            );
        }
        if let Some(c) = rd.redirect_code
            && !(300..=399).contains(&c)
        {
            r.error(
                format!("{rp}.redirectCode"),
                format!("{c} is not a valid redirect code, must be 3xx"),
            );
        }
        if let Some(s) = &rd.scheme
            && s != "http"
            && s != "https"
        {
            r.error(
                format!("{rp}.scheme"),
                "invalid redirect scheme, must be \"http\" or \"https\"",
            );
        }
        if let Some(p) = rd.port {
            r.check(format!("{rp}.port"), validate_port(p.into()));
        }
    }
    if let Some(d) = &h.direct_response {
        let dp = format!("{path}.directResponse");
        if !(200..=599).contains(&d.status) {
            r.error(
                format!("{dp}.status"),
                format!("HTTP status {} is not in range 200-599", d.status),
            );
        }
        if let Some(b) = &d.body {
            match (&b.string, &b.bytes) {
                (Some(_), Some(_)) => {
                    r.error(format!("{dp}.body"), "set only one of string or bytes")
                }
                (None, None) => r.error(format!("{dp}.body"), "set one of string or bytes"),
                _ => {}
            }
            let size = b
                .string
                .as_ref()
                .or(b.bytes.as_ref())
                .map_or(0, String::len);
            if size > 1024 * 1024 {
                r.error(
                    format!("{dp}.body"),
                    "direct response bodies must be less than 1MB",
                );
            } else if size > 100 * 1024 {
                r.warn(
                    format!("{dp}.body"),
                    "large direct response bodies may slow the control plane down",
                );
            }
        }
    }
    if let Some(rt) = &h.retries {
        let rp = format!("{path}.retries");
        let attempts = rt.attempts.unwrap_or(0);
        if attempts < 0 {
            r.error(format!("{rp}.attempts"), "attempts cannot be negative");
        }
        if attempts == 0
            && (rt.per_try_timeout.is_some()
                || rt.retry_on.is_some()
                || rt.retry_remote_localities.is_some())
        {
            r.error(
                rp.clone(),
                "http retry policy configured when attempts are set to 0 (disabled)",
            );
        }
        if let Some(d) = &rt.per_try_timeout {
            r.check(format!("{rp}.perTryTimeout"), validate_duration(d));
        }
        if let Some(d) = &rt.backoff {
            r.check(format!("{rp}.backoff"), validate_duration(d));
        }
        if let Some(on) = &rt.retry_on {
            for policy in on.split(',') {
                let is_status = policy
                    .parse::<u16>()
                    .is_ok_and(|c| (100..=599).contains(&c));
                if !is_status && !RETRY_ON_POLICIES.contains(&policy) {
                    r.error(
                        format!("{rp}.retryOn"),
                        format!("{policy:?} is not a valid retryOn policy; use an HTTP status code or one of {}", RETRY_ON_POLICIES.join(", ")),
                    );
                }
            }
        }
    }
    if let Some(rw) = &h.rewrite {
        let rp = format!("{path}.rewrite");
        if rw.uri.is_some() && rw.uri_regex_rewrite.is_some() {
            r.error(
                rp.clone(),
                "rewrite may only contain one of uri or uriRegexRewrite",
            );
        }
        if rw.uri.is_none() && rw.uri_regex_rewrite.is_none() && rw.authority.is_none() {
            r.error(
                rp.clone(),
                "rewrite must specify at least one of uri, uriRegexRewrite, or authority",
            );
        }
        if let Some(rr) = &rw.uri_regex_rewrite {
            match (&rr.r#match, &rr.rewrite) {
                (Some(m), Some(w)) if !m.is_empty() && !w.is_empty() => {
                    r.check(format!("{rp}.uriRegexRewrite.match"), validate_regex(m));
                }
                _ => r.error(
                    format!("{rp}.uriRegexRewrite"),
                    "uriRegexRewrite requires both rewrite and match fields to be specified",
                ),
            }
        }
        let authority_headers =
            h.headers
                .as_ref()
                .and_then(|hs| hs.request.as_ref())
                .is_some_and(|o| {
                    o.set.keys().chain(o.add.keys()).any(|k| {
                        k.eq_ignore_ascii_case(":authority") || k.eq_ignore_ascii_case("host")
                    })
                });
        if rw.authority.is_some() && authority_headers {
            r.error(format!("{rp}.authority"), "authority header cannot be set multiple times (rewrite.authority and headers.request)");
        }
    }
    http_route_destinations(r, path, &h.route);
    if let Some(t) = &h.timeout {
        r.check(format!("{path}.timeout"), validate_duration(t));
    }
}

const GRPC_STATUS: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

fn percentage(r: &mut Report<'_>, path: &str, p: Option<&Percent>) {
    if let Some(p) = p {
        let v = p.value;
        if !(0.0..=100.0).contains(&v) || (v > 0.0 && v < 0.0001) {
            r.error(
                format!("{path}.value"),
                format!("percentage {v} is neither 0.0, nor in range [0.0001, 100.0]"),
            );
        }
    }
}

fn headers(r: &mut Report<'_>, path: &str, h: &Headers) {
    let check = |r: &mut Report<'_>, p: &str, ops: &HeaderOperations, request: bool| {
        for (field, map) in [("set", &ops.set), ("add", &ops.add)] {
            for (name, value) in map {
                let hp = crate::yaml::join_key(&format!("{p}.{field}"), name);
                if let Err(e) = header_operation_name(name, request) {
                    r.error(hp.clone(), e);
                }
                if value
                    .chars()
                    .any(|c| (c as u32) < 0x20 && c != '\t' || c == '\u{7f}')
                {
                    r.error(
                        hp,
                        format!("header value {value:?} contains control characters"),
                    );
                }
            }
        }
        for (i, name) in ops.remove.iter().enumerate() {
            if let Err(e) = header_operation_name(name, false) {
                r.error(format!("{p}.remove[{i}]"), e);
            }
        }
    };
    if let Some(ops) = &h.request {
        check(r, &format!("{path}.request"), ops, true);
    }
    if let Some(ops) = &h.response {
        check(r, &format!("{path}.response"), ops, false);
    }
}

/// Names that may be set or removed; `request` allows the authority (set) headers.
fn header_operation_name(name: &str, request_set: bool) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".to_owned());
    }
    let authority = name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host");
    if request_set && authority {
        return Ok(());
    }
    if name.eq_ignore_ascii_case("host") {
        return Err(format!("invalid header {name:?}: cannot set Host header"));
    }
    if name.starts_with(':') {
        return Err(format!(
            "invalid header {name:?}: header cannot have \":\" prefix"
        ));
    }
    Ok(())
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

fn http_route_destinations(r: &mut Report<'_>, path: &str, route: &[HttpRouteDestination]) {
    for (i, d) in route.iter().enumerate() {
        if let Some(h) = &d.headers {
            headers(r, &format!("{path}.route[{i}].headers"), h);
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

/// Istio's unreachable-rule warnings: a rule after one without `match`, and matches
/// that repeat an earlier one.
fn unreachable_rules(r: &mut Report<'_>, vs: &VirtualService) {
    let mut catch_all: Option<usize> = None;
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (i, route) in vs.http.iter().enumerate() {
        if let Some(first) = catch_all {
            r.warn(
                format!("spec.http[{i}]"),
                format!(
                    "this rule is never used: rule {first} has no match and takes every request"
                ),
            );
            continue;
        }
        if route.r#match.is_empty() {
            catch_all = Some(i);
            continue;
        }
        let mut dups = 0;
        for (j, m) in route.r#match.iter().enumerate() {
            let mut key = m.clone();
            key.name = None;
            let key = serde_json::to_string(&key).unwrap_or_default();
            if let Some((_, prev)) = seen.iter().find(|(k, _)| *k == key) {
                r.warn(
                    format!("spec.http[{i}].match[{j}]"),
                    format!("this match is never used: rule {prev} has the same match"),
                );
                dups += 1;
            } else {
                seen.push((key, i));
            }
        }
        if dups == route.r#match.len() {
            r.warn(
                format!("spec.http[{i}]"),
                "this rule is never used: all its matches are used by prior rules",
            );
        }
    }
}
