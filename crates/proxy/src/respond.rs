//! Responses the proxy makes itself: errors (with the text Envoy answers, so clients and
//! people see what they know), redirects and direct responses. Each sets the record's
//! status and flag.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::config::RedirectRt;
use crate::forward::RespBody;
use crate::record::{BodyBroke, Pending};
use crate::{Error, ResponseFlag};

/// The response for a request that failed before the upstream answered.
pub(crate) fn error(e: &Error, flag: ResponseFlag, mut rec: Pending) -> Response<RespBody> {
    tracing::debug!(error = %e, flag = %flag, "request failed");
    // The upstream send failed because the downstream's body broke off: the fault is
    // the client's, whatever the upstream side saw.
    match rec.record().and_then(|r| r.body_broke()) {
        Some(BodyBroke::Gone) => {
            // No one is left to read an answer; the record says `DC`.
            rec.respond(0, ResponseFlag::DownstreamConnectionTermination);
            return local(StatusCode::BAD_REQUEST, "downstream went away\n", rec);
        }
        Some(BodyBroke::BadFraming) => {
            if let Some(r) = rec.record() {
                r.details = Some("invalid chunked encoding in the request body".into());
            }
            rec.respond(400, ResponseFlag::DownstreamProtocolError);
            return local(
                StatusCode::BAD_REQUEST,
                "invalid request body framing\n",
                rec,
            );
        }
        None => {}
    }
    let (status, body) = match flag {
        ResponseFlag::UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, "upstream request timeout"),
        ResponseFlag::StreamIdleTimeout => {
            // As Envoy: 408 and its body text; the record says how long.
            if let Some(r) = rec.record() {
                r.details = Some(e.to_string().into());
            }
            (StatusCode::REQUEST_TIMEOUT, "stream timeout")
        }
        ResponseFlag::NoHealthyUpstream => (StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream"),
        ResponseFlag::UpstreamConnectFailure => (
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
        ),
        ResponseFlag::UpstreamOverflow => {
            // As Envoy: the reason in the body, `x-envoy-overloaded`, and which limit in
            // the record's details.
            if let Some(r) = rec.record() {
                r.details = Some(e.to_string().into());
            }
            rec.respond(StatusCode::SERVICE_UNAVAILABLE.as_u16(), flag);
            let mut resp = local(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream connect error or disconnect/reset before headers. reset reason: overflow",
                rec,
            );
            resp.headers_mut()
                .insert("x-envoy-overloaded", HeaderValue::from_static("true"));
            return resp;
        }
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
        ),
    };
    rec.respond(status.as_u16(), flag);
    local(status, body, rec)
}

/// A route's `redirect`.
pub(crate) fn redirect(
    rd: &RedirectRt,
    req: &Request<Incoming>,
    authority: &str,
    mut rec: Pending,
) -> Response<RespBody> {
    let request_scheme = req.uri().scheme_str().unwrap_or("http");
    let scheme = rd.scheme.as_deref().unwrap_or(request_scheme);
    let host = match (&rd.authority, rd.port) {
        (Some(a), Some(p)) => format!("{}:{p}", crate::config::strip_port(a)),
        (Some(a), None) => a.to_string(),
        (None, Some(p)) => format!("{}:{p}", crate::config::strip_port(authority)),
        // As Envoy: when the scheme changes, the old scheme's default port goes
        // (`http://a:80` → `https://a`); any other port stays.
        (None, None) => {
            let host = crate::config::strip_port(authority);
            let port = &authority[host.len()..];
            let default = match request_scheme {
                "https" => ":443",
                _ => ":80",
            };
            if scheme != request_scheme && port == default {
                host.to_owned()
            } else {
                authority.to_owned()
            }
        }
    };
    let path = rd.uri.as_deref().unwrap_or(req.uri().path());
    let location = match (req.uri().query(), path.contains('?')) {
        (Some(q), false) => format!("{scheme}://{host}{path}?{q}"),
        _ => format!("{scheme}://{host}{path}"),
    };
    rec.respond(rd.status.as_u16(), ResponseFlag::None);
    let mut resp = local(rd.status, "", rec);
    match HeaderValue::try_from(location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR,
    }
    resp
}

/// A response made by the proxy itself.
pub(crate) fn local(status: StatusCode, body: &'static str, rec: Pending) -> Response<RespBody> {
    local_bytes(status, Bytes::from_static(body.as_bytes()), rec)
}

/// [`local`] with a body made at run time.
pub(crate) fn local_bytes(status: StatusCode, body: Bytes, mut rec: Pending) -> Response<RespBody> {
    let has_body = !body.is_empty();
    let mut resp = Response::new(RespBody::full(body, rec.take()));
    *resp.status_mut() = status;
    if has_body {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    resp
}
