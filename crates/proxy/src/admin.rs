//! The admin listener (`:15000`), for people and for the tools that start proxies:
//!
//! - `GET /ready`: 200 once a config is in service, 503 before;
//! - `GET /config_dump`: the config in service as JSON, with its version, the warnings
//!   it raised, the last rejected update and where the listeners are;
//! - `GET /certs`: the mesh certificate in service (SPIFFE id, serial, validity) and
//!   the number of trusted roots, as Envoy's `/certs`;
//! - `GET /failures`: the recent failed requests (oldest first; a fixed number kept),
//!   for `skiff explain`: request id, status, response flags, route, cluster, upstream
//!   host, attempts and why;
//! - `GET /stats/prometheus` (and `/metrics`): Istio's standard metrics and the
//!   process metrics in the Prometheus text format, as Envoy's `:15090` and the
//!   pilot-agent's merged `:15020` serve them;
//! - `GET /logging`: the process's log filter; `POST /logging?level=LEVEL` sets it
//!   (`trace`, `debug`, `info`, `warn`, `error`, `off`), as Envoy's `/logging`; 501 when
//!   the process that runs the proxy installed no [`LogControl`];
//! - `POST /quitquitquit`: drain and exit.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::Proxy;

/// Reads and changes the log filter of the process a proxy runs in. The program that
/// sets up logging installs one ([`set_log_control`]); `/logging` uses it.
pub trait LogControl: Send + Sync {
    /// The filter in force (e.g. `info`, `debug`).
    fn current(&self) -> String;
    /// Replaces the filter; an error says why it was refused.
    fn set(&self, filter: &str) -> Result<(), String>;
}

static LOG_CONTROL: std::sync::OnceLock<Box<dyn LogControl>> = std::sync::OnceLock::new();

/// Installs the process's [`LogControl`] (once; a second call is refused and returns
/// `false`).
pub fn set_log_control(control: Box<dyn LogControl>) -> bool {
    LOG_CONTROL.set(control).is_ok()
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// `GET /logging` and `POST /logging?level=…`.
fn logging(method: &Method, query: Option<&str>) -> Response<Full<Bytes>> {
    let Some(control) = LOG_CONTROL.get() else {
        return text(
            StatusCode::NOT_IMPLEMENTED,
            "this process set up no changeable log filter; its level is SKIFF_LOG's at start\n",
        );
    };
    if *method == Method::POST {
        let level = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|kv| kv.strip_prefix("level="));
        let Some(level) = level.filter(|l| LEVELS.contains(l)) else {
            return text(
                StatusCode::BAD_REQUEST,
                "use POST /logging?level=trace|debug|info|warn|error|off\n",
            );
        };
        if let Err(e) = control.set(level) {
            return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n"));
        }
        tracing::info!(level, "log level changed through the admin endpoint");
    } else if *method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST\n");
    }
    json(&serde_json::json!({ "level": control.current() }))
}

pub(crate) async fn serve(listener: TcpListener, proxy: Proxy) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&proxy, req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn handle(proxy: &Proxy, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/ready" | "/healthz/ready") => {
            if proxy.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: no config yet\n",
                )
            }
        }
        (&Method::GET, "/config_dump") => {
            let snapshot = proxy.snapshot();
            let rejected = proxy.last_rejected().map(
                |(version, reason)| serde_json::json!({ "version": version, "reason": reason }),
            );
            let gateway: serde_json::Map<String, serde_json::Value> = proxy
                .gateway_addrs()
                .into_iter()
                .map(|(port, addr)| (port.to_string(), addr.to_string().into()))
                .collect();
            let listeners = serde_json::json!({
                "admin": proxy.admin_addr().to_string(),
                "outbound": proxy.outbound_addr().map(|a| a.to_string()),
                "inbound": proxy.inbound_addr().map(|a| a.to_string()),
                "gateway": gateway,
            });
            let dump = serde_json::json!({
                "listeners": listeners,
                "version": snapshot.as_ref().map(|s| s.version()),
                "config": snapshot.as_ref().map(|s| s.config()),
                "warnings": snapshot.as_ref().map(|s| s.warnings()).unwrap_or_default(),
                "upstreams": snapshot.as_ref().map(|s| s.upstream_status()),
                "lastRejected": rejected,
            });
            match serde_json::to_vec_pretty(&dump) {
                Ok(body) => {
                    let mut r = Response::new(Full::new(Bytes::from(body)));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    r
                }
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
            }
        }
        (&Method::GET, "/certs") => json(&certs(proxy)),
        (&Method::GET, "/failures") => json(&serde_json::json!({
            "proxy": proxy.id(),
            "capacity": crate::failures::CAPACITY,
            "failures": proxy.recent_failures(),
        })),
        (&Method::GET, "/stats/prometheus" | "/metrics") => {
            let mut r = Response::new(Full::new(Bytes::from(proxy.prometheus_text())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (m, "/logging") => logging(m, req.uri().query()),
        (&Method::POST, "/quitquitquit") => {
            proxy.request_shutdown();
            text(StatusCode::OK, "draining\n")
        }
        (_, "/quitquitquit") => text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "endpoints: GET /ready, GET /config_dump, GET /certs, GET /failures, GET /stats/prometheus, GET|POST /logging, POST /quitquitquit\n",
        ),
    }
}

/// `{"certificates": [...], "trustBundleRoots": n}`: empty without a mesh identity or
/// before the first certificate.
fn certs(proxy: &Proxy) -> serde_json::Value {
    let Some(tls) = proxy.mesh_tls() else {
        return serde_json::json!({ "certificates": [], "trustBundleRoots": 0 });
    };
    let certificates: Vec<serde_json::Value> = tls
        .current_cert()
        .map(|cert| {
            serde_json::json!({
                "spiffeId": cert.id().to_string(),
                "serialNumber": cert.serial_hex(),
                "notBefore": rfc3339(cert.not_before()),
                "notAfter": rfc3339(cert.not_after()),
                "chainLength": cert.chain().certs().len(),
                "valid": (cert.not_before()..cert.not_after()).contains(&std::time::SystemTime::now()),
            })
        })
        .into_iter()
        .collect();
    serde_json::json!({
        "certificates": certificates,
        "trustBundleRoots": tls.bundle().roots().len(),
    })
}

fn rfc3339(at: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn json(value: &serde_json::Value) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *r.status_mut() = status;
    r
}
