//! The in-process mesh for end-to-end tests: the whole of skiff on loopback, in the
//! test's own process and runtime.
//!
//! [`Mesh::start`] takes Istio and Kubernetes YAML and starts what `skiff up` would,
//! without child processes:
//!
//! - the control plane ([`skiff_control::start`]) with a mesh CA in a temporary
//!   directory, a bootstrap secret, and its xDS/CA and debug ports on `127.0.0.1:0`;
//! - for every sidecar workload the compiled model knows (WorkloadEntries with an
//!   address, as `skiff up` decides): a [`skiff_proxy::Proxy`] whose first certificate
//!   comes from the CA through [`skiff_proxy::agent`] with the bootstrap token of the
//!   workload's SPIFFE id, whose config comes over xDS on TLS, and whose certificate is
//!   renewed by the agent for as long as the mesh runs;
//! - a test app per workload, on every inbound port of the workload: it answers 200
//!   with its workload's name and tells what reached it ([`header`]), and answers gRPC
//!   calls ([`grpc`]);
//! - for a WorkloadEntry that a Gateway selects (an ingress or egress gateway): a
//!   gateway proxy, no app, serving each server port plus [`GATEWAY_PORT_OFFSET`].
//!
//! Every mesh has its own loopback addresses, so tests run in parallel: write
//! `{{ip.NAME}}` where an address goes (a WorkloadEntry's `address`) and the harness
//! puts a fresh `127.x.y.z` there, the same one for the same `NAME` in every file of
//! the mesh, [`Mesh::write_config`] included.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use skiff_harness::Mesh;
//! let mesh = Mesh::start(&[("mesh.yaml", "...WorkloadEntries at {{ip.frontend}}...")]).await?;
//! let reply = mesh.get_via("frontend.prod", "http://backend.prod.svc.cluster.local/").await?;
//! assert_eq!(reply.status, 200);
//! mesh.write_config("policy.yaml", "...PeerAuthentication...").await?;
//! mesh.wait_synced().await?;
//! # Ok(()) }
//! ```
//!
//! Waiting is on conditions (the control plane's sync table, proxy readiness, a log
//! line), polled within a bound, never a fixed sleep. Dropping the mesh stops it.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context as _, bail};
use http::Method;
use skiff_control::{ControlIdentity, ControlOptions, MeshCompiler, Running};
use skiff_identity::{BootstrapTokens, Ca, MeshTls, SpiffeId};
use skiff_model::config::ProxyKind;
use skiff_proxy::agent::{self, ControlPlane};
use skiff_proxy::{AccessLogTarget, Proxy, ProxyOptions};
use skiff_xds::{ClientOptions, SyncStatus, XdsClient};
use tokio::task::JoinHandle;

mod app;
mod client;
pub mod grpc;
pub mod otlp;
pub mod scale;
#[cfg(test)]
mod tests;

pub use app::{TRACE_HEADERS, header};
pub use client::Reply;

const TRUST_DOMAIN: &str = "cluster.local";
/// How long any one condition may take before the harness gives up and says which.
const PATIENCE: Duration = Duration::from_secs(20);
/// Added to a gateway server's port, as `skiff up --gateway-port-offset` does by
/// default, so that port 80 is served on 8080 without privileges (the ports Istio's
/// gateway Services map 80 and 443 to: 8080 and 8443).
pub const GATEWAY_PORT_OFFSET: u16 = 8000;
/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(20);

/// How a mesh is started.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// The lifetime of workload certificates (the CA's default TTL, as
    /// `skiff control --cert-ttl`). Proxies renew at about half of it.
    pub cert_ttl: Duration,
    /// Istio's MeshConfig as YAML (as `skiff control --mesh-config` reads it), if any.
    pub mesh_config: Option<String>,
    /// Sidecars that discover services on demand (as `skiff proxy --on-demand`).
    pub on_demand: Vec<String>,
}

impl Default for MeshOptions {
    fn default() -> Self {
        MeshOptions {
            cert_ttl: skiff_identity::DEFAULT_TTL,
            mesh_config: None,
            on_demand: Vec::new(),
        }
    }
}

/// One workload of the mesh: its sidecar, identity and app.
#[derive(Debug)]
pub struct Workload {
    id: String,
    spiffe_id: SpiffeId,
    address: IpAddr,
    proxy: Proxy,
    tls: MeshTls,
    log: Arc<Mutex<Vec<String>>>,
    apps: BTreeMap<u16, app::App>,
    xds: Option<XdsClient>,
    renewal: JoinHandle<()>,
}

impl Workload {
    /// `<name>.<namespace>`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The workload's own loopback address.
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// The identity the workload's certificate carries.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// Where the app sends its requests (`HTTP_PROXY`): the sidecar's outbound listener.
    pub fn outbound(&self) -> SocketAddr {
        self.proxy
            .outbound_addr()
            .unwrap_or(SocketAddr::new(self.address, 15001))
    }

    /// Where peer proxies connect: the sidecar's inbound listener.
    pub fn inbound(&self) -> SocketAddr {
        self.proxy
            .inbound_addr()
            .unwrap_or(SocketAddr::new(self.address, 15006))
    }

    /// The sidecar itself.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// The sidecar's mesh identity; [`MeshTls::current_cert`] is the certificate in
    /// service now.
    pub fn tls(&self) -> &MeshTls {
        &self.tls
    }

    /// The authority of every request the app on `port` received, in order.
    pub fn app_hosts(&self, port: u16) -> Vec<String> {
        self.apps.get(&port).map_or_else(Vec::new, |a| {
            a.hosts.lock().unwrap_or_else(|e| e.into_inner()).clone()
        })
    }

    /// Where a gateway serves its Gateway server `port` (the port plus
    /// [`GATEWAY_PORT_OFFSET`]), once its config opened it.
    pub fn gateway(&self, port: u16) -> Option<SocketAddr> {
        self.proxy.gateway_addr(port)
    }

    /// Requests the app on `port` has answered.
    pub fn app_hits(&self, port: u16) -> usize {
        self.apps
            .get(&port)
            .map_or(0, |a| a.hits.load(Ordering::Relaxed))
    }
}

/// A running mesh; see the [crate] docs. Dropping it stops the control plane, the
/// proxies, their agents and the apps.
#[derive(Debug)]
pub struct Mesh {
    control: Option<Running>,
    workloads: BTreeMap<String, Workload>,
    addresses: Mutex<BTreeMap<String, IpAddr>>,
    config_dir: tempfile::TempDir,
    _ca_dir: tempfile::TempDir,
}

impl Mesh {
    /// Starts a mesh on `files` (name, YAML), with default [`MeshOptions`].
    pub async fn start(files: &[(&str, &str)]) -> anyhow::Result<Mesh> {
        Mesh::start_with(files, MeshOptions::default()).await
    }

    /// Starts a mesh on the YAML files of `dir` (not recursive).
    pub async fn start_dir(dir: &Path, options: MeshOptions) -> anyhow::Result<Mesh> {
        let mut files = Vec::new();
        for entry in
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let name = path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                files.push((name, std::fs::read_to_string(&path)?));
            }
        }
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(n, y)| (n.as_str(), y.as_str()))
            .collect();
        Mesh::start_with(&files, options).await
    }

    /// Starts a mesh on `files` (name, YAML) with `options`: control plane, then every
    /// workload's app and sidecar; returns once every proxy has acknowledged its config.
    pub async fn start_with(files: &[(&str, &str)], options: MeshOptions) -> anyhow::Result<Mesh> {
        let config_dir = tempfile::tempdir()?;
        let ca_dir = tempfile::tempdir()?;
        let mut mesh = Mesh {
            control: None,
            workloads: BTreeMap::new(),
            addresses: Mutex::new(BTreeMap::new()),
            config_dir,
            _ca_dir: ca_dir,
        };
        for (name, yaml) in files {
            mesh.write_file(name, yaml)?;
        }
        let ca = Arc::new(
            Ca::load_or_create(mesh._ca_dir.path(), TRUST_DOMAIN)?
                .with_default_ttl(options.cert_ttl),
        );
        let tokens = BootstrapTokens::new(&BootstrapTokens::generate_secret())?;
        let control_options = ControlOptions {
            xds_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            debug_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            debounce: skiff_control::watch::Debounce::after(Duration::from_millis(20)),
            identity: Some(ControlIdentity {
                ca: ca.clone(),
                tokens: Some(tokens.clone()),
            }),
            ..ControlOptions::new(mesh.config_dir.path())
        };
        let (access_log, tracing, locality_lb) = match &options.mesh_config {
            Some(text) => {
                let mesh = skiff_api::mesh_config::parse(text)
                    .map_err(|e| anyhow::anyhow!("the mesh config: {e}"))?
                    .0;
                (
                    Some(skiff_model::config::MeshAccessLog::of(&mesh)),
                    skiff_model::config::MeshTracing::of(&mesh),
                    mesh.locality_lb_setting
                        .clone()
                        .unwrap_or_else(skiff_model::locality::mesh_default),
                )
            }
            None => (
                None,
                skiff_model::config::MeshTracing::default(),
                skiff_model::locality::mesh_default(),
            ),
        };
        let compiler = MeshCompiler {
            options: skiff_model::MeshOptions {
                access_log,
                tracing,
                locality_lb,
                ..skiff_model::MeshOptions::default()
            },
            ..MeshCompiler::default()
        };
        let running = skiff_control::start(control_options, compiler).await?;
        let status = running.plane.status();
        if !status.ok {
            bail!("the mesh's configuration has errors: {:?}", status.errors);
        }
        let control = ControlPlane {
            address: running.xds_addr.to_string(),
            id: SpiffeId::control_plane(TRUST_DOMAIN)?,
        };
        mesh.control = Some(running);

        for plan in plan(mesh.config_dir.path())? {
            let on_demand = options.on_demand.contains(&plan.id);
            let workload = start_workload(&plan, &control, &ca, &tokens, on_demand).await?;
            mesh.workloads.insert(plan.id.clone(), workload);
        }
        for w in mesh.workloads.values() {
            until(&format!("the proxy of {} is ready", w.id), || {
                w.proxy.is_ready().then_some(())
            })
            .await?;
        }
        mesh.wait_synced().await?;
        Ok(mesh)
    }

    /// The workload `id` (`<name>.<namespace>`). Panics, naming the ones there are,
    /// if the mesh has no such workload.
    pub fn proxy(&self, id: &str) -> &Workload {
        self.workloads.get(id).unwrap_or_else(|| {
            panic!(
                "no workload {id} in this mesh; it has {:?}",
                self.workloads.keys().collect::<Vec<_>>()
            )
        })
    }

    /// Every workload, by id.
    pub fn workloads(&self) -> impl Iterator<Item = &Workload> {
        self.workloads.values()
    }

    /// The address that `{{ip.NAME}}` stands for in this mesh (a fresh one the first
    /// time).
    pub fn ip(&self, name: &str) -> IpAddr {
        *self
            .addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_insert_with(fresh_ip)
    }

    /// A GET of `url` as workload `from`'s app sends it: to its sidecar's outbound
    /// listener, on a new connection.
    pub async fn get_via(&self, from: &str, url: &str) -> anyhow::Result<Reply> {
        self.request_via(from, Method::GET, url).await
    }

    /// A GET as [`Mesh::get_via`], with extra request headers (e.g. `end-user`).
    pub async fn get_via_with(
        &self,
        from: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        client::send_with(self.proxy(from).outbound(), Method::GET, url, headers).await
    }

    /// A GET of `url` (absolute: its authority is the `host` the gateway routes by) sent
    /// straight to gateway `gateway`'s server `port`, as a client outside the mesh does.
    pub async fn get_gateway(
        &self,
        gateway: &str,
        port: u16,
        url: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let w = self.proxy(gateway);
        let at = until(&format!("{gateway} serves port {port}"), || w.gateway(port)).await?;
        client::send_with(at, Method::GET, url, headers).await
    }

    /// A gRPC call as workload `from`'s app makes it: HTTP/2 to its sidecar's outbound
    /// listener, on a new connection; see [`grpc`].
    pub async fn grpc_via(
        &self,
        from: &str,
        url: &str,
        requests: &[&[u8]],
        metadata: &[(&str, &str)],
    ) -> anyhow::Result<grpc::GrpcReply> {
        grpc::call(self.proxy(from).outbound(), url, requests, metadata).await
    }

    /// A request with any method, as [`Mesh::get_via`].
    pub async fn request_via(
        &self,
        from: &str,
        method: Method,
        url: &str,
    ) -> anyhow::Result<Reply> {
        client::send(self.proxy(from).outbound(), method, url).await
    }

    /// What a caller without mutual TLS gets from `workload`'s inbound listener for
    /// its app `port`: the transport header naming the port, then a plain-text
    /// `GET /plain`. The raw response, or `""` when the sidecar closed the connection.
    pub async fn plaintext_to_inbound(&self, workload: &str, port: u16) -> anyhow::Result<String> {
        client::plaintext(self.proxy(workload).inbound(), port).await
    }

    /// `workload`'s access log so far (its sidecar's lines, in memory).
    pub fn logs(&self, workload: &str) -> Vec<String> {
        self.proxy(workload)
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits for a line of `workload`'s access log that contains `needle` (the log is
    /// written when a request ends, which can be just after its response arrived).
    pub async fn log_line(&self, workload: &str, needle: &str) -> anyhow::Result<String> {
        until(
            &format!("a line with {needle:?} in the access log of {workload}"),
            || self.logs(workload).into_iter().find(|l| l.contains(needle)),
        )
        .await
        .with_context(|| format!("the log of {workload}: {:#?}", self.logs(workload)))
    }

    /// Writes (or replaces) config file `name` and has the control plane load it now;
    /// an empty `yaml` removes the file. `{{ip.NAME}}` is replaced as at start.
    /// Workloads are those of the start: new WorkloadEntries get no sidecar. Follow
    /// with [`Mesh::wait_synced`].
    pub async fn write_config(&self, name: &str, yaml: &str) -> anyhow::Result<()> {
        self.write_file(name, yaml)?;
        let plane = self.running()?.plane.clone();
        let status = tokio::task::spawn_blocking(move || plane.reload()).await?;
        if !status.ok {
            bail!(
                "{name}: the control plane refused the configuration: {:?}",
                status.errors
            );
        }
        Ok(())
    }

    /// Waits until every proxy has acknowledged the newest version the control plane
    /// holds for it (every row of its sync table SYNCED).
    pub async fn wait_synced(&self) -> anyhow::Result<()> {
        let running = self.running()?;
        let result = until("every proxy SYNCED", || {
            let snapshot = running.plane.snapshot();
            let rows = running.plane.sync().rows(&snapshot);
            let all = self.workloads.keys().all(|id| {
                rows.iter()
                    .any(|r| &r.proxy == id && r.status == SyncStatus::Synced)
            });
            all.then_some(())
        })
        .await;
        result.with_context(|| {
            let snapshot = running.plane.snapshot();
            format!("sync table: {:#?}", running.plane.sync().rows(&snapshot))
        })
    }

    /// The control plane, for what the harness does not wrap.
    pub fn control(&self) -> &Running {
        self.control
            .as_ref()
            .unwrap_or_else(|| unreachable!("set in start"))
    }

    fn running(&self) -> anyhow::Result<&Running> {
        self.control
            .as_ref()
            .context("the control plane is not running")
    }

    fn write_file(&self, name: &str, yaml: &str) -> anyhow::Result<()> {
        let path = self.config_dir.path().join(name);
        if yaml.is_empty() {
            if path.exists() {
                std::fs::remove_file(&path)?;
            }
            return Ok(());
        }
        let text = self.expand(yaml)?;
        // Write aside, then rename, so a reload never reads half a file.
        let partial = self.config_dir.path().join(format!(".{name}.partial"));
        std::fs::write(&partial, text)?;
        std::fs::rename(&partial, &path)?;
        Ok(())
    }

    /// `yaml` with every `{{ip.NAME}}` replaced by [`Mesh::ip`]`(NAME)`.
    fn expand(&self, yaml: &str) -> anyhow::Result<String> {
        expand(yaml, |name| self.ip(name))
    }
}

/// `yaml` with every `{{ip.NAME}}` replaced by `ip(NAME)`.
fn expand(yaml: &str, mut ip: impl FnMut(&str) -> IpAddr) -> anyhow::Result<String> {
    let mut out = String::with_capacity(yaml.len());
    let mut rest = yaml;
    while let Some(at) = rest.find("{{ip.") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 5..];
        let end = after
            .find("}}")
            .with_context(|| format!("an unclosed {{{{ip. in {:?}", &rest[at..]))?;
        out.push_str(&ip(&after[..end]).to_string());
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for w in self.workloads.values_mut() {
            w.renewal.abort();
            w.xds.take();
            w.proxy.request_shutdown();
        }
        // The listeners' tasks end with the test's runtime; the control plane's are
        // told to stop now if there is a runtime to do it on.
        if let Some(control) = self.control.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                let _ = control.shutdown().await;
            });
        }
    }
}

/// A workload to run, from the compiled model, as `skiff up` plans them.
struct Plan {
    id: String,
    address: IpAddr,
    spiffe_id: SpiffeId,
    ports: Vec<u16>,
    /// A gateway proxy (its WorkloadEntry's labels are selected by a Gateway): no app,
    /// and its servers on their port plus [`GATEWAY_PORT_OFFSET`].
    gateway: bool,
}

fn plan(dir: &Path) -> anyhow::Result<Vec<Plan>> {
    let loaded = skiff_api::load(&[dir])?;
    if loaded.diagnostics.has_errors() {
        let errors: Vec<String> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.to_string())
            .collect();
        bail!("the mesh's YAML has errors: {errors:#?}");
    }
    let model = skiff_model::Mesh::build(&loaded.resources, skiff_model::MeshOptions::default());
    let mut plans = Vec::new();
    for id in model.proxies() {
        let Some(config) = model.compile(id) else {
            continue;
        };
        let gateway = config.node.kind == ProxyKind::Gateway;
        let Some(address) = config.node.address else {
            continue;
        };
        if !address.is_loopback() {
            bail!("{id} has address {address}: use {{{{ip.NAME}}}} or a 127.x.y.z address");
        }
        plans.push(Plan {
            id: id.to_owned(),
            address,
            spiffe_id: config
                .node
                .spiffe_id
                .parse()
                .with_context(|| format!("the identity of {id}"))?,
            ports: if gateway {
                Vec::new()
            } else {
                config.inbound.iter().map(|p| p.target_port).collect()
            },
            gateway,
        });
    }
    Ok(plans)
}

async fn start_workload(
    plan: &Plan,
    control: &ControlPlane,
    ca: &Ca,
    tokens: &BootstrapTokens,
    on_demand: bool,
) -> anyhow::Result<Workload> {
    let mut apps = BTreeMap::new();
    for port in &plan.ports {
        // The sidecar's outbound listener, where the proxy opens it (its default port).
        let outbound = SocketAddr::new(plan.address, 15001);
        let app = app::start(&plan.id, SocketAddr::new(plan.address, *port), outbound).await?;
        apps.insert(*port, app);
    }
    let tls = MeshTls::without_cert(ca.bundle())?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let proxy = Proxy::start(ProxyOptions {
        id: plan.id.clone(),
        address: Some(plan.address),
        agent_ports: vec![],
        access_log: AccessLogTarget::Memory(log.clone()),
        drain_timeout: Duration::from_secs(1),
        mesh_tls: Some(tls.clone()),
        gateway_port_offset: if plan.gateway { GATEWAY_PORT_OFFSET } else { 0 },
        ..ProxyOptions::default()
    })
    .await
    .with_context(|| format!("starting the proxy of {}", plan.id))?;
    // As `skiff proxy` does: the certificate first, then xDS with it, then renewal.
    let token = tokens.token_for(&plan.spiffe_id);
    let first = agent::first_certificate(control, &tls, &plan.spiffe_id, &token)
        .await
        .with_context(|| format!("the first certificate of {}", plan.id))?;
    tls.rotate(first);
    let renewal = tokio::spawn(agent::renew_forever(
        control.clone(),
        tls.clone(),
        plan.spiffe_id.clone(),
    ));
    let options = ClientOptions {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(500),
        on_demand,
        ..ClientOptions::default()
    };
    let xds = agent::connect_xds(&proxy, control, &tls, &plan.id, options)
        .with_context(|| format!("xDS for {}", plan.id))?;
    Ok(Workload {
        id: plan.id.clone(),
        spiffe_id: plan.spiffe_id.clone(),
        address: plan.address,
        proxy,
        tls,
        log,
        apps,
        xds: Some(xds),
        renewal,
    })
}

/// Polls `check` until it gives a value, for at most [`PATIENCE`].
async fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("waited {PATIENCE:?} for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A loopback address no other mesh of this process uses, and (by the process id in
/// the second octet) unlikely to be used by another test process:
/// `127.<210 + pid % 40>.<n / 250>.<n % 250 + 1>`. The proxy crate's tests use
/// second octets below 210.
fn fresh_ip() -> IpAddr {
    static BASE: OnceLock<u8> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = *BASE.get_or_init(|| 210 + (std::process::id() % 40) as u8);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    IpAddr::V4(Ipv4Addr::new(
        127,
        base,
        (n / 250) as u8,
        (n % 250 + 1) as u8,
    ))
}
