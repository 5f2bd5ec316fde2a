//! Checks of the CORS and fault-injection policies of an HTTP rule.

use crate::networking::{CorsPolicy, HttpFaultInjection};
use crate::types::Percent;
use crate::validate::Report;
use crate::validate::common::{string_match, validate_duration, validate_header_name};

pub(super) fn cors(r: &mut Report<'_>, path: &str, c: &CorsPolicy) {
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
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE"
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

pub(super) fn fault(r: &mut Report<'_>, path: &str, f: &HttpFaultInjection) {
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
        if a.percentage.is_none() {
            r.warn(
                ap.clone(),
                "no percentage: no request is aborted (set percentage.value: 100 to abort every request)",
            );
        }
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
        if d.percentage.is_none() && d.percent.is_none() {
            r.warn(
                dp.clone(),
                "no percentage: no request is delayed (set percentage.value: 100 to delay every request)",
            );
        }
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
