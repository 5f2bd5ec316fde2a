//! The control plane at scale: the real `skiff control` as a child process, a
//! synthetic mesh written to a directory, and one simulated proxy per workload in this
//! process (an xDS client with its own certificate that decodes and acknowledges every
//! config, as a proxy does). Then churn: an endpoint moves, a VirtualService's weights
//! change, a service is added; for each change, how long until every proxy has the new
//! config, how many bytes were pushed per proxy, and what the control plane spent.
//!
//! `bench/control-scale` runs it (docs/performance.md shows how to read it).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use skiff_identity::{BootstrapTokens, TrustBundle};
use tokio::time::Instant;

pub mod fleet;
pub mod mesh;
pub mod process;
pub mod real;

pub use mesh::MeshShape;
use process::{Control, Usage};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The mesh.
    pub shape: MeshShape,
    /// Rounds of churn; each round makes one change of every kind.
    pub rounds: usize,
    /// The `skiff` binary.
    pub skiff: PathBuf,
    /// How long a change may take to reach every proxy before it counts as not
    /// converged.
    pub timeout: Duration,
    /// More arguments for `skiff control`.
    pub control_args: Vec<String>,
    /// Real `skiff proxy` processes instead of simulated proxies (the mesh's
    /// workloads then live on loopback addresses).
    pub real: bool,
    /// More arguments for each real `skiff proxy` (e.g. `--on-demand`).
    pub proxy_args: Vec<String>,
}

/// The kinds of change the churn makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A workload moves to another address: one service's endpoints change.
    Endpoint,
    /// A VirtualService's weights change.
    Route,
    /// A service is added.
    NewService,
}

impl ChangeKind {
    /// How the report names it.
    pub fn label(self) -> &'static str {
        match self {
            ChangeKind::Endpoint => "endpoint moved",
            ChangeKind::Route => "VirtualService edit",
            ChangeKind::NewService => "service added",
        }
    }
}

/// One change and how it reached the proxies.
#[derive(Debug, Clone)]
pub struct Change {
    /// What changed.
    pub kind: ChangeKind,
    /// From writing the file to each proxy's receiving (and acknowledging) the config
    /// that carries it, sorted; one entry per proxy reached.
    pub delays: Vec<Duration>,
    /// Proxies connected when the change was made.
    pub proxies: usize,
    /// Bytes pushed for this change, all proxies together.
    pub bytes: f64,
    /// Pushes made for this change.
    pub pushes: f64,
    /// CPU time the control plane spent from the change until it was quiet again.
    pub cpu_seconds: f64,
    /// How long the control plane's reload took (reading, compiling, encoding).
    pub reload: Duration,
}

/// Everything measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The mesh.
    pub shape: MeshShape,
    /// From starting the proxies to every one of them running its first config.
    pub startup: Duration,
    /// The control plane before any proxy connected.
    pub idle: Usage,
    /// The control plane with every proxy connected and synced.
    pub connected: Usage,
    /// The control plane at the end of the churn.
    pub end: Usage,
    /// Bytes of the first config pushed to each proxy (mean).
    pub first_config_bytes: f64,
    /// With real proxies: each one's usage once every change was made.
    pub proxies: Vec<Usage>,
    /// The changes, in order.
    pub changes: Vec<Change>,
}

/// Runs the whole measurement.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let shape = options.shape;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("mesh");
    std::fs::create_dir_all(&config)?;
    shape.write(&config)?;
    let secret: String = BootstrapTokens::generate_secret()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let secret_file = dir.path().join("bootstrap-secret");
    std::fs::write(&secret_file, &secret)?;
    let tokens = BootstrapTokens::new(secret.as_bytes())?;
    let log = dir.path().join("control.log");
    eprintln!(
        "starting skiff control on {} proxies, {} services",
        shape.proxies, shape.services
    );
    let control = Control::start(
        &options.skiff,
        &config,
        &secret_file,
        &log,
        &options.control_args,
    )
    .await?;
    let idle = control.usage()?;
    let root = config.join(".skiff/ca/root-cert.pem");
    let pem = std::fs::read_to_string(&root)
        .with_context(|| format!("cannot read the mesh root {}", root.display()))?;
    let bundle = TrustBundle::from_pem("cluster.local", &pem)?;

    if options.real {
        return run_real(options, control, idle, &root, &tokens, dir.path(), &config).await;
    }
    eprintln!("connecting {} simulated proxies", shape.proxies);
    let started = Instant::now();
    let workloads = shape.workloads();
    let proxies = fleet::start(&control.xds.to_string(), &bundle, &tokens, &workloads).await?;
    let reached = wait_all(&proxies, None, options.timeout * 4).await;
    anyhow::ensure!(
        reached == proxies.len(),
        "only {reached} of {} proxies got their first config; see {}",
        proxies.len(),
        log.display()
    );
    let startup = started.elapsed();
    let first_config_bytes = mean_push_bytes(&control).await?;
    quiet().await;
    let connected = control.usage()?;

    let mut changes = Vec::new();
    for round in 0..options.rounds {
        for kind in [
            ChangeKind::Endpoint,
            ChangeKind::Route,
            ChangeKind::NewService,
        ] {
            let change = measure(&control, &proxies, &config, shape, kind, round, options).await?;
            eprintln!(
                "round {round}: {}: {} of {} proxies, max {:?}",
                kind.label(),
                change.delays.len(),
                change.proxies,
                change.delays.last().copied().unwrap_or_default()
            );
            changes.push(change);
        }
    }
    let end = control.usage()?;
    drop(proxies);
    Ok(Report {
        shape,
        startup,
        idle,
        connected,
        end,
        first_config_bytes,
        proxies: Vec::new(),
        changes,
    })
}

/// [`run`] with real proxies: VirtualService edits and new services (an endpoint
/// move would move a real proxy's own address).
async fn run_real(
    options: &Options,
    control: Control,
    idle: Usage,
    root: &std::path::Path,
    tokens: &BootstrapTokens,
    work: &std::path::Path,
    config: &std::path::Path,
) -> anyhow::Result<Report> {
    let shape = options.shape;
    eprintln!("starting {} skiff proxy processes", shape.proxies);
    let started = Instant::now();
    let logs = work.join("proxies");
    let fleet = real::Fleet::start(
        &options.skiff,
        &control,
        root,
        tokens,
        &shape,
        &logs,
        &options.proxy_args,
    )?;
    let synced = real::wait_synced(&control, fleet.len(), options.timeout * 4).await;
    anyhow::ensure!(
        synced == fleet.len(),
        "only {synced} of {} proxies synced; see {}",
        fleet.len(),
        logs.display()
    );
    let startup = started.elapsed();
    let first_config_bytes = mean_push_bytes(&control).await?;
    quiet().await;
    let connected = control.usage()?;
    let mut changes = Vec::new();
    for round in 0..options.rounds {
        for kind in [ChangeKind::Route, ChangeKind::NewService] {
            let after = real::newest_change(&control).await?;
            let before = Counters::read(&control).await?;
            make_change(shape, config, kind, round)?;
            let delays = real::wait_applied(&control, after, fleet.len(), options.timeout).await;
            quiet().await;
            let change = before.change(&control, kind, delays, fleet.len()).await?;
            eprintln!(
                "round {round}: {}: {} of {} proxies, max {:?}",
                kind.label(),
                change.delays.len(),
                change.proxies,
                change.delays.last().copied().unwrap_or_default()
            );
            changes.push(change);
        }
    }
    let end = control.usage()?;
    let proxies = fleet.usage();
    drop(fleet);
    Ok(Report {
        shape,
        startup,
        idle,
        connected,
        end,
        first_config_bytes,
        proxies,
        changes,
    })
}

async fn measure(
    control: &Control,
    proxies: &[fleet::SimProxy],
    config: &std::path::Path,
    shape: MeshShape,
    kind: ChangeKind,
    round: usize,
    options: &Options,
) -> anyhow::Result<Change> {
    let before = Counters::read(control).await?;
    let at = Instant::now();
    make_change(shape, config, kind, round)?;
    wait_all(proxies, Some(at), options.timeout).await;
    quiet().await;
    let mut delays: Vec<Duration> = proxies
        .iter()
        .filter_map(|p| p.received_at())
        .filter(|&t| t > at)
        .map(|t| t - at)
        .collect();
    delays.sort();
    before.change(control, kind, delays, proxies.len()).await
}

/// Makes one change of `kind` to the mesh in `config` (round `round` of the churn).
fn make_change(
    shape: MeshShape,
    config: &std::path::Path,
    kind: ChangeKind,
    round: usize,
) -> anyhow::Result<()> {
    match kind {
        ChangeKind::Endpoint => shape.move_endpoint(config, (round * 7919) % shape.proxies, round),
        ChangeKind::Route => shape.edit_route(config, round % shape.routed.max(1), round),
        ChangeKind::NewService => shape.add_service(config, shape.services + round),
    }
}

/// The bytes of the configs pushed so far, per push (right after startup: the
/// first config of each proxy).
async fn mean_push_bytes(control: &Control) -> anyhow::Result<f64> {
    Ok(control.metric("pilot_xds_config_size_bytes_sum").await?
        / control.metric("pilot_xds_pushes_total").await?.max(1.0))
}

/// The control plane's counters before a change.
struct Counters {
    pushes: f64,
    bytes: f64,
    cpu_seconds: f64,
}

impl Counters {
    async fn read(control: &Control) -> anyhow::Result<Counters> {
        Ok(Counters {
            pushes: control.metric("pilot_xds_pushes_total").await?,
            bytes: control.metric("pilot_xds_config_size_bytes_sum").await?,
            cpu_seconds: control.usage()?.cpu_seconds,
        })
    }

    /// The change, with what the control plane spent on it since these counters.
    async fn change(
        &self,
        control: &Control,
        kind: ChangeKind,
        delays: Vec<Duration>,
        proxies: usize,
    ) -> anyhow::Result<Change> {
        Ok(Change {
            kind,
            delays,
            proxies,
            bytes: control.metric("pilot_xds_config_size_bytes_sum").await? - self.bytes,
            pushes: control.metric("pilot_xds_pushes_total").await? - self.pushes,
            cpu_seconds: control.usage()?.cpu_seconds - self.cpu_seconds,
            reload: control.reload_duration().await?,
        })
    }
}

/// Waits until every proxy received a config after `after` (any config, if `None`),
/// or `timeout`; returns how many did.
async fn wait_all(proxies: &[fleet::SimProxy], after: Option<Instant>, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let reached = proxies
            .iter()
            .filter(|p| {
                p.received_at()
                    .is_some_and(|t| after.is_none_or(|after| t > after))
            })
            .count();
        if reached == proxies.len() || Instant::now() > deadline {
            return reached;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Lets stragglers and the ACKs of the last pushes arrive before reading counters.
async fn quiet() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// The `q` quantile (0..=1) of sorted durations.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Report {
    /// The report as a table, one line per kind of change (all rounds together).
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let n = self.shape.proxies.max(1) as f64;
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} proxies, {} services ({} routed), {} namespaces",
            self.shape.proxies, self.shape.services, self.shape.routed, self.shape.namespaces
        );
        let _ = writeln!(
            out,
            "startup: every proxy running its first config after {:.2} s; first config {:.0} bytes per proxy",
            self.startup.as_secs_f64(),
            self.first_config_bytes
        );
        let _ = writeln!(
            out,
            "control plane RSS: {:.1} MiB idle, {:.1} MiB connected ({:.3} MB per proxy), {:.1} MiB at the end",
            mib(self.idle.rss_bytes),
            mib(self.connected.rss_bytes),
            self.connected.rss_bytes as f64 / n / 1e6,
            mib(self.end.rss_bytes)
        );
        if !self.proxies.is_empty() {
            let n = self.proxies.len() as u64;
            let mean = |f: fn(&Usage) -> u64| self.proxies.iter().map(f).sum::<u64>() / n;
            let max = |f: fn(&Usage) -> u64| self.proxies.iter().map(f).max().unwrap_or(0);
            let _ = writeln!(
                out,
                "skiff proxy RSS over {n} processes: {:.1} MiB mean, {:.1} MiB max; of which its own (anonymous): {:.1} MiB mean, {:.1} MiB max; the rest is the binary's pages, shared",
                mib(mean(|u| u.rss_bytes)),
                mib(max(|u| u.rss_bytes)),
                mib(mean(|u| u.anon_bytes)),
                mib(max(|u| u.anon_bytes)),
            );
            let _ = writeln!(
                out,
                "skiff proxy PSS (shared pages divided among the processes sharing them): {:.1} MiB mean, {:.1} MiB max",
                mib(mean(|u| u.pss_bytes)),
                mib(max(|u| u.pss_bytes)),
            );
        }
        let _ = writeln!(
            out,
            "{:<20} {:>7} {:>9} {:>9} {:>9} {:>12} {:>10} {:>9}",
            "change", "reached", "p50", "p99", "max", "bytes/proxy", "cpu/change", "reload"
        );
        for kind in [
            ChangeKind::Endpoint,
            ChangeKind::Route,
            ChangeKind::NewService,
        ] {
            let of_kind: Vec<&Change> = self.changes.iter().filter(|c| c.kind == kind).collect();
            if of_kind.is_empty() {
                continue;
            }
            let mut delays: Vec<Duration> = of_kind
                .iter()
                .flat_map(|c| c.delays.iter().copied())
                .collect();
            delays.sort();
            let expected: usize = of_kind.iter().map(|c| c.proxies).sum();
            let bytes: f64 = of_kind.iter().map(|c| c.bytes).sum();
            let cpu: f64 = of_kind.iter().map(|c| c.cpu_seconds).sum();
            let reload = of_kind.iter().map(|c| c.reload).max().unwrap_or_default();
            let ms = |d: Duration| format!("{:.0}ms", d.as_secs_f64() * 1e3);
            let _ = writeln!(
                out,
                "{:<20} {:>7} {:>9} {:>9} {:>9} {:>12.0} {:>9.2}s {:>9}",
                kind.label(),
                format!(
                    "{:.0}%",
                    100.0 * delays.len() as f64 / expected.max(1) as f64
                ),
                ms(quantile(&delays, 0.5)),
                ms(quantile(&delays, 0.99)),
                ms(delays.last().copied().unwrap_or_default()),
                bytes / delays.len().max(1) as f64,
                cpu / of_kind.len() as f64,
                ms(reload)
            );
        }
        out
    }
}
