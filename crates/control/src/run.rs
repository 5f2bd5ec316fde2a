//! The whole control plane on real sockets: push server and CA on one gRPC port (TLS),
//! debug endpoint, watcher.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use skiff_identity::service::{CaService, PeerCertificate};
use skiff_identity::transport::PeerInfo;
use skiff_identity::{BootstrapTokens, Ca, MeshTls, WorkloadCert};
use skiff_xds::XdsServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::{ConfigCompiler, ControlError, ControlPlane, debug};

/// Where the control plane reads and listens.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// The configuration directory (read recursively, watched).
    pub config_dir: PathBuf,
    /// The xDS (gRPC) listener; Istio's plaintext xDS port is 15010.
    pub xds_listen: SocketAddr,
    /// The debug HTTP listener; Istio serves its debug endpoints on 15014.
    pub debug_listen: SocketAddr,
    /// When a burst of file changes becomes a reload.
    pub debounce: crate::watch::Debounce,
    /// How many proxies are pushed to at once (istiod's `PILOT_PUSH_THROTTLE`, 100);
    /// pushes that change only endpoints go first.
    pub push_limit: usize,
    /// The mesh CA, served beside xDS on the gRPC port, over TLS. `None`: no CA, and
    /// xDS in plain text to anyone who connects; for tests of the push protocol and
    /// `skiff control --insecure-xds` only.
    pub identity: Option<ControlIdentity>,
}

/// The control plane's certificate authority and who may get certificates from it.
#[derive(Debug, Clone)]
pub struct ControlIdentity {
    /// Signs workload certificates, and the control plane's own serving certificate
    /// (for [`SpiffeId::control_plane`](skiff_identity::SpiffeId::control_plane)).
    pub ca: Arc<Ca>,
    /// Checks the bootstrap tokens of proxies that have no certificate yet (local
    /// mode: `skiff up` shares the secret). `None`: only renewals, by callers showing
    /// their current mesh certificate, are signed.
    pub tokens: Option<BootstrapTokens>,
}

impl ControlOptions {
    /// The defaults for a directory: xDS on 127.0.0.1:15010, debug on 127.0.0.1:15014,
    /// Istio's debounce (100 ms quiet, 10 s at most) and push limit (100 at once).
    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        ControlOptions {
            config_dir: config_dir.into(),
            xds_listen: SocketAddr::from(([127, 0, 0, 1], 15010)),
            debug_listen: SocketAddr::from(([127, 0, 0, 1], 15014)),
            debounce: crate::watch::Debounce::DEFAULT,
            push_limit: skiff_xds::server::DEFAULT_PUSH_LIMIT,
            identity: None,
        }
    }
}

/// A running control plane. Dropping it without [`Running::shutdown`] leaves its tasks
/// running until the runtime ends.
#[derive(Debug)]
pub struct Running {
    /// The bound xDS address (useful when the options asked for port 0).
    pub xds_addr: SocketAddr,
    /// The bound debug HTTP address.
    pub debug_addr: SocketAddr,
    /// The control plane's state.
    pub plane: Arc<ControlPlane>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<Result<(), ControlError>>,
}

/// Loads the configuration once, then serves: xDS, the debug endpoint, and reloads on
/// every change to the directory. Errors at start are reported (the debug endpoint
/// shows them) but do not stop the control plane: with the real compiler, the
/// resources without errors are served; when nothing can be compiled at all, `/ready`
/// stays 503 until the files are fixed.
pub async fn start(
    options: ControlOptions,
    compiler: impl ConfigCompiler,
) -> Result<Running, ControlError> {
    if !options.config_dir.is_dir() {
        return Err(ControlError::NotADirectory(options.config_dir));
    }
    let plane = Arc::new(ControlPlane::new(&options.config_dir, compiler));
    let xds_listener = bind("xDS", options.xds_listen).await?;
    let debug_listener = bind("debug HTTP", options.debug_listen).await?;
    let xds_addr = local_addr("xDS", &xds_listener, options.xds_listen)?;
    let debug_addr = local_addr("debug HTTP", &debug_listener, options.debug_listen)?;

    // Watch first, then load: a change made during the first load is not missed.
    let watching = crate::watch::watch(plane.clone(), options.debounce)?;
    let first = plane.clone();
    let status = tokio::task::spawn_blocking(move || first.reload())
        .await
        .map_err(|e| ControlError::Reload(e.to_string()))?;
    if status.serving_generation == 0 {
        tracing::error!(
            errors = status.errors.len(),
            "the configuration cannot be used; serving no proxy until it is fixed"
        );
    }

    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let server = XdsServer::new(plane.subscribe(), plane.sync().clone())
        .with_push_limit(options.push_limit, skiff_xds::server::DEFAULT_PUSH_HOLD);
    let xds_stop = until(stopped.clone());
    match &options.identity {
        Some(identity) => {
            let tls = serving_tls(identity, xds_addr)?;
            tasks.spawn(rotate_serving_cert(
                identity.ca.clone(),
                tls.clone(),
                xds_addr,
                until(stopped.clone()),
            ));
            tasks.spawn(serve_grpc_tls(
                server,
                identity.clone(),
                tls,
                xds_listener,
                xds_stop,
            ));
        }
        None => {
            tracing::warn!(
                %xds_addr,
                "xDS is served in PLAIN TEXT with no CA: any process that reaches this port gets every proxy's configuration"
            );
            tasks.spawn(async move { Ok(server.serve(xds_listener, xds_stop).await?) });
        }
    }
    let debug_plane = plane.clone();
    let debug_stop = until(stopped.clone());
    tasks.spawn(async move {
        debug::serve(debug_listener, debug_plane, debug_stop).await;
        Ok(())
    });
    let watch_stop = until(stopped);
    tasks.spawn(async move {
        tokio::select! {
            () = watching => {}
            () = watch_stop => {}
        }
        Ok(())
    });
    tracing::info!(%xds_addr, %debug_addr, dir = %options.config_dir.display(), "control plane started");
    Ok(Running {
        xds_addr,
        debug_addr,
        plane,
        stop,
        tasks,
    })
}

impl Running {
    /// Stops serving: streams end (proxies keep their config and reconnect
    /// elsewhere or later), listeners close. Returns the first error a task had.
    pub async fn shutdown(mut self) -> Result<(), ControlError> {
        self.stop.send_replace(true);
        let mut result = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
                Err(e) if e.is_cancelled() => {}
                Err(e) => {
                    if result.is_ok() {
                        result = Err(ControlError::Reload(e.to_string()));
                    }
                }
            }
        }
        result
    }

    /// Waits until a task fails (a server stops on its own), returning its error.
    pub async fn failed(&mut self) -> ControlError {
        loop {
            match self.tasks.join_next().await {
                Some(Ok(Err(e))) => return e,
                Some(Ok(Ok(()))) => {}
                Some(Err(e)) => return ControlError::Reload(e.to_string()),
                None => std::future::pending::<()>().await,
            }
        }
    }
}

/// How long the control plane's own serving certificate lives; it is renewed at
/// half-life.
const SERVING_CERT_TTL: Duration = Duration::from_secs(24 * 3600);

/// The names of the serving certificate: `localhost`, `skiff-control`, the loopback
/// addresses and the listen address. Proxies check its SPIFFE id, not these; they are
/// for other gRPC tools.
fn serving_names(listen: SocketAddr) -> (Vec<String>, Vec<IpAddr>) {
    let mut ips = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    if !listen.ip().is_unspecified() && !ips.contains(&listen.ip()) {
        ips.push(listen.ip());
    }
    (vec!["localhost".into(), "skiff-control".into()], ips)
}

fn serving_cert(ca: &Ca, listen: SocketAddr) -> Result<WorkloadCert, ControlError> {
    let (names, ips) = serving_names(listen);
    Ok(ca.issue_server_cert(&names, &ips, Some(SERVING_CERT_TTL))?)
}

fn serving_tls(identity: &ControlIdentity, listen: SocketAddr) -> Result<MeshTls, ControlError> {
    let cert = serving_cert(&identity.ca, listen)?;
    Ok(MeshTls::new(cert, identity.ca.bundle())?)
}

/// Renews the serving certificate at half its life, until `stop`.
async fn rotate_serving_cert(
    ca: Arc<Ca>,
    tls: MeshTls,
    listen: SocketAddr,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ControlError> {
    tokio::pin!(stop);
    loop {
        let wait = tls
            .current_cert()
            .map(|cert| {
                let left = cert
                    .not_after()
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                left / 2
            })
            .unwrap_or_default()
            .max(Duration::from_secs(1));
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
        match serving_cert(&ca, listen) {
            Ok(cert) => {
                tracing::info!(not_after = ?cert.not_after(), "renewed the control plane's serving certificate");
                tls.rotate(cert);
            }
            Err(error) => {
                tracing::error!(%error, "cannot renew the control plane's serving certificate; retrying in 10s");
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        }
    }
}

/// xDS and the CA on one TLS port. xDS takes only callers with a mesh certificate;
/// the CA takes a mesh certificate (renewal) or a bootstrap token.
async fn serve_grpc_tls(
    server: XdsServer,
    identity: ControlIdentity,
    tls: MeshTls,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ControlError> {
    let addr = listener.local_addr().ok();
    let incoming = skiff_identity::transport::tls_incoming(listener, tls.grpc_server_config());
    let xds = tonic::service::interceptor::InterceptedService::new(
        server.clone().into_service(),
        require_mesh_certificate,
    );
    let router = XdsServer::server_builder().add_service(xds);
    let router = match identity.tokens {
        Some(tokens) => router.add_service(
            CaService::new(identity.ca.clone(), (PeerCertificate, tokens)).into_server(),
        ),
        None => {
            router.add_service(CaService::new(identity.ca.clone(), PeerCertificate).into_server())
        }
    };
    tracing::info!(address = ?addr, trust_domain = identity.ca.trust_domain(), "xDS and CA listening (TLS)");
    router
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            tracing::info!("gRPC server shutting down");
            server.stop_streams();
        })
        .await
        .map_err(|e| ControlError::Xds(skiff_xds::XdsError::Serve(e)))
}

/// xDS is for proxies of the mesh: the caller must have shown a mesh certificate.
/// Also hands the caller's address to the xDS server, which logs and records it.
fn require_mesh_certificate(
    mut request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    let Some(peer) = request.extensions().get::<PeerInfo>().cloned() else {
        return Err(tonic::Status::unauthenticated(
            "xDS is served over TLS only",
        ));
    };
    let Some(identity) = &peer.identity else {
        return Err(tonic::Status::unauthenticated(
            "xDS needs a mesh certificate as TLS client certificate: get one from the CA on this port first (skiff proxy does, with its bootstrap token)",
        ));
    };
    let caller = skiff_xds::server::CallerIdentity(identity.to_string());
    request.extensions_mut().insert(caller);
    request
        .extensions_mut()
        .insert(tonic::transport::server::TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(peer.remote_addr),
        });
    Ok(request)
}

async fn until(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn bind(what: &'static str, address: SocketAddr) -> Result<TcpListener, ControlError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ControlError::Bind {
            what,
            address,
            source,
        })
}

fn local_addr(
    what: &'static str,
    listener: &TcpListener,
    address: SocketAddr,
) -> Result<SocketAddr, ControlError> {
    listener.local_addr().map_err(|source| ControlError::Bind {
        what,
        address,
        source,
    })
}
