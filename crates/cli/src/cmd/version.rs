//! `skiff version`.

/// Arguments of `skiff version`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print only the version number.
    #[arg(long)]
    short: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    if args.short {
        println!("{version}");
        return Ok(());
    }
    println!("skiff {version}");
    println!(
        "reads: networking.istio.io/{{v1,v1beta1,v1alpha3}}, security.istio.io/{{v1,v1beta1}}, telemetry.istio.io/{{v1,v1alpha1}}, v1 (Namespace, Service, Pod)"
    );
    Ok(())
}
