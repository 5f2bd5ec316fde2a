//! `skiff dashboard`: a web page of the running mesh, served by skiff itself. The
//! page (built from `crates/cli/web` with npm at development time, embedded here, so
//! users need no Node.js) draws the service graph with cytoscape.js and reads a JSON
//! API:
//!
//! | path | what |
//! |---|---|
//! | `/api/graph?window=SECONDS` | workloads and services as nodes; edges with requests per second, error share, p99 and the mTLS share |
//! | `/api/services?span=SECONDS` | per service the golden metrics of the last minute, and one point per scrape over the span |
//! | `/api/proxies` | each proxy's sync state (as `skiff proxy-status` shows it) and whether its metrics were scraped |
//! | `/api/findings` | the configuration's errors and warnings (`/debug/configz`) and `skiff analyze`'s messages on it |
//!
//! The figures come from the proxies' own metrics, scraped every `--interval` and kept
//! in memory for ten minutes ([`super::stats`]), or with `--prometheus URL` from a
//! Prometheus server, asked in PromQL ([`prometheus`]).

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use skiff_model::MeshOptions;

use super::stats::{Node, Scraped, Scraper, Window, golden_json};

mod prometheus;

use prometheus::Prometheus;

/// The built page (`crates/cli/web/dist`, made by `npm run build` there).
const INDEX_HTML: &str = include_str!("../../web/dist/index.html");
const APP_JS: &str = include_str!("../../web/dist/app.js");
const STYLE_CSS: &str = include_str!("../../web/dist/style.css");

/// How long the dashboard remembers.
const MEMORY: Duration = Duration::from_secs(600);

/// Arguments of `skiff dashboard`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Where the page is served.
    #[arg(long, default_value = "127.0.0.1:20001")]
    pub(crate) listen: SocketAddr,
    /// The control plane's debug HTTP address (it lists the proxies to scrape).
    #[arg(long, default_value = "127.0.0.1:15014", env = "SKIFF_CONTROL_DEBUG")]
    pub(crate) control: SocketAddr,
    /// How often the proxies are scraped: `2s`.
    #[arg(long, default_value = "2s", value_parser = super::stat::parse_duration)]
    pub(crate) interval: Duration,
    /// Print the page's address instead of opening a browser.
    #[arg(long)]
    pub(crate) no_browser: bool,
    /// Query this Prometheus server (`http://host:port`) instead of scraping the
    /// proxies, as Kiali does; it must scrape the proxies itself (e.g. through the
    /// control plane's `/debug/prometheus_sd`).
    #[arg(long, value_name = "URL")]
    pub(crate) prometheus: Option<String>,
}

/// What the scraper keeps and the API reads.
#[derive(Debug)]
struct State {
    window: Window,
    scraped: Vec<Scraped>,
    /// Why the last scrape failed as a whole (the control plane did not answer).
    error: Option<String>,
    scrapes: u64,
}

#[derive(Debug)]
struct Dashboard {
    control: SocketAddr,
    interval: Duration,
    state: Mutex<State>,
    prometheus: Option<Prometheus>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    super::init_tracing();
    super::admin::runtime()?.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let prometheus = match &args.prometheus {
        Some(url) => Some(Prometheus::new(url).await?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let url = format!("http://{}/", listener.local_addr()?);
    let keep = (MEMORY.as_secs_f64() / args.interval.as_secs_f64()).ceil() as usize + 1;
    let dashboard = Arc::new(Dashboard {
        control: args.control,
        interval: args.interval,
        state: Mutex::new(State {
            window: Window::new(keep),
            scraped: Vec::new(),
            error: None,
            scrapes: 0,
        }),
        prometheus,
    });
    tokio::spawn(scrape_forever(dashboard.clone()));
    println!(
        "skiff dashboard: {url} (the mesh of the control plane at {}, {}); Ctrl-C stops",
        args.control,
        match &args.prometheus {
            Some(p) => format!("metrics from the Prometheus server at {p}"),
            None => "metrics scraped from the proxies".to_owned(),
        }
    );
    if !args.no_browser {
        open_browser(&url);
    }
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "dashboard: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let dashboard = dashboard.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let dashboard = dashboard.clone();
                async move { Ok::<_, Infallible>(handle(&dashboard, &req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `xdg-open URL`, or a word that it could not be done.
fn open_browser(url: &str) {
    match std::process::Command::new("xdg-open")
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(_) => {}
        Err(_) => println!("(no browser could be opened: open {url} yourself)"),
    }
}

async fn scrape_forever(dashboard: Arc<Dashboard>) {
    let scraper = Scraper::new(dashboard.control);
    let mut tick = tokio::time::interval(dashboard.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = if dashboard.prometheus.is_some() {
            // Prometheus has the figures; the proxies are listed for the graph's nodes.
            scraper.list().await.map(|scraped| (None, scraped))
        } else {
            scraper
                .scrape()
                .await
                .map(|(s, scraped)| (Some(s), scraped))
        };
        let mut state = dashboard.state.lock().unwrap_or_else(|e| e.into_inner());
        state.scrapes += 1;
        match result {
            Ok((snapshot, scraped)) => {
                if let Some(snapshot) = snapshot {
                    state.window.push(snapshot);
                }
                state.scraped = scraped;
                state.error = None;
            }
            Err(e) => state.error = Some(format!("{e:#}")),
        }
    }
}

async fn handle(dashboard: &Dashboard, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "only GET"}),
        );
    }
    let seconds = |name: &str, default: u64| {
        let value = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default);
        Duration::from_secs(value.clamp(1, MEMORY.as_secs()))
    };
    match req.uri().path() {
        "/" | "/index.html" => response(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML),
        "/app.js" => response(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS),
        "/style.css" => response(StatusCode::OK, "text/css; charset=utf-8", STYLE_CSS),
        "/api/graph" => match graph(dashboard, seconds("window", 60)).await {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(e) => json_response(StatusCode::BAD_GATEWAY, &json!({"error": format!("{e:#}")})),
        },
        "/api/services" => match services(dashboard, seconds("span", 300)).await {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(e) => json_response(StatusCode::BAD_GATEWAY, &json!({"error": format!("{e:#}")})),
        },
        "/api/proxies" => json_response(StatusCode::OK, &proxies(dashboard).await),
        "/api/findings" => json_response(StatusCode::OK, &findings(dashboard.control).await),
        other => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no such page: {other}")}),
        ),
    }
}

/// The service graph over the last `window`.
async fn graph(dashboard: &Dashboard, window: Duration) -> anyhow::Result<Value> {
    let from_prometheus = match &dashboard.prometheus {
        Some(p) => Some(p.delta(window).await?),
        None => None,
    };
    let state = dashboard.state.lock().unwrap_or_else(|e| e.into_inner());
    let delta = from_prometheus.unwrap_or_else(|| state.window.last(window));
    let edges = delta.edges();
    let mut nodes: BTreeSet<Node> = edges
        .keys()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    for s in &state.scraped {
        nodes.insert(Node::Workload(super::stats::WorkloadId {
            namespace: s.namespace.clone(),
            name: s.workload.clone(),
        }));
    }
    let nodes: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let proxy = match n {
                Node::Workload(w) => state
                    .scraped
                    .iter()
                    .find(|s| s.workload == w.name && s.namespace == w.namespace),
                Node::Service(..) => None,
            };
            json!({
                "id": n.id(),
                "kind": match n { Node::Workload(_) => "workload", Node::Service(..) => "service" },
                "label": n.label(),
                "namespace": n.namespace(),
                "proxy": proxy.map(|p| p.kind.as_str()),
                "scraped": proxy.map(|p| p.error.is_none()),
            })
        })
        .collect();
    let edges: Vec<Value> = edges
        .iter()
        .map(|((from, to), g)| {
            let mut v = golden_json(g);
            v["id"] = json!(format!("{}->{}", from.id(), to.id()));
            v["source"] = json!(from.id());
            v["target"] = json!(to.id());
            v["error_rate"] = json!(g.success_rate().map(|s| 1.0 - s));
            v
        })
        .collect();
    Ok(json!({
        "window_seconds": delta.seconds,
        "scrapes": state.scrapes,
        "error": state.error,
        "nodes": nodes,
        "edges": edges,
    }))
}

/// Per service: the last minute, and one point per scrape over `span` (from a
/// Prometheus server: its rate every 10 s, requests per second only).
async fn services(dashboard: &Dashboard, span: Duration) -> anyhow::Result<Value> {
    if let Some(p) = &dashboard.prometheus {
        let current = p.delta(Duration::from_secs(60)).await?.by_service();
        let mut rates: BTreeMap<(String, String), Vec<(f64, f64)>> = p
            .service_rates(span, Duration::from_secs(10))
            .await?
            .into_iter()
            .collect();
        let names: BTreeSet<(String, String)> =
            current.keys().chain(rates.keys()).cloned().collect();
        let list: Vec<Value> = names
            .iter()
            .map(|name| {
                let points: Vec<Value> = rates
                    .remove(name)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(ago, rps)| json!({"ago_seconds": ago, "rps": rps, "success_rate": null, "p99_ms": null}))
                    .collect();
                json!({
                    "service": name.0,
                    "namespace": name.1,
                    "last_minute": current.get(name).map(golden_json),
                    "points": points,
                })
            })
            .collect();
        return Ok(json!({ "span_seconds": span.as_secs(), "services": list }));
    }
    let state = dashboard.state.lock().unwrap_or_else(|e| e.into_inner());
    let current = state.window.last(Duration::from_secs(60)).by_service();
    let steps = state.window.steps(span);
    let newest = steps.last().map(|(at, _)| *at).unwrap_or_default();
    let mut points: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    let per_step: Vec<_> = steps.iter().map(|(at, d)| (*at, d.by_service())).collect();
    let names: BTreeSet<(String, String)> = current
        .keys()
        .cloned()
        .chain(per_step.iter().flat_map(|(_, s)| s.keys().cloned()))
        .collect();
    for (at, by) in &per_step {
        for name in &names {
            let ago = newest.saturating_sub(*at).as_secs_f64();
            let point = match by.get(name) {
                Some(g) => {
                    json!({"ago_seconds": ago, "rps": g.rps(), "success_rate": g.success_rate(), "p99_ms": g.quantile(0.99)})
                }
                None => {
                    json!({"ago_seconds": ago, "rps": 0.0, "success_rate": null, "p99_ms": null})
                }
            };
            points.entry(name.clone()).or_default().push(point);
        }
    }
    let list: Vec<Value> = names
        .iter()
        .map(|name| {
            let last_minute = current.get(name).map(golden_json);
            json!({
                "service": name.0,
                "namespace": name.1,
                "last_minute": last_minute,
                "points": points.remove(name).unwrap_or_default(),
            })
        })
        .collect();
    Ok(json!({ "span_seconds": span.as_secs(), "services": list }))
}

/// The control plane's sync table, with how each proxy's scrape went.
async fn proxies(dashboard: &Dashboard) -> Value {
    let scraped = dashboard
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .scraped
        .clone();
    match super::admin::proxies(dashboard.control).await {
        Ok(rows) => {
            let rows: Vec<Value> = rows
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                    v["status"] = json!(match (r.status, &r.nack) {
                        (skiff_xds::SyncStatus::Nack, Some(reason)) => format!("NACK: {reason}"),
                        (status, _) => status.label().to_owned(),
                    });
                    v["metrics"] = match scraped.iter().find(|s| s.proxy == r.proxy) {
                        Some(_) if dashboard.prometheus.is_some() => json!("via Prometheus"),
                        Some(s) => json!(s.error.as_deref().unwrap_or("scraped")),
                        None => json!("not listed for scraping"),
                    };
                    v
                })
                .collect();
            json!({ "proxies": rows })
        }
        Err(e) => json!({ "error": format!("{e:#}"), "proxies": [] }),
    }
}

/// The configuration's errors and warnings, and `skiff analyze`'s messages on the
/// directory the control plane serves.
async fn findings(control: SocketAddr) -> Value {
    let status: skiff_control::ConfigStatus =
        match super::admin::control_json(control, "/debug/configz").await {
            Ok(s) => s,
            Err(e) => return json!({ "error": format!("{e:#}") }),
        };
    let dir = std::path::PathBuf::from(&status.config_dir);
    let analyzed = tokio::task::spawn_blocking(move || {
        skiff_api::load(&[dir.as_path()])
            .map(|loaded| skiff_model::analyze::analyze(&loaded, MeshOptions::default()))
    })
    .await;
    let (messages, error) = match analyzed {
        Ok(Ok(messages)) => {
            let list: Vec<Value> = messages
                .iter()
                .map(|m| {
                    let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
                    // As `skiff analyze` prints it: level, code, resource, file:line, text.
                    v["line"] = json!(m.line());
                    v
                })
                .collect();
            (Value::Array(list), None)
        }
        Ok(Err(e)) => (
            json!([]),
            Some(format!("cannot analyze {}: {e:#}", status.config_dir)),
        ),
        Err(e) => (json!([]), Some(e.to_string())),
    };
    json!({
        "config_dir": status.config_dir,
        "ok": status.ok,
        "errors": status.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "warnings": status.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "analyze": messages,
        "analyze_error": error,
    })
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let text = serde_json::to_string(body).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    response(status, "application/json", text)
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}
