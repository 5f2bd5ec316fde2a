//! `control-scale`: the control plane under N simulated proxies and S services, with
//! churn. Run it through `bench/control-scale`; docs/performance.md explains the
//! figures.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use skiff_harness::scale::{self, MeshShape, Options};

/// Measures how config changes reach many proxies, and what the control plane costs.
#[derive(Parser, Debug)]
struct Args {
    /// Simulated proxies (one workload each).
    #[arg(long, default_value_t = 250)]
    proxies: usize,
    /// Services; every proxy sees every service (full view).
    #[arg(long, default_value_t = 100)]
    services: usize,
    /// Namespaces the services are spread over.
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// Services with a VirtualService and a DestinationRule.
    #[arg(long, default_value_t = 10)]
    routed: usize,
    /// Rounds of churn (each: an endpoint move, a VirtualService edit, a new service).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds a change may take to reach every proxy.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// The skiff binary (default: `skiff` beside this one).
    #[arg(long)]
    skiff: Option<PathBuf>,
    /// Real `skiff proxy` processes on loopback addresses instead of simulated proxies
    /// (VirtualService edits and new services only).
    #[arg(long)]
    real: bool,
    /// With --real: arguments passed on to every `skiff proxy` (repeat:
    /// `--proxy-arg=--on-demand`).
    #[arg(long = "proxy-arg", allow_hyphen_values = true)]
    proxy_args: Vec<String>,
    /// Arguments passed on to `skiff control` (repeat: `--control-arg=--flag`).
    #[arg(long = "control-arg", allow_hyphen_values = true)]
    control_args: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let skiff = match args.skiff {
        Some(path) => path,
        None => scale::process::default_skiff()?,
    };
    let options = Options {
        shape: MeshShape {
            proxies: args.proxies,
            services: args.services,
            namespaces: args.namespaces,
            routed: args.routed,
            loopback: args.real,
        },
        rounds: args.rounds,
        skiff,
        timeout: Duration::from_secs(args.timeout),
        control_args: args.control_args,
        real: args.real,
        proxy_args: args.proxy_args,
    };
    let report = scale::run(&options).await?;
    print!("{}", report.table());
    Ok(())
}
