//! `skiff`: one binary for the whole mesh. `skiff control` is the control plane,
//! `skiff proxy` the data-plane proxy, and the other subcommands are the tools a user
//! debugs and runs the mesh with.

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
    /// Run the control plane: watch a config directory and serve proxies over xDS.
    Control(cmd::control::Args),
    /// Show whether each proxy runs the config the control plane has for it.
    ProxyStatus(cmd::proxy_status::Args),
    /// Run the data-plane proxy (sidecar or gateway).
    Proxy(cmd::proxy::Args),
    /// Run the demo workload: an HTTP server that greets, and optionally calls a target.
    SampleApp(cmd::sample_app::Args),
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version(args) => cmd::version::run(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Validate(args) => cmd::validate::run(args),
        Command::Control(args) => cmd::control::run(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::ProxyStatus(args) => {
            cmd::proxy_status::run(args).map(|()| std::process::ExitCode::SUCCESS)
        }
        Command::Proxy(args) => cmd::proxy::run(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::SampleApp(args) => {
            cmd::sample_app::run(args).map(|()| std::process::ExitCode::SUCCESS)
        }
    }
}
