//! The error type of this crate.

use std::path::PathBuf;

/// What can stop a load as a whole. Problems inside files are not errors of this
/// kind: they are [`crate::Diagnostic`]s, and loading goes on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A path given to the loader does not exist or cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A directory given to the loader holds no `.yaml` or `.yml` file.
    #[error("{} holds no .yaml or .yml files", path.display())]
    NoFiles {
        /// The directory.
        path: PathBuf,
    },
}
