//! `skiff`: one binary for the whole mesh. `skiff control` is the control plane,
//! `skiff proxy` the data-plane proxy, and the other subcommands are the tools a user
//! debugs and runs the mesh with.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// skiff: a service mesh that reads the Istio API.
#[derive(Debug, Parser)]
#[command(name = "skiff", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version of skiff and the Istio API versions it reads.
    Version(cmd::version::Args),
    /// Load and validate configuration files; print every error and warning.
    Validate(cmd::validate::Args),
    /// Analyze configuration files (or the running control plane's) and print every
    /// problem with Istio's message codes and the fix.
    Analyze(cmd::analyze::Args),
    /// Run the control plane: watch a config directory and serve proxies over xDS.
    Control(cmd::control::Args),
    /// Run the data-plane proxy (sidecar or gateway).
    Proxy(cmd::proxy::Args),
    /// Run the whole mesh of a directory on this machine: control plane, proxies,
    /// gateway and apps, on loopback addresses.
    Up(cmd::up::Args),
    /// Show whether each proxy runs the config the control plane has for it.
    ProxyStatus(cmd::proxy_status::Args),
    /// What a live proxy runs: listeners, routes, clusters, endpoints, its certificate.
    ProxyConfig(cmd::proxy_config::Args),
    /// Why a request failed (`REQUEST_ID`, `--last`), asked of every proxy.
    Explain(cmd::explain::Args),
    /// A workload or service as the mesh sees it: services, ports, routing, mTLS, policies.
    Describe(cmd::describe::Args),
    /// Golden metrics per workload or service over a window: success rate, requests
    /// per second, p50/p90/p99, mTLS share (from the proxies' own metrics).
    Stat(cmd::stat::StatArgs),
    /// The busiest edges of the mesh, refreshed in the terminal.
    Top(cmd::stat::TopArgs),
    /// Serve a web page of the running mesh: the service graph with rates, errors,
    /// latencies and mTLS, golden metrics per service, proxy sync status, findings.
    Dashboard(cmd::dashboard::Args),
    /// Run the demo workload: an HTTP server that greets, and optionally calls a target.
    SampleApp(cmd::sample_app::Args),
    /// Run an app's command for `skiff up` and stop it when `skiff up` is gone.
    #[command(hide = true)]
    UpApp(cmd::up::keeper::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `up` is what the others follow; `up-app` follows it once its signal handler is set.
    if !matches!(cli.command, Command::Up(_) | Command::UpApp(_)) {
        cmd::up::lifeline::follow_supervisor();
    }
    let done = |result: anyhow::Result<()>| result.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        Command::Version(args) => done(cmd::version::run(args)),
        Command::Validate(args) => cmd::validate::run(args),
        Command::Analyze(args) => cmd::analyze::run(args),
        Command::Control(args) => done(cmd::control::run(args)),
        Command::ProxyStatus(args) => done(cmd::proxy_status::run(args)),
        Command::ProxyConfig(args) => done(cmd::proxy_config::run(args)),
        Command::Explain(args) => cmd::explain::run(args),
        Command::Describe(args) => done(cmd::describe::run(args)),
        Command::Up(args) => done(cmd::up::run(args)),
        Command::Proxy(args) => done(cmd::proxy::run(args)),
        Command::Stat(args) => done(cmd::stat::run_stat(args)),
        Command::Top(args) => done(cmd::stat::run_top(args)),
        Command::Dashboard(args) => done(cmd::dashboard::run(args)),
        Command::SampleApp(args) => done(cmd::sample_app::run(args)),
        Command::UpApp(args) => cmd::up::keeper::run(args),
    };
    // Errors are for users: the message and its causes, never a backtrace.
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}
