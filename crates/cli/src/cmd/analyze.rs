//! `skiff analyze`: static analysis of a mesh's configuration with Istio's message
//! codes (`IST…`) and skiff's own (`SKF…`), printed the way `istioctl analyze` prints
//! them, with the fix under each message where skiff can say it.

mod suppress;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use skiff_model::MeshOptions;
use skiff_model::analyze::{Level, Message, analyze};

use suppress::Suppression;

/// istioctl's exit status when the analysis found messages at or above the failure
/// threshold (`ExitAnalyzerFoundIssues`).
pub(crate) const FOUND_ISSUES: u8 = 79;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    /// One line per message, like istioctl's.
    Log,
    /// A JSON array of messages (schema in docs/analyze.md).
    Json,
    /// The same as YAML.
    Yaml,
}

/// Arguments of `skiff analyze`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// YAML files or directories (searched recursively for *.yaml and *.yml).
    #[arg(value_name = "FILE|DIR", required_unless_present = "live")]
    paths: Vec<PathBuf>,
    /// Only messages about resources of this namespace.
    #[arg(long, short = 'n', conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// Messages about every namespace (the default when no namespace is given).
    #[arg(long, short = 'A')]
    all_namespaces: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "log")]
    output: Output,
    /// Exit with status 79 when a message is at least this level (Info, Warning, Error).
    #[arg(long, default_value = "Error", value_parser = parse_level)]
    failure_threshold: Level,
    /// Print only messages of at least this level.
    #[arg(long, default_value = "Info", value_parser = parse_level)]
    output_threshold: Level,
    /// Leave out messages: `CODE=Kind name[.namespace]`, `*` matches any text
    /// (`IST0118=Service *`, `SKF0009=VirtualService reviews.default`). Repeatable.
    #[arg(long, short = 'S', value_name = "CODE=Kind name")]
    suppress: Vec<String>,
    /// Analyze the configuration the running control plane serves (its config
    /// directory, read through its debug endpoint) instead of files.
    #[arg(long)]
    live: bool,
    /// The control plane's debug HTTP address (for --live).
    #[arg(long, default_value = "127.0.0.1:15014", env = "SKIFF_CONTROL_DEBUG")]
    control: SocketAddr,
}

fn parse_level(s: &str) -> Result<Level, String> {
    Level::parse(s).ok_or_else(|| format!("{s:?} is not a level: use Info, Warning or Error"))
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let suppressions = args
        .suppress
        .iter()
        .map(|s| Suppression::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut paths = args.paths.clone();
    if args.live {
        if !paths.is_empty() {
            bail!("--live analyzes what the control plane serves: give no files with it");
        }
        paths.push(live_config_dir(args.control)?);
    }
    let loaded = skiff_api::load(&paths)?;
    let messages: Vec<Message> = analyze(&loaded, MeshOptions::default())
        .into_iter()
        .filter(|m| match (&args.namespace, &m.resource) {
            // A Namespace itself (cluster-scoped: no namespace of its own) by its name.
            (Some(ns), Some(r)) if !args.all_namespaces => {
                &r.namespace == ns || (r.namespace.is_empty() && &r.name == ns)
            }
            _ => true,
        })
        .filter(|m| !suppressions.iter().any(|s| s.matches(m)))
        .collect();
    let fails = messages.iter().any(|m| m.level >= args.failure_threshold);
    let shown: Vec<&Message> = messages
        .iter()
        .filter(|m| m.level >= args.output_threshold)
        .collect();
    let code = if fails {
        ExitCode::from(FOUND_ISSUES)
    } else {
        ExitCode::SUCCESS
    };
    match print(&shown, args.output, &mut io::stdout().lock()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(code),
        Err(e) => Err(e.into()),
        Ok(()) => Ok(code),
    }
}

fn print(messages: &[&Message], output: Output, out: &mut impl Write) -> io::Result<()> {
    match output {
        Output::Log => {
            if messages.is_empty() {
                writeln!(
                    out,
                    "\u{2714} No validation issues found when analyzing the given configuration."
                )?;
            }
            for m in messages {
                writeln!(out, "{}", m.line())?;
                if let Some(fix) = &m.fix {
                    writeln!(out, "    fix: {fix}")?;
                }
            }
        }
        Output::Json => {
            serde_json::to_writer_pretty(&mut *out, messages)?;
            writeln!(out)?;
        }
        Output::Yaml => {
            let text =
                serde_saphyr::to_string(&messages).map_err(|e| io::Error::other(e.to_string()))?;
            out.write_all(text.as_bytes())?;
        }
    }
    out.flush()
}

/// The configuration directory of the running control plane.
fn live_config_dir(control: SocketAddr) -> anyhow::Result<PathBuf> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let body = runtime.block_on(super::proxy_status::fetch(control, "/debug/configz"))?;
    let status: skiff_control::ConfigStatus = serde_json::from_slice(&body).with_context(|| {
        format!("the control plane at {control} answered /debug/configz with something that is not a config status")
    })?;
    Ok(PathBuf::from(status.config_dir))
}

/// The number of messages `skiff analyze` gives beyond the load's own diagnostics (for
/// `skiff validate`'s summary).
pub(crate) fn count(loaded: &skiff_api::Loaded) -> usize {
    skiff_model::analyze::findings(&loaded.for_analysis(), MeshOptions::default()).len()
}
