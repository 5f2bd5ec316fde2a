//! Checks of one HTTP rule of a VirtualService.

use crate::networking::{HeaderOperations, Headers, HttpRoute};
use crate::types::HeaderMatch;
use crate::validate::Report;
use crate::validate::common::{
    RETRY_ON_POLICIES, gateway_names, is_dns1123_label, labels, string_match, validate_duration,
    validate_header_name, validate_port, validate_regex,
};
use crate::validate::virtual_service::{destination, http_route_destinations};

use super::policies;

pub(super) fn http_route(r: &mut Report<'_>, path: &str, h: &HttpRoute, in_delegate: bool) {
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
            if let HeaderMatch::Value(crate::types::StringMatch::Prefix(_)) = hm {
                r.warn(
                    crate::yaml::join_key(&format!("{mp}.queryParams"), name),
                    "prefix matching is not supported for query parameters (Istio ignores it); use exact or regex",
                );
            }
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
        policies::cors(r, path, c);
    }
    if let Some(f) = &h.fault {
        policies::fault(r, path, f);
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

pub(super) fn headers(r: &mut Report<'_>, path: &str, h: &Headers) {
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
