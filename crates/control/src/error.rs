//! The errors of the control plane.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What can stop the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A listening socket could not be opened.
    #[error("cannot listen for {what} on {address}: {source}")]
    Bind {
        /// Which listener (`xDS`, `debug HTTP`).
        what: &'static str,
        /// The address asked for.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration directory cannot be watched (missing, or not readable).
    #[error("cannot watch the config directory {}: {source}", dir.display())]
    Watch {
        /// The directory.
        dir: PathBuf,
        /// The watcher's error.
        #[source]
        source: notify::Error,
    },
    /// The configuration directory does not exist or is not a directory.
    #[error("config directory {} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// A reload or a server task died unexpectedly (a panic).
    #[error("a control plane task failed: {0}")]
    Reload(String),
    /// The CA cannot make the control plane's serving certificate.
    #[error("the control plane's CA: {0}")]
    Identity(#[from] skiff_identity::IdentityError),
    /// The push server failed.
    #[error(transparent)]
    Xds(#[from] skiff_xds::XdsError),
}
