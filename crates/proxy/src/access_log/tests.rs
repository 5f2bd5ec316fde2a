use super::*;
use crate::ResponseFlag;
use crate::app::ProxyInputs;
use crate::conn::{Conn, Role};
use crate::record::Record;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use std::time::Duration;

#[test]
fn dates() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
}

#[test]
fn time_format() {
    let mut b = Vec::new();
    write_time(
        &mut b,
        UNIX_EPOCH + Duration::from_millis(1_714_564_800_123),
    );
    assert_eq!(String::from_utf8(b).unwrap(), "[2024-05-01T12:00:00.123Z]");
}

/// A connection context whose records go to an in-memory log.
fn conn() -> (Arc<Conn>, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let log = AccessLog::new(AccessLogTarget::Memory(lines.clone()));
    let inputs = ProxyInputs::new(
        log,
        auto::Builder::new(TokioExecutor::new()),
        None,
        crate::Limits::default(),
    );
    let (_trigger, drain) = crate::drain::channel();
    let addr = "127.0.0.1:1".parse().unwrap();
    (
        Conn::accepted(inputs, Role::Outbound, addr, addr, drain),
        lines,
    )
}

#[test]
fn line_shape() {
    let (conn, lines) = conn();
    let req = http::Request::get("http://backend:8080/a?b=1")
        .body(())
        .unwrap();
    let mut p = Record::http(&conn, &req);
    p.respond(404, ResponseFlag::NoRoute);
    drop(p);
    let line = lines.lock().unwrap()[0].clone();
    assert!(
        line.ends_with("\"GET /a?b=1 HTTP/1.1\" 404 NR 0 0 0 \"-\" \"backend:8080\" - -"),
        "{line}"
    );
    let mut tcp = Record::tcp(&conn);
    tcp.bytes_in = crate::record::BytesIn::Known(3);
    tcp.bytes_out = 4;
    tcp.route = Some("r".into());
    tcp.cluster = Some("c".into());
    tcp.finish();
    let line = lines.lock().unwrap()[1].clone();
    assert!(
        line.ends_with("\"- - -\" 0 - 3 4 0 \"-\" \"-\" r c"),
        "{line}"
    );
}

#[test]
fn numbers_and_versions() {
    let mut b = Vec::new();
    for n in [0, 7, 10, 1234567890, u64::MAX] {
        b.clear();
        push_u64(&mut b, n);
        assert_eq!(String::from_utf8(b.clone()).unwrap(), n.to_string());
    }
    assert_eq!(version_str(http::Version::HTTP_2), "HTTP/2");
    // The cached second does not leak into the next one.
    let mut b = Vec::new();
    write_time(
        &mut b,
        UNIX_EPOCH + Duration::from_millis(1_714_564_800_999),
    );
    b.clear();
    write_time(
        &mut b,
        UNIX_EPOCH + Duration::from_millis(1_714_564_801_005),
    );
    assert_eq!(String::from_utf8(b).unwrap(), "[2024-05-01T12:00:01.005Z]");
}

#[test]
fn dropped_request_is_dc() {
    let (conn, lines) = conn();
    let req = http::Request::get("/x")
        .header("host", "svc")
        .body(())
        .unwrap();
    drop(Record::http(&conn, &req));
    assert!(
        lines.lock().unwrap()[0].contains(" 0 DC "),
        "{:?}",
        lines.lock().unwrap()
    );
}

/// A connection context whose records go to an in-memory log in `format`.
fn conn_with(format: AccessLogFormat) -> (Arc<Conn>, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let log = AccessLog::with_format(AccessLogTarget::Memory(lines.clone()), format);
    let inputs = ProxyInputs::new(
        log,
        auto::Builder::new(TokioExecutor::new()),
        None,
        crate::Limits::default(),
    );
    let (_trigger, drain) = crate::drain::channel();
    let peer = "127.0.0.2:5555".parse().unwrap();
    let local = "127.0.0.1:15001".parse().unwrap();
    (
        Conn::accepted(inputs, Role::Outbound, peer, local, drain),
        lines,
    )
}

#[test]
fn istio_text_line_has_istios_default_fields() {
    let (conn, lines) = conn_with(AccessLogFormat::Istio);
    let req = http::Request::get("http://backend:8080/a?b=1")
        .header("user-agent", "curl/8")
        .header("x-request-id", "r-1")
        .body(())
        .unwrap();
    let mut p = Record::http(&conn, &req);
    p.respond(403, ResponseFlag::None);
    if let Some(r) = p.record() {
        r.details = Some("rbac_access_denied_matched_policy[prod/deny] denied by policy".into());
        r.route = Some("default".into());
        r.cluster = Some("outbound|8080||backend.prod.svc.cluster.local".into());
    }
    drop(p);
    let line = lines.lock().unwrap()[0].clone();
    let (_, rest) = line.split_once("] ").expect("a start time");
    assert_eq!(
        rest,
        "\"GET /a?b=1 HTTP/1.1\" 403 - rbac_access_denied_matched_policy[prod/deny]_denied_by_policy - \"-\" 0 0 0 - \"-\" \"curl/8\" \"r-1\" \"backend:8080\" \"-\" outbound|8080||backend.prod.svc.cluster.local - 127.0.0.1:15001 127.0.0.2:5555 - default"
    );
}

#[test]
fn istio_json_line_names_the_same_fields() {
    let (conn, lines) = conn_with(AccessLogFormat::IstioJson);
    let req = http::Request::get("http://backend:8080/a")
        .body(())
        .unwrap();
    let mut p = Record::http(&conn, &req);
    p.respond(503, ResponseFlag::FaultInjected);
    drop(p);
    let line = lines.lock().unwrap()[0].clone();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/a");
    assert_eq!(v["protocol"], "HTTP/1.1");
    assert_eq!(v["response_code"], 503);
    assert_eq!(v["response_flags"], "FI");
    assert_eq!(v["authority"], "backend:8080");
    assert_eq!(v["downstream_remote_address"], "127.0.0.2:5555");
    assert!(v["user_agent"].is_null());
    assert!(v["start_time"].as_str().unwrap().ends_with('Z'));
    let mut tcp = Record::tcp(&conn);
    tcp.bytes_out = 4;
    tcp.finish();
    let v: serde_json::Value = serde_json::from_str(&lines.lock().unwrap()[1]).unwrap();
    assert!(v["method"].is_null());
    assert_eq!(v["bytes_sent"], 4);
}
