//! The control plane's debug endpoint: plain HTTP/1.1, JSON bodies.
//!
//! | path | what |
//! |---|---|
//! | `/debug/syncz` | per-proxy sync state: versions sent and acknowledged, NACK reasons (a JSON array of [`SyncRow`](skiff_xds::SyncRow)) |
//! | `/debug/config_dump?proxy=ID` | the compiled config of one proxy, with its version and the snapshot generation |
//! | `/debug/configz` | the status of the latest reload: errors and warnings with file:line ([`ConfigStatus`](crate::ConfigStatus)) |
//! | `/debug` | the control plane's version and this list |
//! | `/ready` | 200 once a configuration is being served, 503 before |

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::ControlPlane;

/// Serves the debug endpoint on `listener` until `shutdown` completes; then open
/// connections are closed.
pub async fn serve(
    listener: TcpListener,
    plane: Arc<ControlPlane>,
    shutdown: impl Future<Output = ()>,
) {
    tracing::info!(address = ?listener.local_addr().ok(), "debug endpoint listening");
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "debug endpoint: accept failed");
                    // Typically out of file descriptors: back off briefly.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let plane = plane.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let plane = plane.clone();
                async move { Ok::<_, Infallible>(handle(&plane, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = conn.await {
                tracing::debug!(%peer, %error, "debug connection ended with an error");
            }
        });
    }
    connections.shutdown().await;
}

/// Answers one request.
pub(crate) fn handle(plane: &ControlPlane, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "only GET is supported"}),
        );
    }
    let query = req.uri().query().unwrap_or_default();
    match req.uri().path() {
        "/debug/syncz" => {
            let snapshot = plane.snapshot();
            json_response(StatusCode::OK, &plane.sync().rows(&snapshot))
        }
        "/debug/config_dump" => config_dump(plane, query_param(query, "proxy").as_deref()),
        "/debug/configz" => json_response(StatusCode::OK, &*plane.status()),
        "/debug/prometheus_sd" => json_response(StatusCode::OK, &prometheus_sd(plane)),
        "/metrics" | "/stats/prometheus" => {
            let mut registry = prometheus_client::registry::Registry::default();
            plane.sync().register_metrics(&mut registry);
            let mut text = String::new();
            match prometheus_client::encoding::prometheus_text::encode(&mut text, &registry) {
                Ok(()) => {
                    let mut r = text_response(StatusCode::OK, text);
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    r
                }
                Err(e) => text_response(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            }
        }
        "/ready" => ready(plane),
        "/" | "/debug" => json_response(
            StatusCode::OK,
            &json!({"version": env!("CARGO_PKG_VERSION"), "endpoints": ["/debug/syncz", "/debug/config_dump?proxy=ID", "/debug/configz", "/debug/prometheus_sd", "/metrics", "/ready"]}),
        ),
        other => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no such endpoint: {other}"), "endpoints": ["/debug/syncz", "/debug/config_dump?proxy=ID", "/debug/configz", "/debug/prometheus_sd", "/metrics", "/ready"]}),
        ),
    }
}

/// The proxies to scrape, in Prometheus' HTTP service discovery format
/// (`http_sd_configs`; the same JSON as a `file_sd_configs` file): per proxy with an
/// address, its pilot-agent port (`<address>:15020`, where `skiff proxy` serves
/// `/stats/prometheus` by default), labelled with the proxy's id, namespace and kind.
fn prometheus_sd(plane: &ControlPlane) -> serde_json::Value {
    let snapshot = plane.snapshot();
    let targets: Vec<serde_json::Value> = snapshot
        .proxies()
        .filter_map(|(id, entry)| {
            let node = entry.node();
            let ip = node.address?;
            Some(json!({
                "targets": [std::net::SocketAddr::new(ip, 15020).to_string()],
                "labels": {
                    "__metrics_path__": "/stats/prometheus",
                    "proxy": id,
                    "namespace": node.namespace,
                    "kind": match node.kind {
                        skiff_model::config::ProxyKind::Sidecar => "sidecar",
                        skiff_model::config::ProxyKind::Gateway => "gateway",
                    },
                },
            }))
        })
        .collect();
    serde_json::Value::Array(targets)
}

fn config_dump(plane: &ControlPlane, proxy: Option<&str>) -> Response<Full<Bytes>> {
    let snapshot = plane.snapshot();
    let known: Vec<&str> = snapshot.proxies().map(|(id, _)| id).collect();
    let Some(proxy) = proxy.filter(|p| !p.is_empty()) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "name a proxy: /debug/config_dump?proxy=<name>.<namespace>", "proxies": known}),
        );
    };
    match snapshot.get(proxy) {
        Some(entry) => json_response(
            StatusCode::OK,
            &json!({
                "proxy": proxy,
                "version": entry.version,
                "generation": snapshot.generation(),
                "config": entry.config(),
            }),
        ),
        None => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("proxy {proxy:?} is not in the current snapshot (generation {})", snapshot.generation()), "proxies": known}),
        ),
    }
}

fn ready(plane: &ControlPlane) -> Response<Full<Bytes>> {
    let status = plane.status();
    if status.serving_generation > 0 {
        return text_response(StatusCode::OK, "ready\n".to_owned());
    }
    let why = match status.errors.first() {
        Some(error) => format!("not ready: no valid configuration loaded yet: {error}\n"),
        None if status.reloads == 0 => {
            "not ready: the configuration is not loaded yet\n".to_owned()
        }
        None => "not ready: no valid configuration loaded yet\n".to_owned(),
    };
    text_response(StatusCode::SERVICE_UNAVAILABLE, why)
}

/// The first value of a query parameter, with `%XX` and `+` decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| percent_decode(value))
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(body).unwrap_or_else(|e| {
        format!("{{\"error\": \"cannot encode the response: {e}\"}}").into_bytes()
    });
    body.push(b'\n');
    response(status, "application/json", body)
}

fn text_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    response(status, "text/plain; charset=utf-8", body.into_bytes())
}

fn response(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests;
