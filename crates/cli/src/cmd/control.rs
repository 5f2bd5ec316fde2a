//! `skiff control`: the control plane.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use skiff_control::{ControlIdentity, ControlOptions, MeshCompiler};
use skiff_identity::{BootstrapTokens, Ca};
use skiff_model::MeshOptions;
use tokio::signal::unix::{SignalKind, signal};

/// Arguments of `skiff control`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Directory of Istio and Kubernetes YAML (searched recursively, watched).
    #[arg(long, value_name = "DIR")]
    config: PathBuf,
    /// Address of the gRPC server the proxies connect to: xDS and the CA, over TLS.
    #[arg(long, default_value = "127.0.0.1:15010")]
    xds_listen: SocketAddr,
    /// Directory of the mesh CA: `root-cert.pem` and `root-key.pem`, a self-signed
    /// root made on first start and kept. Proxies take `<DIR>/root-cert.pem` as
    /// `--ca-root`. Default: `.skiff/ca` inside the --config directory.
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    /// Sign with an operator's CA instead: a directory of Istio's plug-in CA files
    /// (`ca-cert.pem`, `ca-key.pem`, `root-cert.pem`, `cert-chain.pem`, as in the
    /// `cacerts` secret). Proxies take its `root-cert.pem` as `--ca-root`.
    #[arg(long, value_name = "DIR", conflicts_with = "ca_dir")]
    plugin_ca_dir: Option<PathBuf>,
    /// Lifetime of the workload certificates signed, as an Istio duration (`24h`,
    /// `90m`, `30s`). Proxies renew at about half of it.
    #[arg(long, default_value = "24h", value_parser = parse_ttl)]
    cert_ttl: std::time::Duration,
    /// File holding the bootstrap-token secret (text, at least 32 bytes, surrounding
    /// white space ignored) shared with whoever starts the proxies
    /// (`skiff up` makes one): proxies without a certificate yet prove their identity
    /// with a token made from it. Without it, only renewals are signed.
    #[arg(long, value_name = "FILE", env = "SKIFF_BOOTSTRAP_SECRET_FILE")]
    bootstrap_secret_file: Option<PathBuf>,
    /// Serve xDS in plain text, with no CA: any process that reaches the port gets
    /// every proxy's configuration. For debugging only.
    #[arg(long, conflicts_with_all = ["ca_dir", "plugin_ca_dir", "bootstrap_secret_file"])]
    insecure_xds: bool,
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
    /// Istio's MeshConfig as a YAML file (what istiod reads with `--meshConfig`: the
    /// `mesh` key of the `istio` ConfigMap). skiff reads `accessLogFile`,
    /// `accessLogEncoding`, the tracing providers (`extensionProviders[].opentelemetry`,
    /// `defaultProviders.tracing`) and `defaultConfig.tracing.sampling` from it and warns
    /// about every other field; read at start.
    #[arg(long, value_name = "FILE")]
    mesh_config: Option<PathBuf>,
    /// Add the built-in ingress gateway workload (`istio-ingressgateway` in
    /// `istio-system`) at this address when a Gateway selects labels that no workload
    /// has, as installing Istio would. `skiff up` sets it.
    #[arg(long, value_name = "IP")]
    builtin_gateway: Option<std::net::IpAddr>,
    /// Quiet time after the last change in the --config directory before reloading
    /// (istiod's `PILOT_DEBOUNCE_AFTER`).
    #[arg(long, default_value = "100ms", env = "PILOT_DEBOUNCE_AFTER", value_parser = parse_debounce)]
    debounce_after: std::time::Duration,
    /// The longest a burst of changes may delay its reload, from its first change
    /// (istiod's `PILOT_DEBOUNCE_MAX`).
    #[arg(long, default_value = "10s", env = "PILOT_DEBOUNCE_MAX", value_parser = parse_debounce)]
    debounce_max: std::time::Duration,
    /// How many proxies are pushed to at once (istiod's `PILOT_PUSH_THROTTLE`); the
    /// others wait, and pushes that change only endpoints go first.
    #[arg(long, default_value_t = 100, env = "PILOT_PUSH_THROTTLE", value_parser = clap::value_parser!(u32).range(1..))]
    push_limit: u32,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    crate::cmd::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("skiff-control")
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    let ttl = skiff_api::Duration::parse(text)
        .map_err(|e| e.to_string())?
        .value();
    if ttl < std::time::Duration::from_secs(1) {
        return Err(format!("{text} is shorter than a second"));
    }
    Ok(ttl)
}

fn parse_debounce(text: &str) -> Result<std::time::Duration, String> {
    Ok(skiff_api::Duration::parse(text)
        .map_err(|e| e.to_string())?
        .value())
}

/// The CA the flags ask for, and the tokens of the bootstrap secret.
fn identity(args: &Args) -> anyhow::Result<Option<ControlIdentity>> {
    if args.insecure_xds {
        eprintln!(
            "WARNING: --insecure-xds: xDS is served in plain text with no CA; any process that reaches {} gets every proxy's configuration",
            args.xds_listen
        );
        return Ok(None);
    }
    let ca = match &args.plugin_ca_dir {
        Some(dir) => {
            let ca = Ca::from_plugin_files(dir, &args.trust_domain)
                .with_context(|| format!("--plugin-ca-dir {}", dir.display()))?;
            tracing::info!(dir = %dir.display(), root = %dir.join("root-cert.pem").display(), "signing with the plug-in CA");
            ca
        }
        None => {
            let dir = args
                .ca_dir
                .clone()
                .unwrap_or_else(|| default_ca_dir(&args.config));
            let ca = Ca::load_or_create(&dir, &args.trust_domain)
                .with_context(|| format!("the CA directory {}", dir.display()))?;
            tracing::info!(dir = %dir.display(), root = %dir.join("root-cert.pem").display(), "signing with the mesh CA");
            ca
        }
    };
    let tokens = match &args.bootstrap_secret_file {
        Some(path) => {
            let secret = std::fs::read(path)
                .with_context(|| format!("cannot read the bootstrap secret {}", path.display()))?;
            Some(
                BootstrapTokens::new(secret.trim_ascii())
                    .with_context(|| format!("the bootstrap secret {}", path.display()))?,
            )
        }
        None => {
            tracing::info!("no --bootstrap-secret-file: only certificate renewals are signed");
            None
        }
    };
    Ok(Some(ControlIdentity {
        ca: Arc::new(ca.with_default_ttl(args.cert_ttl)),
        tokens,
    }))
}

/// Where the CA lives by default: `.skiff/ca` in the config directory (hidden, so
/// neither loaded nor watched as config).
pub(crate) fn default_ca_dir(config: &Path) -> PathBuf {
    config.join(".skiff").join("ca")
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let options = ControlOptions {
        xds_listen: args.xds_listen,
        debug_listen: args.debug_listen,
        identity: identity(&args)?,
        debounce: skiff_control::watch::Debounce {
            after: args.debounce_after,
            max: args.debounce_max.max(args.debounce_after),
        },
        push_limit: args.push_limit as usize,
        ..ControlOptions::new(&args.config)
    };
    let (access_log, tracing, locality_lb) = match &args.mesh_config {
        None => (
            None,
            skiff_model::config::MeshTracing::default(),
            skiff_model::locality::mesh_default(),
        ),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the mesh config {}", path.display()))?;
            let (mesh, warnings) = skiff_api::mesh_config::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            for w in warnings {
                tracing::warn!(file = %path.display(), "{w}");
            }
            (
                Some(skiff_model::config::MeshAccessLog::of(&mesh)),
                skiff_model::config::MeshTracing::of(&mesh),
                mesh.locality_lb_setting
                    .clone()
                    .unwrap_or_else(skiff_model::locality::mesh_default),
            )
        }
    };
    let compiler = MeshCompiler {
        options: MeshOptions {
            domain_suffix: args.domain_suffix,
            trust_domain: args.trust_domain,
            access_log,
            tracing,
            locality_lb,
            ..MeshOptions::default()
        },
        builtin_gateway: args.builtin_gateway,
        ..MeshCompiler::default()
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
