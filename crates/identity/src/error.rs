//! The one error type of the crate.

use std::path::PathBuf;

use crate::SpiffeId;

/// Everything that can go wrong with identities, certificates and mesh TLS.
///
/// Messages name the identity, file or value at fault so that an operator can act
/// on them. A TLS verifier reports these inside the rustls error of the handshake, so
/// the text of a refused handshake reads e.g. `invalid peer certificate: peer is
/// spiffe://cluster.local/ns/prod/sa/x but spiffe://cluster.local/ns/prod/sa/y was
/// expected`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A string is not a SPIFFE id skiff can use.
    #[error(
        "`{input}` is not a workload SPIFFE id (spiffe://<trust domain>/ns/<namespace>/sa/<service account>): {reason}"
    )]
    InvalidSpiffeId {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A file or directory of the CA cannot be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "create directory", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// A certificate, key or PEM text cannot be used.
    #[error("{what}: {reason}")]
    BadCertificate {
        /// Which certificate or file ("ca-cert.pem in /etc/cacerts", "the CA's answer", ...).
        what: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Making or signing a certificate failed inside rcgen.
    #[error("cannot {what}: {source}")]
    Generate {
        /// What was being made.
        what: &'static str,
        /// rcgen's error.
        source: rcgen::Error,
    },

    /// A certificate signing request cannot be parsed or does not verify.
    #[error("bad CSR: {0}")]
    BadCsr(String),

    /// A CSR asks for an identity other than the one the caller proved.
    #[error("CSR asks for {requested} but the caller is {caller}")]
    IdentityMismatch {
        /// The identity (a URI, or a DNS name, IP or e-mail SAN) the CSR asks for.
        requested: String,
        /// The identity the caller proved.
        caller: SpiffeId,
    },

    /// The peer's certificate does not chain to any root of the trust bundle.
    #[error(
        "certificate of {peer} is from an unknown root: it does not chain to any of the {roots} root(s) of the mesh trust bundle"
    )]
    UnknownRoot {
        /// The SPIFFE id the certificate claims, or a description if it has none.
        peer: String,
        /// How many roots the bundle held.
        roots: usize,
    },

    /// The peer's certificate (or one above it) is past its notAfter.
    #[error("certificate of {peer} expired at {not_after} (it is now {now})")]
    Expired {
        /// The SPIFFE id the certificate claims, or a description if it has none.
        peer: String,
        /// Its notAfter, RFC 3339.
        not_after: String,
        /// The time of the check, RFC 3339.
        now: String,
    },

    /// The peer's certificate is not valid yet (a clock is off).
    #[error(
        "certificate of {peer} is not valid before {not_before} (it is now {now}): check the clocks"
    )]
    NotYetValid {
        /// The SPIFFE id the certificate claims, or a description if it has none.
        peer: String,
        /// Its notBefore, RFC 3339.
        not_before: String,
        /// The time of the check, RFC 3339.
        now: String,
    },

    /// The peer has a valid certificate, but for another identity.
    #[error("peer is {peer} but {expected} was expected")]
    WrongPeer {
        /// Who the peer is.
        peer: SpiffeId,
        /// Who was expected (one id, or several separated by " or ").
        expected: String,
    },

    /// The peer's certificate has no SPIFFE id.
    #[error("no SPIFFE id in the peer certificate: {0}")]
    NoSpiffeId(String),

    /// The peer's SPIFFE id is of a trust domain the mesh does not trust.
    #[error("peer is {peer}, outside the mesh trust domain {trust_domain}")]
    ForeignTrustDomain {
        /// Who the peer is.
        peer: SpiffeId,
        /// The trust domain of the mesh.
        trust_domain: String,
    },

    /// The peer's certificate is refused for another reason (from webpki).
    #[error("certificate of {peer} refused: {reason}")]
    PeerCertificate {
        /// The SPIFFE id the certificate claims, or a description if it has none.
        peer: String,
        /// Why.
        reason: String,
    },

    /// A rustls config cannot be built.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),

    /// The caller of the CA showed no credential of a kind the authenticator takes.
    #[error("no credential: {0}")]
    NoCredential(String),

    /// The caller of the CA showed a credential that is not valid.
    #[error("credential refused: {0}")]
    Unauthenticated(String),

    /// A bootstrap-token secret cannot be used.
    #[error("bootstrap token secret: {0}")]
    BadSecret(String),

    /// The CA service refused a request or could not be reached.
    #[error("the CA answered {code:?}: {message}")]
    CaRefused {
        /// The gRPC status code.
        code: tonic::Code,
        /// The CA's message.
        message: String,
    },

    /// A gRPC channel to the control plane cannot be made.
    #[error("cannot connect to the control plane: {0}")]
    Connect(#[from] tonic::transport::Error),
}

impl From<IdentityError> for tonic::Status {
    /// The gRPC status the CA service answers with: PERMISSION_DENIED for a CSR for
    /// another identity, UNAUTHENTICATED for a missing or bad credential,
    /// INVALID_ARGUMENT for a bad CSR, INTERNAL otherwise.
    fn from(err: IdentityError) -> Self {
        let message = err.to_string();
        match err {
            IdentityError::IdentityMismatch { .. } => tonic::Status::permission_denied(message),
            IdentityError::NoCredential(_)
            | IdentityError::Unauthenticated(_)
            | IdentityError::UnknownRoot { .. }
            | IdentityError::Expired { .. }
            | IdentityError::NoSpiffeId(_)
            | IdentityError::ForeignTrustDomain { .. } => tonic::Status::unauthenticated(message),
            IdentityError::BadCsr(_) | IdentityError::InvalidSpiffeId { .. } => {
                tonic::Status::invalid_argument(message)
            }
            _ => tonic::Status::internal(message),
        }
    }
}

impl From<IdentityError> for rustls::Error {
    /// Carries the error into the handshake (`invalid peer certificate: ...`); the
    /// peer gets a bad_certificate alert. [`IdentityError::from_handshake`] gets it
    /// back out of the handshake's error.
    fn from(err: IdentityError) -> Self {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            std::sync::Arc::new(Rejected(err)),
        )))
    }
}

impl IdentityError {
    /// Why this side refused a TLS handshake, if its verifier did: the error of a
    /// tokio-rustls `accept` or `connect`. For logs that read "peer is ... but ... was
    /// expected" rather than rustls's wrapping of it.
    pub fn from_handshake(err: &std::io::Error) -> Option<&IdentityError> {
        let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) =
            err.get_ref()?.downcast_ref::<rustls::Error>()?
        else {
            return None;
        };
        other
            .0
            .downcast_ref::<Rejected>()
            .map(|rejected| &rejected.0)
    }
}

/// An [`IdentityError`] inside a rustls error. rustls prints the `Debug` of what it
/// carries, so `Debug` here is the message.
struct Rejected(IdentityError);

impl std::fmt::Debug for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Rejected {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
