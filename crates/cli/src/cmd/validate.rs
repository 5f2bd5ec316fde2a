//! `skiff validate`: load and validate configuration files, print every problem.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `skiff validate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// YAML files or directories (searched recursively for *.yaml and *.yml).
    #[arg(required = true, value_name = "FILE|DIR")]
    paths: Vec<PathBuf>,
    /// Print errors only, not warnings.
    #[arg(long, short)]
    quiet: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let loaded = skiff_api::load(&args.paths)?;
    for d in &loaded.diagnostics {
        if args.quiet && !d.is_error() {
            continue;
        }
        println!("{}: {d}", d.severity);
    }
    let errors = loaded.diagnostics.errors();
    let warnings = loaded.diagnostics.warnings();
    println!(
        "{} file{}, {} resource{} valid, {} error{}, {} warning{}",
        loaded.files.len(),
        plural(loaded.files.len()),
        loaded.resources.len(),
        plural(loaded.resources.len()),
        errors,
        plural(errors),
        warnings,
        plural(warnings),
    );
    Ok(if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
