//! `skiff proxy`: the data-plane proxy, beside one workload or as a gateway.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use skiff_identity::{MeshTls, SpiffeId};
use skiff_proxy::AccessLogTarget;
use skiff_proxy::agent as identity;
use skiff_proxy::{Proxy, ProxyOptions};
use skiff_xds::ClientOptions;

/// The environment variable that carries the bootstrap token, if `--token-file` does
/// not.
const TOKEN_ENV: &str = "SKIFF_BOOTSTRAP_TOKEN";

/// Arguments of `skiff proxy`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Proxy id: `<workload name>.<namespace>`.
    #[arg(long)]
    id: String,
    /// Where DestinationRule `credentialName`s are read from: a directory per name with
    /// `tls.crt`, `tls.key` and `ca.crt` (what a Kubernetes TLS secret holds). `skiff up`
    /// passes `<config dir>/credentials`.
    #[arg(long, value_name = "DIR")]
    credentials_dir: Option<PathBuf>,
    /// Control plane address (`host:port`) to take config from.
    #[arg(
        long,
        required_unless_present = "config_file",
        conflicts_with = "config_file"
    )]
    control: Option<String>,
    /// The mesh root (PEM; several certificates during a root rotation): the control
    /// plane's certificate, and peers', must chain to it. Needed with --control, e.g.
    /// `<ca dir>/root-cert.pem` of `skiff control`; with --config-file, together with
    /// --cert-file and --key-file.
    #[arg(long, value_name = "FILE")]
    ca_root: Option<PathBuf>,
    /// With --config-file: this proxy's mesh certificate chain (PEM, leaf first; the
    /// leaf's URI SAN is its SPIFFE id), for mutual TLS with peer proxies. Needs
    /// --key-file and --ca-root. Read once at start (not renewed).
    #[arg(long, value_name = "FILE", conflicts_with = "control")]
    cert_file: Option<PathBuf>,
    /// With --config-file: the private key of --cert-file (PKCS#8 PEM, ECDSA P-256).
    #[arg(long, value_name = "FILE", conflicts_with = "control")]
    key_file: Option<PathBuf>,
    /// File holding the bootstrap token that proves this proxy's identity to the CA
    /// for its first certificate (default: the `SKIFF_BOOTSTRAP_TOKEN` environment
    /// variable). `skiff up` hands every proxy its own.
    #[arg(long, value_name = "FILE", conflicts_with = "config_file")]
    token_file: Option<PathBuf>,
    /// Trust domain of the mesh's identities.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// Service account of the workload: the identity asked for is
    /// `spiffe://<trust domain>/ns/<namespace of --id>/sa/<this>`. Default: the
    /// token's, if the token is for the namespace of --id; else `default`.
    #[arg(long)]
    service_account: Option<String>,
    /// Take config from a control plane that serves xDS in plain text
    /// (`skiff control --insecure-xds`), with no mesh identity. For debugging only.
    #[arg(long, conflicts_with_all = ["ca_root", "token_file", "config_file"])]
    insecure_xds: bool,
    /// Take config from this JSON file (a ProxyConfig) instead of a control plane; it is
    /// re-read when it changes.
    #[arg(long)]
    config_file: Option<PathBuf>,
    /// Address to listen on (default: the config's node address, else 127.0.0.1).
    #[arg(long)]
    address: Option<IpAddr>,
    /// Worker threads for the data path.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Added to every gateway port (so port 80 can be served on 8080 without root).
    #[arg(long, default_value_t = 0)]
    gateway_port_offset: u16,
    /// Access log to stdout: `on` or `off`.
    #[arg(long, value_enum, default_value = "on")]
    access_log: OnOff,
    /// Access-log format: `skiff` (skiff's line, with the reason for every refusal in
    /// words), `istio` (Istio's default text format) or `json` (Istio's default fields
    /// as JSON, as `meshConfig.accessLogEncoding: JSON`).
    #[arg(long, value_enum, default_value = "skiff")]
    access_log_format: LogFormat,
    /// Istio's standard metrics (`istio_requests_total`, …) at `/stats/prometheus` on
    /// the admin ports: `on` or `off` (to measure what they cost).
    #[arg(long, value_enum, default_value = "on")]
    metrics: OnOff,
    /// Outbound listener port.
    #[arg(long, default_value_t = 15001)]
    outbound_port: u16,
    /// Inbound listener port.
    #[arg(long, default_value_t = 15006)]
    inbound_port: u16,
    /// Admin listener port.
    #[arg(long, default_value_t = 15000)]
    admin_port: u16,
    /// More ports that answer like the admin port, as Istio's pilot-agent (15020: a Job
    /// posts `/quitquitquit` there, Prometheus scrapes `/stats/prometheus`), health port
    /// (15021: `/healthz/ready`) and Envoy's stats port (15090: `/stats/prometheus`).
    /// `0`: none.
    #[arg(long, value_delimiter = ',', default_values_t = [15020, 15021, 15090])]
    agent_ports: Vec<u16>,
    /// How long a drain (SIGTERM, `POST /quitquitquit`) waits for open connections, in
    /// seconds.
    #[arg(long, default_value_t = 5.0)]
    drain_timeout: f64,
    /// Largest request head (request line and headers), in KiB, HTTP/1 and HTTP/2; a
    /// larger one is answered 431 (Envoy's `max_request_headers_kb`).
    #[arg(long, default_value_t = 60)]
    max_request_headers_kb: usize,
    /// Most headers in a request; more is answered 431 (Envoy's
    /// `max_request_headers_count`).
    #[arg(long, default_value_t = 100)]
    max_request_headers: usize,
    /// How long an HTTP/1 request head may take to arrive, in seconds (also how long a
    /// keep-alive connection may sit idle between requests); then the connection is
    /// closed. `0`: no limit.
    #[arg(long, default_value_t = 30.0)]
    request_head_timeout: f64,
    /// Most downstream connections open at once; more are closed as soon as they are
    /// accepted. Default: half the open-file limit, less a reserve.
    #[arg(long)]
    max_downstream_connections: Option<usize>,
    /// Requests an HTTP/2 client may abandon on one connection (plus one for every two
    /// that end normally) before the connection is closed with GOAWAY.
    #[arg(long, default_value_t = 100)]
    max_abandoned_requests: u32,
    /// How long a downstream HTTP connection may have no request in flight, in
    /// seconds, before it is closed (HTTP/2 with GOAWAY); Envoy's `idle_timeout`.
    /// `0`: no limit.
    #[arg(long, default_value_t = 3600.0)]
    idle_timeout: f64,
    /// How long an opaque TCP connection may carry no byte either way, in seconds,
    /// before it is closed; Envoy's TCP proxy `idle_timeout`. `0`: no limit.
    #[arg(long, default_value_t = 3600.0)]
    tcp_idle_timeout: f64,
    /// How long a request (an HTTP/2 stream, an HTTP/1 request in flight) may move no
    /// byte of its request or response, in seconds, before it is ended: 408 if the
    /// response has not begun, else the stream is reset; flagged `SI`. Envoy's
    /// `stream_idle_timeout`. Default: 300 on gateway listeners, none on the sidecar's
    /// (as Istio's generated config); given, it applies to every listener. `0`: no
    /// limit anywhere.
    #[arg(long)]
    stream_idle_timeout: Option<f64>,
    /// Resident memory, in MiB, above which new downstream connections are refused
    /// until it falls below 95% of it (sampled once a second). Default: none.
    #[arg(long)]
    max_memory_mb: Option<u64>,
    /// Discover services on demand: take from the control plane only the services
    /// this proxy calls, asking for one on the first request to it (which waits for
    /// its config, up to 5 s), instead of every service it may see. Its memory then
    /// follows what the app talks to, not the size of the mesh. Needs --control with
    /// mesh identity.
    #[arg(long)]
    on_demand: bool,
}

/// The proxy's limits from the flags; the connection cap from the open-file limit,
/// raised to its hard maximum first, as Envoy and ztunnel do.
fn limits(args: &Args) -> anyhow::Result<skiff_proxy::Limits> {
    if args.max_request_headers_kb == 0 || args.max_request_headers == 0 {
        bail!("--max-request-headers-kb and --max-request-headers must be at least 1");
    }
    let open_files = crate::cmd::raise_open_files_limit();
    let max_downstream_connections = match args.max_downstream_connections {
        Some(0) => bail!("--max-downstream-connections must be at least 1"),
        Some(n) => n,
        None => open_files.map_or(
            skiff_proxy::limits::DEFAULT_MAX_DOWNSTREAM_CONNECTIONS,
            skiff_proxy::limits::connections_for_open_files,
        ),
    };
    let head_timeout = args.request_head_timeout;
    let seconds = |s: f64| Duration::try_from_secs_f64(s).ok().filter(|d| !d.is_zero());
    Ok(skiff_proxy::Limits {
        idle_timeout: seconds(args.idle_timeout),
        tcp_idle_timeout: seconds(args.tcp_idle_timeout),
        stream_idle_timeout: match args.stream_idle_timeout {
            None => Some(skiff_proxy::DEFAULT_STREAM_IDLE_TIMEOUT),
            Some(s) => seconds(s),
        },
        stream_idle_on_sidecars: args.stream_idle_timeout.is_some(),
        max_memory_bytes: match args.max_memory_mb {
            Some(0) => bail!("--max-memory-mb must be at least 1"),
            mb => mb.map(|mb| mb.saturating_mul(1024 * 1024)),
        },
        max_request_headers_bytes: args.max_request_headers_kb.saturating_mul(1024),
        max_request_headers: args.max_request_headers,
        request_head_timeout: (head_timeout > 0.0).then(|| Duration::from_secs_f64(head_timeout)),
        max_downstream_connections,
        max_abandoned_requests: args.max_abandoned_requests,
        ..skiff_proxy::Limits::default()
    })
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Skiff,
    Istio,
    Json,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    crate::cmd::init_tracing();
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    // One worker: tokio's single-threaded scheduler, on this thread, without the
    // work-stealing machinery a pool needs.
    let data = if args.concurrency == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.concurrency).thread_name("skiff-data");
        b
    }
    .enable_all()
    .build()
    .context("starting the data-path runtime")?;
    let admin = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("skiff-admin")
        .enable_all()
        .build()
        .context("starting the admin runtime")?;
    let options = ProxyOptions {
        id: args.id.clone(),
        address: args.address,
        outbound_port: args.outbound_port,
        inbound_port: args.inbound_port,
        admin_port: args.admin_port,
        agent_ports: args
            .agent_ports
            .iter()
            .copied()
            .filter(|p| *p != 0)
            .collect(),
        gateway_port_offset: args.gateway_port_offset,
        access_log: match args.access_log {
            OnOff::On => AccessLogTarget::Stdout,
            OnOff::Off => AccessLogTarget::Off,
        },
        access_log_format: match args.access_log_format {
            LogFormat::Skiff => skiff_proxy::AccessLogFormat::Skiff,
            LogFormat::Istio => skiff_proxy::AccessLogFormat::Istio,
            LogFormat::Json => skiff_proxy::AccessLogFormat::IstioJson,
        },
        metrics: matches!(args.metrics, OnOff::On),
        drain_timeout: Duration::from_secs_f64(args.drain_timeout.max(0.0)),
        admin_runtime: Some(admin.handle().clone()),
        mesh_tls: None,
        credentials_dir: args.credentials_dir.clone(),
        limits: limits(&args)?,
    };
    let mesh = match &args.control {
        Some(control) if !args.insecure_xds => Some(mesh_identity(&args, control)?),
        _ => None,
    };
    // --config-file: an identity from files, or none.
    let file_tls = if args.config_file.is_some() {
        identity::from_files(
            args.cert_file.as_deref(),
            args.key_file.as_deref(),
            args.ca_root.as_deref(),
            &args.trust_domain,
        )?
    } else {
        None
    };
    if let Some(tls) = &file_tls
        && let Some(cert) = tls.current_cert()
    {
        tracing::info!(
            id = %cert.id(),
            serial = %cert.serial_hex(),
            not_after = %identity::rfc3339(cert.not_after()),
            "mesh identity from files"
        );
        eprintln!(
            "skiff proxy: mesh identity {} (certificate {}, valid until {})",
            cert.id(),
            cert.serial_hex(),
            identity::rfc3339(cert.not_after())
        );
    }
    let options = ProxyOptions {
        // Without a certificate until the first one arrives; the proxy takes no
        // config (and is not ready) before that.
        mesh_tls: mesh.as_ref().map(|m| m.tls.clone()).or(file_tls),
        ..options
    };
    let admin_handle = admin.handle().clone();
    let result = data.block_on(async move {
        let proxy = Proxy::start(options).await?;
        let mut xds = None;
        let mut renewal = None;
        match (&args.config_file, &args.control) {
            (Some(path), _) => {
                let version = skiff_proxy::file_source::apply(&proxy, path)
                    .with_context(|| format!("first config from {}", path.display()))?;
                tracing::info!(%version, file = %path.display(), "serving config from file");
                admin_handle.spawn(skiff_proxy::file_source::watch(
                    proxy.clone(),
                    path.clone(),
                    Duration::from_secs(1),
                ));
            }
            (None, Some(control)) => {
                if let Some(mesh) = &mesh {
                    // The certificate first: xDS is only served to proxies with one.
                    let first = tokio::select! {
                        cert = admin_handle.spawn(first_certificate(mesh.clone())) => cert.context("the certificate task")??,
                        () = wait_for_stop(&proxy) => return Ok(()),
                    };
                    tracing::info!(
                        id = %first.id(),
                        serial = %first.serial_hex(),
                        not_after = %identity::rfc3339(first.not_after()),
                        "got the workload certificate"
                    );
                    mesh.tls.rotate(first);
                    renewal = Some(admin_handle.spawn(identity::renew_forever(
                        mesh.control.clone(),
                        mesh.tls.clone(),
                        mesh.id.clone(),
                    )));
                }
                // The xDS client runs on the admin runtime, apart from the data path.
                let _admin = admin_handle.enter();
                xds = Some(match &mesh {
                    Some(mesh) => connect_xds_tls(&proxy, mesh, &args.id, args.on_demand)?,
                    None => {
                        tracing::warn!(%control, "--insecure-xds: taking config over plain text, with no mesh identity");
                        skiff_proxy::xds_source::connect(&proxy, control, &args.id)
                            .with_context(|| format!("--control {control}"))?
                    }
                });
                tracing::info!(%control, "taking config from the control plane");
            }
            (None, None) => bail!("one of --control or --config-file is needed"),
        }
        wait_for_stop(&proxy).await;
        drop(xds);
        if let Some(renewal) = renewal {
            renewal.abort();
        }
        proxy.drain().await;
        Ok(())
    });
    admin.shutdown_background();
    data.shutdown_background();
    result
}

/// What a proxy of the mesh needs to get and renew its identity.
#[derive(Clone)]
struct MeshIdentity {
    control: identity::ControlPlane,
    /// The identity asked for.
    id: SpiffeId,
    token: String,
    tls: MeshTls,
}

/// Reads `--ca-root` and the token and works out the identity to ask for.
fn mesh_identity(args: &Args, control: &str) -> anyhow::Result<MeshIdentity> {
    let Some(ca_root) = &args.ca_root else {
        bail!(
            "--control {control} needs --ca-root FILE: the mesh root that the control plane's certificate must chain to (the root-cert.pem in the CA directory of skiff control), or --insecure-xds for a plain-text control plane"
        );
    };
    let token = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --token-file {}", path.display()))?
            .trim()
            .to_owned(),
        None => std::env::var(TOKEN_ENV).map_err(|_| {
            anyhow::anyhow!(
                "--control {control} needs a bootstrap token for the first certificate: --token-file FILE or {TOKEN_ENV} (skiff up hands them out)"
            )
        })?,
    };
    let token_id = identity::token_identity(&token)?;
    let namespace = args
        .id
        .split_once('.')
        .map(|(_, ns)| ns)
        .with_context(|| format!("--id {}: expected <workload name>.<namespace>", args.id))?;
    let service_account = match &args.service_account {
        Some(sa) => sa.clone(),
        None if token_id.namespace() == namespace => token_id.service_account().to_owned(),
        None => "default".to_owned(),
    };
    let id = SpiffeId::new(&args.trust_domain, namespace, service_account)
        .with_context(|| format!("the identity of proxy {}", args.id))?;
    let bundle = identity::read_trust_bundle(ca_root, &args.trust_domain)?;
    let control_id = SpiffeId::control_plane(&args.trust_domain)?;
    Ok(MeshIdentity {
        control: identity::ControlPlane {
            address: control.to_owned(),
            id: control_id,
        },
        id,
        token,
        tls: MeshTls::without_cert(bundle)?,
    })
}

async fn first_certificate(mesh: MeshIdentity) -> anyhow::Result<skiff_identity::WorkloadCert> {
    Ok(identity::first_certificate(&mesh.control, &mesh.tls, &mesh.id, &mesh.token).await?)
}

/// xDS over TLS, the proxy's certificate as client certificate; configs go to
/// [`Proxy::apply`] as with the file source.
fn connect_xds_tls(
    proxy: &Proxy,
    mesh: &MeshIdentity,
    id: &str,
    on_demand: bool,
) -> anyhow::Result<skiff_xds::XdsClient> {
    identity::connect_xds(
        proxy,
        &mesh.control,
        &mesh.tls,
        id,
        ClientOptions {
            on_demand,
            ..ClientOptions::default()
        },
    )
    .with_context(|| format!("--control {}", mesh.control.address))
}

async fn wait_for_stop(proxy: &Proxy) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
        _ = proxy.shutdown_requested() => tracing::info!("quitquitquit"),
    }
}
