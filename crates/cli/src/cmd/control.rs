//! `skiff control`: the control plane.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use skiff_control::{ControlOptions, MeshCompiler};
use skiff_model::MeshOptions;
use tokio::signal::unix::{SignalKind, signal};

/// Arguments of `skiff control`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Directory of Istio and Kubernetes YAML (searched recursively, watched).
    #[arg(long, value_name = "DIR")]
    config: PathBuf,
    /// Address of the xDS (gRPC) server the proxies connect to.
    #[arg(long, default_value = "127.0.0.1:15010")]
    xds_listen: SocketAddr,
    /// Address of the debug HTTP endpoint (`/debug/syncz`, `/debug/config_dump`,
    /// `/debug/configz`, `/ready`).
    #[arg(long, default_value = "127.0.0.1:15014")]
    debug_listen: SocketAddr,
    /// DNS suffix of Kubernetes service names.
    #[arg(long, default_value = "cluster.local")]
    domain_suffix: String,
    /// Trust domain of workload identities.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("skiff-control")
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let options = ControlOptions {
        xds_listen: args.xds_listen,
        debug_listen: args.debug_listen,
        ..ControlOptions::new(&args.config)
    };
    let compiler = MeshCompiler {
        options: MeshOptions {
            domain_suffix: args.domain_suffix,
            trust_domain: args.trust_domain,
            ..MeshOptions::default()
        },
    };
    let mut running = skiff_control::start(options, compiler)
        .await
        .context("cannot start the control plane")?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
        _ = terminate.recv() => tracing::info!("terminated; shutting down"),
        error = running.failed() => return Err(error).context("the control plane stopped"),
    }
    running.shutdown().await?;
    tracing::info!("control plane stopped");
    Ok(())
}

/// Logs to stderr; `RUST_LOG` overrides the default level (info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
