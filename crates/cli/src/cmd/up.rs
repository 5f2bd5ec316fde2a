//! `skiff up DIR`: the whole mesh on one machine, in one command.
//!
//! It starts, as child processes of its own binary: the control plane on the
//! directory, one proxy per workload (each on the workload's own loopback address),
//! the ingress gateway for the directory's `Gateway`s, and the apps that workloads ask
//! to run with the `skiff.dev/run` annotation. It prints what runs where, stays in the
//! foreground, and stops everything on Ctrl-C.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use skiff_identity::{BootstrapTokens, SpiffeId};
use skiff_model::config::ProxyKind;
use skiff_model::{Mesh, MeshOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};

pub(crate) mod keeper;
pub(crate) mod lifeline;
mod supervisor;

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

/// One proxy to start.
struct ProxyPlan {
    id: String,
    address: IpAddr,
    kind: ProxyKind,
    gateway_ports: Vec<u16>,
    run: Option<String>,
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
    let plans = plan(&dir, &args)?;
    let exe = std::env::current_exe().context("cannot find the skiff binary")?;
    let ready_timeout = Duration::from_secs(args.ready_timeout);
    let xds = SocketAddr::new(args.control_address, 15010);
    let debug = SocketAddr::new(args.control_address, 15014);
    let state_dir = args.state_dir.clone().unwrap_or_else(|| dir.join(".skiff"));
    let state = prepare_state(&state_dir)?;

    let width = plans
        .iter()
        .map(|p| p.id.len() + 4)
        .chain([7])
        .max()
        .unwrap_or(7);
    let mut children = Supervisor::new(width);
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;

    let started = async {
        let mut control = Command::new(&exe);
        control
            .arg("control")
            .arg("--config")
            .arg(&dir)
            .arg("--xds-listen")
            .arg(xds.to_string())
            .arg("--debug-listen")
            .arg(debug.to_string())
            .arg("--builtin-gateway")
            .arg(args.gateway_address.to_string())
            .arg("--ca-dir")
            .arg(&state.ca_dir)
            .arg("--bootstrap-secret-file")
            .arg(&state.secret_file);
        children.spawn("control", control)?;
        wait_ready(debug, ready_timeout)
            .await
            .context("the control plane did not become ready")?;
        if !state.root.is_file() {
            bail!(
                "the control plane is ready but its CA root {} is not there",
                state.root.display()
            );
        }

        for p in &plans {
            let mut proxy = Command::new(&exe);
            proxy
                .arg("proxy")
                .arg("--id")
                .arg(&p.id)
                .arg("--control")
                .arg(xds.to_string())
                .arg("--address")
                .arg(p.address.to_string())
                .arg("--ca-root")
                .arg(&state.root)
                .arg("--service-account")
                .arg(&p.service_account)
                .arg("--credentials-dir")
                .arg(args.dir.join("credentials"))
                // The token in the environment, not on the command line that `ps` shows.
                .env(
                    "SKIFF_BOOTSTRAP_TOKEN",
                    state.tokens.token_for(&p.identity()?),
                );
            if p.kind == ProxyKind::Gateway {
                proxy
                    .arg("--gateway-port-offset")
                    .arg(args.gateway_port_offset.to_string());
            }
            children.spawn(&p.id, proxy)?;
        }
        for p in &plans {
            wait_ready(SocketAddr::new(p.address, 15000), ready_timeout)
                .await
                .with_context(|| format!("the proxy of {} did not become ready", p.id))?;
        }
        if !args.no_apps {
            let path = app_path(&exe);
            for p in plans.iter().filter(|p| p.run.is_some()) {
                let (name, namespace) = p.id.split_once('.').unwrap_or((&p.id, "default"));
                let proxy_url = format!("http://{}:15001", p.address);
                // Through a keeper that stops the app if `skiff up` dies (`up/keeper.rs`).
                let mut app = Command::new(&exe);
                app.args(["up-app", "--"])
                    .arg(p.run.as_deref().unwrap_or_default())
                    .current_dir(&dir)
                    .env("PATH", &path)
                    .env("SKIFF_ADDRESS", p.address.to_string())
                    .env("SKIFF_WORKLOAD", name)
                    .env("SKIFF_NAMESPACE", namespace)
                    .env("HTTP_PROXY", &proxy_url)
                    .env("http_proxy", &proxy_url)
                    .env_remove("NO_PROXY")
                    .env_remove("no_proxy");
                children.spawn(&format!("{}/app", p.id), app)?;
            }
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
        &plans,
        &state.root,
        xds,
        debug,
        args.gateway_port_offset,
        args.no_apps,
    );

    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            exit = children.next_exit() => match exit {
                Some((name, last)) => eprintln!("skiff up: {name} stopped (last words: {last:?})"),
                None => break,
            },
        }
    }
    eprintln!("skiff up: stopping");
    children.shutdown().await;
    eprintln!("skiff up: stopped");
    Ok(())
}

/// Works out which proxies and apps to start, from the same model the control plane
/// builds.
fn plan(dir: &Path, args: &Args) -> anyhow::Result<Vec<ProxyPlan>> {
    let loaded = skiff_api::load(&[dir])?;
    if loaded.diagnostics.has_errors() {
        for d in loaded.diagnostics.iter().filter(|d| d.is_error()) {
            eprintln!("error: {d}");
        }
        bail!(
            "{} has {} error(s); fix them and run skiff up again",
            dir.display(),
            loaded.diagnostics.errors()
        );
    }
    let resources = skiff_control::with_builtin_gateway(loaded.resources, args.gateway_address);
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

/// `PATH` for apps: the directory of this skiff binary first, so `skiff` in a
/// `skiff.dev/run` command is the same build.
fn app_path(exe: &Path) -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = exe.parent().map(Path::to_path_buf).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// Polls `GET /ready` until it answers 200.
async fn wait_ready(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match ready_status(addr).await {
            Ok(200) => return Ok(()),
            Ok(status) => last = format!("/ready answered {status}"),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("http://{addr}/ready: {last} after {timeout:?}")
}

async fn ready_status(addr: SocketAddr) -> anyhow::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /ready HTTP/1.1\r\nHost: skiff\r\nConnection: close\r\n\r\n")
        .await?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    let status = std::str::from_utf8(&head[9..12])?.parse()?;
    Ok(status)
}

fn print_summary(
    dir: &Path,
    plans: &[ProxyPlan],
    root: &Path,
    xds: SocketAddr,
    debug: SocketAddr,
    offset: u16,
    no_apps: bool,
) {
    println!();
    println!("skiff up: the mesh of {} is running", dir.display());
    println!("  control plane  xds and CA {xds} (TLS), debug http://{debug}/debug/syncz");
    println!("  mesh CA root   {}", root.display());
    let mut curl = None;
    for p in plans {
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
                let app = match (&p.run, no_apps) {
                    (Some(_), false) => "app running",
                    (Some(_), true) => "app not started (--no-apps)",
                    (None, _) => "no app (no skiff.dev/run annotation)",
                };
                println!(
                    "  workload       {:<28} {:<14} proxy admin http://{}:15000/  {app}",
                    p.id, p.address, p.address
                );
            }
        }
    }
    println!("  proxy status   skiff proxy-status --control {debug}");
    if let Some(curl) = curl {
        println!("try: {curl}");
    }
    println!("Ctrl-C stops everything.");
    println!();
}
