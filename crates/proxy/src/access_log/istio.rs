//! The access-log lines Istio's sidecars write by default: Envoy's text format with
//! Istio's default fields (`meshConfig.accessLogEncoding: TEXT`), or the same fields
//! as a JSON object (`accessLogEncoding: JSON`):
//!
//! ```text
//! [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%
//! ```
//!
//! What skiff does not know is `-` (JSON: `null`): the upstream service time header
//! (skiff does not set it), the upstream local address, the connection termination and
//! transport failure details. `%RESPONSE_CODE_DETAILS%` carries why the proxy refused
//! or ended a request, as Envoy's does (spaces made `_`): skiff's denial reasons stay in
//! the line.

use crate::record::{Record, RequestHead};

use super::{push_u64, version_str, write_time};

/// The request headers Istio's format shows, kept in the record only when it is on.
#[derive(Debug, Default)]
pub(crate) struct Headers {
    pub(crate) user_agent: Option<http::HeaderValue>,
    pub(crate) request_id: Option<http::HeaderValue>,
    pub(crate) forwarded_for: Option<http::HeaderValue>,
    pub(crate) original_path: Option<http::HeaderValue>,
}

impl Headers {
    pub(crate) fn of(h: &http::HeaderMap) -> Box<Headers> {
        Box::new(Headers {
            user_agent: h.get(http::header::USER_AGENT).cloned(),
            request_id: h.get("x-request-id").cloned(),
            forwarded_for: h.get("x-forwarded-for").cloned(),
            original_path: h.get("x-envoy-original-path").cloned(),
        })
    }
}

/// The fields of one line, `None` where Envoy writes `-`.
struct Fields<'a> {
    method: Option<&'a str>,
    path: Option<&'a str>,
    protocol: Option<&'static str>,
    code: u16,
    flags: String,
    details: Option<String>,
    bytes_received: u64,
    bytes_sent: u64,
    duration: u64,
    forwarded_for: Option<&'a str>,
    user_agent: Option<&'a str>,
    request_id: Option<&'a str>,
    authority: Option<&'a str>,
    upstream_host: Option<&'a str>,
    upstream_cluster: Option<&'a str>,
    downstream_local: String,
    downstream_remote: String,
    server_name: Option<&'a str>,
    route: Option<&'a str>,
}

fn header(h: Option<&Headers>, f: impl Fn(&Headers) -> Option<&http::HeaderValue>) -> Option<&str> {
    h.and_then(f).and_then(|v| v.to_str().ok())
}

fn fields<'a>(r: &'a Record, head: Option<&'a RequestHead>) -> Fields<'a> {
    let h = head.and_then(|h| h.istio.as_deref());
    let path = head.map(|head| {
        header(h, |h| h.original_path.as_ref())
            .unwrap_or_else(|| head.uri.path_and_query().map_or("/", |p| p.as_str()))
    });
    let details = r
        .details
        .as_deref()
        .map(|d| d.replace(' ', "_"))
        .or_else(|| {
            (head.is_some() && r.upstream.is_some() && r.status > 0)
                .then(|| "via_upstream".to_owned())
        });
    Fields {
        method: head.map(|h| h.method.as_str()),
        path,
        protocol: head.map(|h| version_str(h.version)),
        code: r.status,
        flags: super::flags(r).into_owned(),
        details,
        bytes_received: r.bytes_in(),
        bytes_sent: r.bytes_out,
        duration: r.started.elapsed().as_millis() as u64,
        forwarded_for: header(h, |h| h.forwarded_for.as_ref()),
        user_agent: header(h, |h| h.user_agent.as_ref()),
        request_id: header(h, |h| h.request_id.as_ref()),
        authority: head.and_then(RequestHead::authority),
        upstream_host: r.upstream.as_ref().map(|u| &*u.display),
        upstream_cluster: r.cluster.as_deref(),
        downstream_local: r.conn.local.to_string(),
        downstream_remote: r.conn.peer.to_string(),
        server_name: r.conn.tls.as_ref().and_then(|t| t.sni.as_deref()),
        route: r.route.as_deref(),
    }
}

/// Istio's default text line.
pub(crate) fn text_line(buf: &mut Vec<u8>, r: &Record, head: Option<&RequestHead>) {
    let f = fields(r, head);
    let dash = |s: Option<&str>| s.unwrap_or("-").to_owned();
    write_time(buf, r.start);
    buf.extend_from_slice(
        format!(
            " \"{} {} {}\" ",
            dash(f.method),
            dash(f.path),
            dash(f.protocol)
        )
        .as_bytes(),
    );
    push_u64(buf, u64::from(f.code));
    let rest = format!(
        " {} {} - \"-\" {} {} {} - \"{}\" \"{}\" \"{}\" \"{}\" \"{}\" {} - {} {} {} {}",
        f.flags,
        f.details.as_deref().unwrap_or("-"),
        f.bytes_received,
        f.bytes_sent,
        f.duration,
        dash(f.forwarded_for),
        dash(f.user_agent),
        dash(f.request_id),
        dash(f.authority),
        dash(f.upstream_host),
        dash(f.upstream_cluster),
        f.downstream_local,
        f.downstream_remote,
        dash(f.server_name),
        dash(f.route),
    );
    buf.extend_from_slice(rest.as_bytes());
}

/// The same fields as Istio's JSON encoding names them.
pub(crate) fn json_line(buf: &mut Vec<u8>, r: &Record, head: Option<&RequestHead>) {
    let f = fields(r, head);
    let mut start = Vec::new();
    write_time(&mut start, r.start);
    let start = String::from_utf8_lossy(&start[1..start.len() - 1]).into_owned();
    let v = serde_json::json!({
        "start_time": start,
        "method": f.method,
        "path": f.path,
        "protocol": f.protocol,
        "response_code": f.code,
        "response_flags": f.flags,
        "response_code_details": f.details,
        "connection_termination_details": null,
        "upstream_transport_failure_reason": null,
        "bytes_received": f.bytes_received,
        "bytes_sent": f.bytes_sent,
        "duration": f.duration,
        "upstream_service_time": null,
        "x_forwarded_for": f.forwarded_for,
        "user_agent": f.user_agent,
        "request_id": f.request_id,
        "authority": f.authority,
        "upstream_host": f.upstream_host,
        "upstream_cluster": f.upstream_cluster,
        "upstream_local_address": null,
        "downstream_local_address": f.downstream_local,
        "downstream_remote_address": f.downstream_remote,
        "requested_server_name": f.server_name,
        "route_name": f.route,
    });
    let _ = serde_json::to_writer(&mut *buf, &v);
}
