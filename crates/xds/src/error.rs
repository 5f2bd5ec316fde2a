//! The errors of this crate.

/// What can go wrong in the discovery protocol.
#[derive(Debug, thiserror::Error)]
pub enum XdsError {
    /// The control plane address could not be turned into a gRPC endpoint.
    #[error("invalid control plane address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// Why it was refused.
        reason: String,
    },
    /// The TCP connection or the HTTP/2 handshake to the control plane failed.
    #[error("cannot reach the control plane at {address}: {source}")]
    Connect {
        /// The address dialled.
        address: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The control plane ended or refused the stream.
    #[error("the control plane ended the stream ({code:?}): {message}", code = .0.code(), message = .0.message())]
    Stream(#[from] tonic::Status),
    /// A resource body did not decode as the type its type URL names.
    #[error("resource {name:?} is not a valid {type_url}: {source}")]
    Decode {
        /// The resource name.
        name: String,
        /// The type it was supposed to be.
        type_url: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The push server could not bind or serve.
    #[error("the discovery server failed: {0}")]
    Serve(#[source] tonic::transport::Error),
}

/// An error and its causes, `outer: cause: root cause`, each said once.
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
