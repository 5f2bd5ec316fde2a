//! `skiff validate`: load and validate configuration files, print every problem.

use std::io::{self, Write};
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
    let errors = loaded.diagnostics.errors();
    let code = if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    };
    match report(&loaded, args.quiet, &mut io::stdout().lock()) {
        // The reader went away (`skiff validate … | head`): the exit status still tells.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(code),
        Err(e) => Err(e.into()),
        Ok(()) => Ok(code),
    }
}

/// One line per diagnostic, `error:` or `warning:` first, then a summary line.
fn report(loaded: &skiff_api::Loaded, quiet: bool, out: &mut impl Write) -> io::Result<()> {
    for d in &loaded.diagnostics {
        if quiet && !d.is_error() {
            continue;
        }
        writeln!(out, "{}: {d}", d.severity)?;
    }
    let errors = loaded.diagnostics.errors();
    let warnings = loaded.diagnostics.warnings();
    let found = super::analyze::count(loaded);
    let analyzed = if found == 0 {
        String::new()
    } else {
        format!("; `skiff analyze` found {found} problem{}", plural(found))
    };
    writeln!(
        out,
        "{} file{}, {} resource{} valid, {} error{}, {} warning{}{analyzed}",
        loaded.files.len(),
        plural(loaded.files.len()),
        loaded.resources.len(),
        plural(loaded.resources.len()),
        errors,
        plural(errors),
        warnings,
        plural(warnings),
    )?;
    out.flush()
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
