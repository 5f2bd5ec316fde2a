//! The OTLP span of a finished request: its name, Istio's tags and its times, made
//! from the request's record when it is finished.

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, Status, status};

use super::Started;
use crate::conn::Role;
use crate::record::Record;

pub(super) fn kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..KeyValue::default()
    }
}

fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

fn text(v: &HeaderValue) -> String {
    String::from_utf8_lossy(v.as_bytes()).into_owned()
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The span's name, as Istio's route decorators make it: the destination service and
/// port, then `/*` (`backend.prod.svc.cluster.local:80/*`). Outbound and at gateways
/// they come from the cluster (`outbound|80||backend.prod.svc.cluster.local`); inbound
/// from the workload's service and the port the caller addressed (80 when its authority
/// names none). Without either, the request's authority.
fn operation(r: &Record, authority: &str) -> String {
    let mut parts = r.cluster.as_deref().unwrap_or("").split('|');
    if let (Some("outbound"), Some(port), Some(_), Some(host)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
        && !host.is_empty()
    {
        return format!("{host}:{port}/*");
    }
    match &r.service {
        Some(s) if r.conn.role == Role::Inbound && &*s.host != "unknown" => {
            let port = authority
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .unwrap_or(80);
            format!("{}:{port}/*", s.host)
        }
        _ => format!("{authority}/*"),
    }
}

/// Makes the span of a finished record and queues it for export.
pub(crate) fn finish(started: &Started, r: &Record) {
    let Some(exporter) = &started.plan.exporter else {
        return;
    };
    exporter.send(span_of(started, r));
}

/// The OTLP span of a finished request, with Istio's tags.
fn span_of(started: &Started, r: &Record) -> Span {
    let plan = &started.plan;
    let own = &plan.own;
    let head = r.request.as_ref();
    let authority = head.and_then(|h| h.authority()).unwrap_or("-");
    let path = head
        .and_then(|h| h.uri.path_and_query())
        .map_or("/", |p| p.as_str());
    let error = r.status >= 500 || r.status == 0;
    let mut attributes = Vec::with_capacity(24);
    if plan.istio_tags {
        attributes.extend([
            kv("component", "proxy".to_owned()),
            kv("node_id", own.node_id.clone()),
            kv("istio.canonical_service", own.canonical_service.clone()),
            kv("istio.canonical_revision", own.canonical_revision.clone()),
            kv("istio.mesh_id", own.mesh_id.clone()),
            kv("istio.namespace", own.namespace.clone()),
            kv("zone", String::new()),
        ]);
    }
    if let Some(h) = head {
        attributes.push(kv("http.method", h.method.as_str().to_owned()));
        attributes.push(kv("http.url", format!("http://{authority}{path}")));
        attributes.push(kv("http.protocol", format!("{:?}", h.version)));
    }
    attributes.extend([
        kv("http.status_code", r.status.to_string()),
        kv("response_flags", r.flag.as_str().to_owned()),
        kv("peer.address", r.conn.peer.ip().to_string()),
        kv_int(
            "request_size",
            i64::try_from(r.bytes_in()).unwrap_or(i64::MAX),
        ),
        kv_int(
            "response_size",
            i64::try_from(r.bytes_out).unwrap_or(i64::MAX),
        ),
        kv(
            "upstream_cluster",
            r.cluster.as_deref().unwrap_or("-").to_owned(),
        ),
        kv(
            "upstream_cluster.name",
            r.cluster.as_deref().unwrap_or("-").to_owned(),
        ),
    ]);
    if let Some(u) = &r.upstream {
        attributes.push(kv("upstream_address", u.display.to_string()));
    }
    if let Some(id) = r.request_id.as_ref().or(started.request_id.as_ref()) {
        attributes.push(kv("guid:x-request-id", text(id)));
    }
    if let Some(ua) = &started.user_agent {
        attributes.push(kv("user_agent", text(ua)));
    }
    if error {
        attributes.push(kv("error", "true".to_owned()));
    }
    for (name, value) in &plan.fixed_tags {
        attributes.push(kv(name, value.clone()));
    }
    for ((name, _, default), value) in plan.header_tags.iter().zip(&started.headers) {
        if let Some(v) = value.as_ref().map(text).or_else(|| default.clone()) {
            attributes.push(kv(name, v));
        }
    }
    let end = r.start + r.started.elapsed();
    Span {
        trace_id: started.trace_id.to_be_bytes().to_vec(),
        span_id: started.span_id.to_be_bytes().to_vec(),
        trace_state: started.tracestate.as_ref().map(text).unwrap_or_default(),
        parent_span_id: started
            .parent
            .map(|p| p.to_be_bytes().to_vec())
            .unwrap_or_default(),
        flags: 1,
        name: operation(r, authority),
        kind: plan.kind as i32,
        start_time_unix_nano: nanos(r.start),
        end_time_unix_nano: nanos(end),
        attributes,
        status: Some(Status {
            message: String::new(),
            code: if error {
                status::StatusCode::Error as i32
            } else {
                status::StatusCode::Unset as i32
            },
        }),
        ..Span::default()
    }
}
