//! The whole control plane on real sockets: push server, debug endpoint, watcher.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
    /// Quiet time after a file change before reloading.
    pub debounce: Duration,
}

impl ControlOptions {
    /// The defaults for a directory: xDS on 127.0.0.1:15010, debug on 127.0.0.1:15014,
    /// 100 ms debounce.
    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        ControlOptions {
            config_dir: config_dir.into(),
            xds_listen: SocketAddr::from(([127, 0, 0, 1], 15010)),
            debug_listen: SocketAddr::from(([127, 0, 0, 1], 15014)),
            debounce: crate::watch::DEFAULT_DEBOUNCE,
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
/// every change to the directory. An invalid configuration at start is reported (the
/// debug endpoint shows it and `/ready` stays 503) but does not stop the control
/// plane: fixing the files is enough.
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
    if !status.ok {
        tracing::error!(
            errors = status.errors.len(),
            "the configuration has errors; serving no proxy until they are fixed"
        );
    }

    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let server = XdsServer::new(plane.subscribe(), plane.sync().clone());
    let xds_stop = until(stopped.clone());
    tasks.spawn(async move { Ok(server.serve(xds_listener, xds_stop).await?) });
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
