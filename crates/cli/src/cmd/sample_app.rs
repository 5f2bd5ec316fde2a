//! `skiff sample-app`: the demo workload.
//!
//! A small HTTP server in the spirit of Google's `hello-app`: it answers every request
//! with a greeting, its version and its name. Given `--target`s, it also calls those
//! services, one after the other (through the HTTP proxy named by
//! `HTTP_PROXY`/`http_proxy`, the way an app beside a skiff sidecar in local mode
//! does) and shows each answer, so a tree of sample apps (Bookinfo's productpage
//! calling details and reviews, reviews calling ratings) makes the path a request took
//! through the mesh visible. It propagates the headers Bookinfo's apps propagate
//! (`end-user`, the request id, trace context, `cookie`, `user-agent`…), so routing
//! rules on them hold at every hop.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tracing::{Instrument as _, info, info_span, warn};

mod target;

use target::{Target, TargetClient};

/// Arguments of `skiff sample-app`.
#[derive(Debug, clap::Args)]
#[command(disable_version_flag = true)]
pub(crate) struct Args {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The version this workload reports, e.g. `1.0.0` or `2.0.0`.
    #[arg(long, default_value = "1.0.0")]
    version: String,
    /// The workload name reported as `Hostname:` (defaults to the machine's host name).
    #[arg(long)]
    name: Option<String>,
    /// A service to call on every request, e.g. `http://backend.prod:8080/`
    /// (`http://` is assumed when no scheme is given). Repeat it to call several, in
    /// order. Calls go through the proxy in `HTTP_PROXY`/`http_proxy` when one is set.
    #[arg(long)]
    target: Vec<String>,
    /// Give up on the target after this many seconds (the answer is then a 502).
    #[arg(long, default_value_t = 10)]
    target_timeout: u64,
    /// Worker threads of the server.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

/// What every request handler shares.
#[derive(Debug)]
struct App {
    version: String,
    name: String,
    targets: Vec<Target>,
    /// The client for the targets (present when there are targets).
    client: Option<TargetClient>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    crate::cmd::init_tracing();

    let name = match args.name {
        Some(name) => name,
        None => host_name(),
    };
    let targets = args
        .target
        .iter()
        .map(|raw| Target::parse(raw))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let client = match targets.is_empty() {
        true => None,
        false => Some(TargetClient::from_env(Duration::from_secs(
            args.target_timeout,
        ))?),
    };
    let app = Arc::new(App {
        version: args.version,
        name,
        targets,
        client,
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args.listen, app))
}

/// Accepts connections until SIGINT or SIGTERM.
async fn serve(listen: SocketAddr, app: Arc<App>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    // The bound address on stdout, for scripts and tests that asked for port 0.
    println!("listening on {local}");
    info!(
        %local,
        name = %app.name,
        version = %app.version,
        targets = ?app.targets.iter().map(ToString::to_string).collect::<Vec<_>>(),
        proxy = app.client.as_ref().and_then(|c| c.proxy().map(str::to_owned)),
        "sample-app serving"
    );

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => {
                info!("shutting down");
                return Ok(());
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let span = info_span!("connection", %peer);
        tokio::spawn(
            async move {
                let service = hyper::service::service_fn(move |req| handle(req, app.clone()));
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(error) = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, "connection ended with an error");
                }
            }
            .instrument(span),
        );
    }
}

/// Answers one request: the greeting, then each target's answer. A target that fails
/// makes the whole answer a 502, with the error in the target's place.
async fn handle(
    req: Request<Incoming>,
    app: Arc<App>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let span = info_span!("request", method = %req.method(), path = %req.uri().path());
    async move {
        let mut body = greeting(&app.version, &app.name);
        if let Some(caller) = caller(req.headers()) {
            body.push_str(&format!("Caller: {caller}\n"));
        }
        let mut status = StatusCode::OK;
        if let Some(client) = &app.client {
            for target in &app.targets {
                body.push_str(&format!("Target: {target}\n"));
                match client.call(target, req.headers()).await {
                    Ok(answer) => body.push_str(&indent(&answer)),
                    Err(error) => {
                        warn!(%target, %error, "calling the target failed");
                        status = StatusCode::BAD_GATEWAY;
                        body.push_str(&indent(&format!("Error: {error}\n")));
                    }
                }
            }
        }
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Ok(response)
    }
    .instrument(span)
    .await
}

/// The caller's identity, as the sidecar tells it in `x-forwarded-client-cert`
/// (`By=…;URI=spiffe://…`) when the request came over mutual TLS.
fn caller(headers: &hyper::HeaderMap) -> Option<&str> {
    let xfcc = headers.get("x-forwarded-client-cert")?.to_str().ok()?;
    xfcc.split(';')
        .find_map(|part| part.trim().strip_prefix("URI="))
}

/// The first lines of every answer, as hello-app writes them.
fn greeting(version: &str, name: &str) -> String {
    format!("Hello, world!\nVersion: {version}\nHostname: {name}\n")
}

/// Indents every line of a nested answer by two spaces; ends with a newline.
fn indent(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The machine's host name, or `sample-app` when it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "sample-app".to_owned())
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests;
