//! The command lines `skiff up` starts its children with, and how it knows they are
//! up: `/ready` for the control plane and proxies, the app's own ports for apps.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use skiff_model::config::ProxyKind;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;

use super::ProxyPlan;

/// What every child's command line is made from.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub(crate) exe: PathBuf,
    /// The configuration directory (canonical).
    pub(crate) dir: PathBuf,
    /// The directory of credential files, as given on the command line.
    pub(crate) credentials_dir: PathBuf,
    pub(crate) xds: SocketAddr,
    pub(crate) debug: SocketAddr,
    pub(crate) gateway_address: IpAddr,
    pub(crate) gateway_port_offset: u16,
    pub(crate) ca_dir: PathBuf,
    pub(crate) root: PathBuf,
    pub(crate) secret_file: PathBuf,
    /// `PATH` for apps.
    pub(crate) app_path: std::ffi::OsString,
    /// The MeshConfig file for the control plane, if any.
    pub(crate) mesh_config: Option<PathBuf>,
}

impl Launch {
    /// `skiff control` on the directory.
    pub(crate) fn control(&self) -> impl FnMut() -> Command + Send + 'static {
        let me = self.clone();
        move || {
            let mut control = Command::new(&me.exe);
            control
                .arg("control")
                .arg("--config")
                .arg(&me.dir)
                .arg("--xds-listen")
                .arg(me.xds.to_string())
                .arg("--debug-listen")
                .arg(me.debug.to_string())
                .arg("--builtin-gateway")
                .arg(me.gateway_address.to_string())
                .arg("--ca-dir")
                .arg(&me.ca_dir)
                .arg("--bootstrap-secret-file")
                .arg(&me.secret_file);
            if let Some(mesh) = &me.mesh_config {
                control.arg("--mesh-config").arg(mesh);
            }
            control
        }
    }

    /// `skiff proxy` for a workload, with its bootstrap token in the environment (not
    /// on the command line that `ps` shows).
    pub(crate) fn proxy(
        &self,
        plan: &ProxyPlan,
        token: String,
    ) -> impl FnMut() -> Command + Send + 'static {
        let me = self.clone();
        let plan = plan.clone();
        move || {
            let mut proxy = Command::new(&me.exe);
            proxy
                .arg("proxy")
                .arg("--id")
                .arg(&plan.id)
                .arg("--control")
                .arg(me.xds.to_string())
                .arg("--address")
                .arg(plan.address.to_string())
                .arg("--ca-root")
                .arg(&me.root)
                .arg("--service-account")
                .arg(&plan.service_account)
                .arg("--credentials-dir")
                .arg(&me.credentials_dir)
                .env("SKIFF_BOOTSTRAP_TOKEN", &token);
            if plan.kind == ProxyKind::Gateway {
                proxy
                    .arg("--gateway-port-offset")
                    .arg(me.gateway_port_offset.to_string());
            }
            proxy
        }
    }

    /// The app of a workload (its `skiff.dev/run` command), through a keeper that
    /// stops it if `skiff up` dies (`up/keeper.rs`).
    pub(crate) fn app(&self, plan: &ProxyPlan) -> impl FnMut() -> Command + Send + 'static {
        let me = self.clone();
        let plan = plan.clone();
        move || {
            let (name, namespace) = plan.id.split_once('.').unwrap_or((&plan.id, "default"));
            let proxy_url = format!("http://{}:15001", plan.address);
            let mut app = Command::new(&me.exe);
            app.args(["up-app", "--"])
                .arg(plan.run.as_deref().unwrap_or_default())
                .current_dir(&me.dir)
                .env("PATH", &me.app_path)
                .env("SKIFF_ADDRESS", plan.address.to_string())
                .env("SKIFF_WORKLOAD", name)
                .env("SKIFF_NAMESPACE", namespace)
                .env("HTTP_PROXY", &proxy_url)
                .env("http_proxy", &proxy_url)
                .env_remove("NO_PROXY")
                .env_remove("no_proxy");
            app
        }
    }
}

/// `PATH` for apps: the directory of this skiff binary first, so `skiff` in a
/// `skiff.dev/run` command is the same build.
pub(crate) fn app_path(exe: &Path) -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = exe.parent().map(Path::to_path_buf).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// Polls `GET /ready` until it answers 200.
pub(crate) async fn wait_ready(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
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

/// Whether an app is alive: every port its Services send traffic to accepts a TCP
/// connection. Polls until `timeout`; on failure, says which port did not answer.
pub(crate) async fn wait_alive(
    address: IpAddr,
    ports: &[u16],
    timeout: Duration,
) -> Result<(), u16> {
    let deadline = Instant::now() + timeout;
    for &port in ports {
        let target = SocketAddr::new(address, port);
        loop {
            let attempt = tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(target),
            )
            .await;
            if matches!(attempt, Ok(Ok(_))) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(port);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}
