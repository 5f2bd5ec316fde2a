//! `skiff proxy`: the data-plane proxy, beside one workload or as a gateway.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use skiff_proxy::AccessLogTarget;
use skiff_proxy::{Proxy, ProxyOptions};

/// Arguments of `skiff proxy`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Proxy id: `<workload name>.<namespace>`.
    #[arg(long)]
    id: String,
    /// Control plane address (`host:port`) to take config from.
    #[arg(
        long,
        required_unless_present = "config_file",
        conflicts_with = "config_file"
    )]
    control: Option<String>,
    /// Take config from this JSON file (a ProxyConfig) instead of a control plane; it is
    /// re-read when it changes.
    #[arg(long)]
    config_file: Option<PathBuf>,
    /// Address to listen on (default: the config's node address, else 127.0.0.1).
    #[arg(long)]
    address: Option<IpAddr>,
    /// Worker threads for the data path.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Added to every gateway port (so port 80 can be served on 8080 without root).
    #[arg(long, default_value_t = 0)]
    gateway_port_offset: u16,
    /// Access log to stdout: `on` or `off`.
    #[arg(long, value_enum, default_value = "on")]
    access_log: OnOff,
    /// Outbound listener port.
    #[arg(long, default_value_t = 15001)]
    outbound_port: u16,
    /// Inbound listener port.
    #[arg(long, default_value_t = 15006)]
    inbound_port: u16,
    /// Admin listener port.
    #[arg(long, default_value_t = 15000)]
    admin_port: u16,
    /// More ports that answer like the admin port, as Istio's pilot-agent (15020: a Job
    /// posts `/quitquitquit` there) and health port (15021: `/healthz/ready`). `0`: none.
    #[arg(long, value_delimiter = ',', default_values_t = [15020, 15021])]
    agent_ports: Vec<u16>,
    /// How long a drain (SIGTERM, `POST /quitquitquit`) waits for open connections, in
    /// seconds.
    #[arg(long, default_value_t = 5.0)]
    drain_timeout: f64,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    crate::cmd::init_tracing();
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    // One worker: tokio's single-threaded scheduler, on this thread, without the
    // work-stealing machinery a pool needs.
    let data = if args.concurrency == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.concurrency).thread_name("skiff-data");
        b
    }
    .enable_all()
    .build()
    .context("starting the data-path runtime")?;
    let admin = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("skiff-admin")
        .enable_all()
        .build()
        .context("starting the admin runtime")?;
    let options = ProxyOptions {
        id: args.id.clone(),
        address: args.address,
        outbound_port: args.outbound_port,
        inbound_port: args.inbound_port,
        admin_port: args.admin_port,
        agent_ports: args
            .agent_ports
            .iter()
            .copied()
            .filter(|p| *p != 0)
            .collect(),
        gateway_port_offset: args.gateway_port_offset,
        access_log: match args.access_log {
            OnOff::On => AccessLogTarget::Stdout,
            OnOff::Off => AccessLogTarget::Off,
        },
        drain_timeout: Duration::from_secs_f64(args.drain_timeout.max(0.0)),
        admin_runtime: Some(admin.handle().clone()),
        mesh_tls: None,
    };
    let admin_handle = admin.handle().clone();
    let result = data.block_on(async move {
        let proxy = Proxy::start(options).await?;
        let mut xds = None;
        match (&args.config_file, &args.control) {
            (Some(path), _) => {
                let version = skiff_proxy::file_source::apply(&proxy, path)
                    .with_context(|| format!("first config from {}", path.display()))?;
                tracing::info!(%version, file = %path.display(), "serving config from file");
                admin_handle.spawn(skiff_proxy::file_source::watch(
                    proxy.clone(),
                    path.clone(),
                    Duration::from_secs(1),
                ));
            }
            (None, Some(control)) => {
                // The xDS client runs on the admin runtime, apart from the data path.
                let _admin = admin_handle.enter();
                xds = Some(
                    skiff_proxy::xds_source::connect(&proxy, control, &args.id)
                        .with_context(|| format!("--control {control}"))?,
                );
                tracing::info!(%control, "taking config from the control plane");
            }
            (None, None) => bail!("one of --control or --config-file is needed"),
        }
        wait_for_stop(&proxy).await;
        drop(xds);
        proxy.drain().await;
        Ok(())
    });
    admin.shutdown_background();
    data.shutdown_background();
    result
}

async fn wait_for_stop(proxy: &Proxy) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
        _ = proxy.shutdown_requested() => tracing::info!("quitquitquit"),
    }
}
