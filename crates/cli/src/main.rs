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
    /// Run the data-plane proxy (sidecar or gateway).
    Proxy(cmd::proxy::Args),
    /// Run the demo workload: an HTTP server that greets, and optionally calls a target.
    SampleApp(cmd::sample_app::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version(args) => cmd::version::run(args),
        Command::Proxy(args) => cmd::proxy::run(args),
        Command::SampleApp(args) => cmd::sample_app::run(args),
    }
}
