//! `skiff up DIR`: the whole mesh on one machine, in one command.
//!
//! It starts, as child processes of its own binary: the control plane on the
//! directory, one proxy per workload (each on the workload's own loopback address),
//! the ingress gateway for the directory's `Gateway`s, and the apps that workloads ask
//! to run with the `skiff.dev/run` annotation. It prints what runs where, stays in the
//! foreground, and stops everything on Ctrl-C.
//!
//! While it runs it keeps the mesh in step with the directory and alive: a
//! WorkloadEntry added, removed or changed gets its proxy and app started, stopped or
//! restarted ([`fleet`]), and a child that dies is started again with exponential
//! backoff ([`backoff`], [`supervisor`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use skiff_control::LastGood;
use skiff_identity::{BootstrapTokens, SpiffeId};
use skiff_model::config::ProxyKind;
use skiff_model::{Mesh, MeshOptions};
use tokio::signal::unix::{SignalKind, signal};

mod backoff;
mod fleet;
pub(crate) mod keeper;
mod launch;
pub(crate) mod lifeline;
mod supervisor;

use fleet::{AppState, Fleet};
use launch::{Launch, app_path, wait_ready};
use supervisor::Supervisor;

/// The annotation of a WorkloadEntry (or Pod) that names the command `skiff up` runs
/// as that workload.
pub(crate) const RUN_ANNOTATION: &str = "skiff.dev/run";

/// Arguments of `skiff up`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Directory of Istio and Kubernetes YAML describing the mesh.
    dir: PathBuf,
    /// Address the control plane listens on (xDS on 15010, debug on 15014).
    #[arg(long, default_value = "127.0.0.1")]
    control_address: IpAddr,
    /// Address of the built-in ingress gateway (when a Gateway selects labels that no
    /// workload has).
    #[arg(long, default_value = "127.0.0.1")]
    gateway_address: IpAddr,
    /// Added to every Gateway server port, so port 80 is served on 8080 without root.
    #[arg(long, default_value_t = 8000)]
    gateway_port_offset: u16,
    /// Start the control plane and proxies only, not the apps.
    #[arg(long)]
    no_apps: bool,
    /// How long to wait for each piece to become ready, in seconds.
    #[arg(long, default_value_t = 30)]
    ready_timeout: u64,
    /// Where `skiff up` keeps its state: the mesh CA (`ca/`, kept from run to run) and
    /// the bootstrap secret of this run (`bootstrap-secret`). Default: `.skiff` in
    /// DIR (hidden: not read as config).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Istio's MeshConfig, given to the control plane (`skiff control --mesh-config`):
    /// access logs and tracing providers. It is not read from DIR (a MeshConfig is no
    /// Kubernetes resource).
    #[arg(long, value_name = "FILE")]
    mesh_config: Option<PathBuf>,
    /// Also serve `skiff dashboard` for the mesh (on --dashboard-listen).
    #[arg(long)]
    dashboard: bool,
    /// Where `--dashboard` serves its page.
    #[arg(long, default_value = "127.0.0.1:20001")]
    dashboard_listen: SocketAddr,
    /// The wait before restarting a child that died, in milliseconds; it doubles with
    /// each further restart, up to 30 s (for tests).
    #[arg(long, default_value_t = 1000, hide = true)]
    restart_backoff_ms: u64,
}

/// The files of the state directory.
struct State {
    ca_dir: PathBuf,
    root: PathBuf,
    secret_file: PathBuf,
    tokens: BootstrapTokens,
}

/// Makes the state directory (0700) and a new bootstrap secret (0600) in it.
fn prepare_state(dir: &Path) -> anyhow::Result<State> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot make the state directory {}", dir.display()))?;
    let secret: String = BootstrapTokens::generate_secret()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let secret_file = dir.join("bootstrap-secret");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&secret_file)
        .with_context(|| format!("cannot write {}", secret_file.display()))?;
    // A file left by another tool may have looser permissions than `mode` sets.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(secret.as_bytes())
        .with_context(|| format!("cannot write {}", secret_file.display()))?;
    let ca_dir = dir.join("ca");
    Ok(State {
        root: ca_dir.join("root-cert.pem"),
        ca_dir,
        secret_file,
        tokens: BootstrapTokens::new(secret.as_bytes())?,
    })
}

/// One proxy to start, and its app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProxyPlan {
    id: String,
    address: IpAddr,
    kind: ProxyKind,
    gateway_ports: Vec<u16>,
    run: Option<String>,
    /// The ports the app listens on (its Services' target ports): it is alive when
    /// they answer.
    app_ports: Vec<u16>,
    /// The workload's Kubernetes service account and SPIFFE id, from the model.
    service_account: String,
    spiffe_id: String,
}

impl ProxyPlan {
    fn identity(&self) -> anyhow::Result<SpiffeId> {
        self.spiffe_id
            .parse()
            .with_context(|| format!("the identity of {}", self.id))
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(up(args))
}

async fn up(args: Args) -> anyhow::Result<()> {
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("cannot open {}", args.dir.display()))?;
    let last_good = LastGood::new();
    let plans = plan(&dir, &args, &last_good)?;
    let exe = std::env::current_exe().context("cannot find the skiff binary")?;
    let ready_timeout = Duration::from_secs(args.ready_timeout);
    let xds = SocketAddr::new(args.control_address, 15010);
    let debug = SocketAddr::new(args.control_address, 15014);
    let state_dir = args.state_dir.clone().unwrap_or_else(|| dir.join(".skiff"));
    let state = prepare_state(&state_dir)?;

    let width = plans
        .iter()
        .map(|p| p.id.len() + 4)
        .chain(["dashboard".len()])
        .max()
        .unwrap_or(9);
    let policy = backoff::Policy {
        initial: Duration::from_millis(args.restart_backoff_ms.max(1)),
        ..backoff::Policy::default()
    };
    let mut children = Supervisor::new(width, policy);
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let launch = Launch {
        app_path: app_path(&exe),
        exe,
        dir: dir.clone(),
        credentials_dir: args.dir.join("credentials"),
        xds,
        debug,
        gateway_address: args.gateway_address,
        gateway_port_offset: args.gateway_port_offset,
        ca_dir: state.ca_dir.clone(),
        root: state.root.clone(),
        secret_file: state.secret_file.clone(),
        mesh_config: args
            .mesh_config
            .as_ref()
            .map(|p| {
                p.canonicalize()
                    .with_context(|| format!("cannot open the mesh config {}", p.display()))
            })
            .transpose()?,
    };
    let mut fleet = Fleet {
        launch,
        tokens: state.tokens.clone(),
        no_apps: args.no_apps,
        ready_timeout,
        running: BTreeMap::new(),
    };

    let started = async {
        children.spawn("control", fleet.launch.control())?;
        wait_ready(debug, ready_timeout)
            .await
            .context("the control plane did not become ready")?;
        if !state.root.is_file() {
            bail!(
                "the control plane is ready but its CA root {} is not there",
                state.root.display()
            );
        }
        fleet.start(&mut children, plans, true).await?;
        if args.dashboard {
            let (exe, listen) = (fleet.launch.exe.clone(), args.dashboard_listen);
            children.spawn("dashboard", move || {
                let mut dashboard = tokio::process::Command::new(&exe);
                dashboard
                    .arg("dashboard")
                    .arg("--listen")
                    .arg(listen.to_string())
                    .arg("--control")
                    .arg(debug.to_string())
                    .arg("--no-browser");
                dashboard
            })?;
        }
        anyhow::Ok(())
    };
    let outcome = tokio::select! {
        r = started => r,
        _ = interrupt.recv() => Err(anyhow::anyhow!("interrupted while starting")),
        _ = terminate.recv() => Err(anyhow::anyhow!("terminated while starting")),
    };
    if let Err(error) = outcome {
        children.shutdown().await;
        return Err(error);
    }

    print_summary(
        &dir,
        &fleet.running,
        &state.root,
        xds,
        debug,
        args.gateway_port_offset,
        args.dashboard.then_some(args.dashboard_listen),
    );

    let mut seen = fleet::fingerprint(&dir);
    let mut tick = tokio::time::interval(fleet::WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = tick.tick() => {}
        }
        let now = fleet::fingerprint(&dir);
        if now == seen {
            continue;
        }
        // Let a burst of writes (an editor's save, a copy) settle first.
        tokio::time::sleep(fleet::WATCH_EVERY).await;
        seen = fleet::fingerprint(&dir);
        let applied = async {
            let plans = plan(&dir, &args, &last_good)?;
            fleet.apply(&mut children, plans).await
        };
        let outcome = tokio::select! {
            r = applied => r,
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        };
        if let Err(error) = outcome {
            eprintln!("skiff up: {error:#}; the running workloads stay as they are");
        }
    }
    eprintln!("skiff up: stopping");
    children.shutdown().await;
    eprintln!("skiff up: stopped");
    Ok(())
}

/// Works out which proxies and apps to start, from the same model the control plane
/// builds.
fn plan(dir: &Path, args: &Args, last_good: &LastGood) -> anyhow::Result<Vec<ProxyPlan>> {
    let loaded = skiff_api::load(&[dir])?;
    // As the control plane does: a resource with errors is left out, its last good
    // version (from the previous look at the directory) standing in.
    let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.is_error()).collect();
    for d in &errors {
        eprintln!("error: {d}");
    }
    if !errors.is_empty() {
        eprintln!(
            "skiff up: {} has {} error(s): the resources they are in are left out (their last good versions stand); everything else runs",
            dir.display(),
            errors.len()
        );
    }
    let merged = last_good.merge(&loaded);
    let resources = skiff_control::with_builtin_gateway(merged.resources, args.gateway_address);
    let mesh = Mesh::build(&resources, MeshOptions::default());
    let mut plans = Vec::new();
    for id in mesh.proxies() {
        let Some(config) = mesh.compile(id) else {
            continue;
        };
        let Some(address) = config.node.address else {
            eprintln!(
                "skiff up: {id} has no address (a Pod or Deployment without one); it runs no proxy here"
            );
            continue;
        };
        if !address.is_loopback() {
            bail!(
                "{id} has address {address}, which is not a loopback address; on one machine every workload needs its own 127.x.y.z address"
            );
        }
        let run = resources
            .workload_entries()
            .find(|w| w.name() == config.node.name && w.namespace() == config.node.namespace)
            .and_then(|w| w.metadata().annotations.get(RUN_ANNOTATION).cloned());
        plans.push(ProxyPlan {
            id: id.to_owned(),
            address,
            kind: config.node.kind,
            gateway_ports: config.gateway.iter().map(|g| g.port).collect(),
            run,
            app_ports: config.inbound.iter().map(|i| i.target_port).collect(),
            service_account: config.node.service_account.clone(),
            spiffe_id: config.node.spiffe_id.clone(),
        });
    }
    let mut seen = std::collections::BTreeMap::new();
    for p in &plans {
        if let Some(other) = seen.insert(p.address, &p.id) {
            bail!(
                "{} and {other} share the address {}; give every workload its own loopback address",
                p.id,
                p.address
            );
        }
    }
    Ok(plans)
}

fn print_summary(
    dir: &Path,
    running: &BTreeMap<String, (ProxyPlan, AppState)>,
    root: &Path,
    xds: SocketAddr,
    debug: SocketAddr,
    offset: u16,
    dashboard: Option<SocketAddr>,
) {
    println!();
    println!("skiff up: the mesh of {} is running", dir.display());
    println!("  control plane  xds and CA {xds} (TLS), debug http://{debug}/debug/syncz");
    println!("  mesh CA root   {}", root.display());
    let mut curl = None;
    for (p, state) in running.values() {
        match p.kind {
            ProxyKind::Gateway => {
                for port in &p.gateway_ports {
                    let local = port.saturating_add(offset);
                    println!(
                        "  gateway        {:<28} http://{}:{local}/ (Gateway port {port})",
                        p.id, p.address
                    );
                    curl.get_or_insert(format!("curl http://{}:{local}/", p.address));
                }
            }
            ProxyKind::Sidecar => {
                println!(
                    "  workload       {:<28} {:<14} proxy admin http://{}:15000/  {}",
                    p.id,
                    p.address,
                    p.address,
                    fleet::app_words(p, state)
                );
            }
        }
    }
    println!("  proxy status   skiff proxy-status --control {debug}");
    println!(
        "  golden metrics skiff stat workloads --control {debug}, skiff top --control {debug}"
    );
    if let Some(dashboard) = dashboard {
        println!("  dashboard      http://{dashboard}/");
    }
    if let Some(curl) = curl {
        println!("try: {curl}");
    }
    println!("Changes to {} apply while it runs.", dir.display());
    println!("Ctrl-C stops everything.");
    println!();
}
