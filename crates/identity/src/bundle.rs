//! The mesh trust bundle: the roots a peer's certificate must chain to.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use crate::cert::{cert_info, cert_to_pem, parse_pem_certs, rfc3339};
use crate::{IdentityError, SpiffeId};

/// The roots of the mesh, shared by everything that verifies a peer.
///
/// Cloning gives another handle to the same bundle: a root added through any handle
/// ([`add_root_pem`](Self::add_root_pem)) is trusted at once by every [`MeshTls`](crate::MeshTls)
/// verifier built on it, for the next handshake, with no new rustls config. That is
/// how a root rotates: add the new root, let workloads renew onto it, then
/// [`remove_root`](Self::remove_root) the old one.
#[derive(Clone)]
pub struct TrustBundle {
    trust_domain: Arc<str>,
    roots: Arc<ArcSwap<Roots>>,
}

struct Roots {
    certs: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
}

impl Roots {
    fn new(certs: Vec<CertificateDer<'static>>) -> Result<Self, IdentityError> {
        let anchors = certs
            .iter()
            .map(|cert| {
                webpki::anchor_from_trusted_cert(cert)
                    .map(|anchor| anchor.to_owned())
                    .map_err(|err| IdentityError::BadCertificate {
                        what: "a root of the trust bundle".into(),
                        reason: format!("cannot be a trust anchor: {err}"),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Roots { certs, anchors })
    }
}

impl std::fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustBundle")
            .field("trust_domain", &self.trust_domain)
            .field("roots", &self.roots.load().certs.len())
            .finish()
    }
}

impl TrustBundle {
    /// A bundle of `roots` for the identities of `trust_domain`.
    pub fn new(
        trust_domain: &str,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, IdentityError> {
        crate::spiffe::check_trust_domain(trust_domain).map_err(|reason| {
            IdentityError::InvalidSpiffeId {
                input: format!("spiffe://{trust_domain}"),
                reason,
            }
        })?;
        Ok(TrustBundle {
            trust_domain: trust_domain.into(),
            roots: Arc::new(ArcSwap::from_pointee(Roots::new(roots)?)),
        })
    }

    /// A bundle from PEM text holding one or more root certificates.
    pub fn from_pem(trust_domain: &str, pem: &str) -> Result<Self, IdentityError> {
        Self::new(trust_domain, parse_pem_certs(pem, "trust bundle")?)
    }

    /// The trust domain whose identities this bundle vouches for.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The roots, in the order they were added.
    pub fn roots(&self) -> Vec<CertificateDer<'static>> {
        self.roots.load().certs.clone()
    }

    /// The roots as one PEM text (what a proxy writes as its CA file).
    pub fn to_pem(&self) -> String {
        self.roots.load().certs.iter().map(cert_to_pem).collect()
    }

    /// Trusts every root in `pem` as well; returns how many were new. Takes effect for
    /// the next handshake of every verifier on this bundle.
    pub fn add_root_pem(&self, pem: &str) -> Result<usize, IdentityError> {
        let new = parse_pem_certs(pem, "root to add to the trust bundle")?;
        // Check them before swapping, so a bad one changes nothing.
        Roots::new(new.clone())?;
        let mut added = 0;
        self.roots.rcu(|current| {
            let mut certs = current.certs.clone();
            added = 0;
            for cert in &new {
                if !certs.contains(cert) {
                    certs.push(cert.clone());
                    added += 1;
                }
            }
            // Every cert was checked above, so this cannot fail; keep the old on error.
            Roots::new(certs)
                .map(Arc::new)
                .unwrap_or_else(|_| current.clone())
        });
        Ok(added)
    }

    /// Stops trusting `root` (the end of a root rotation); returns whether it was there.
    pub fn remove_root(&self, root: &CertificateDer<'_>) -> bool {
        let mut removed = false;
        self.roots.rcu(|current| {
            removed = current.certs.iter().any(|cert| cert == root);
            let certs = current
                .certs
                .iter()
                .filter(|cert| *cert != root)
                .cloned()
                .collect();
            Roots::new(certs)
                .map(Arc::new)
                .unwrap_or_else(|_| current.clone())
        });
        removed
    }

    /// Checks a peer's chain against the roots (signatures, validity at `now`, CA
    /// constraints, the extended key usage) and returns the peer's SPIFFE id, which
    /// must be of this bundle's trust domain.
    pub(crate) fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: KeyUsage,
    ) -> Result<SpiffeId, IdentityError> {
        let info = cert_info(end_entity).map_err(|reason| IdentityError::PeerCertificate {
            peer: "the peer".into(),
            reason,
        })?;
        let peer = info.describe();
        let roots = self.roots.load();
        let cert =
            EndEntityCert::try_from(end_entity).map_err(|err| IdentityError::PeerCertificate {
                peer: peer.clone(),
                reason: err.to_string(),
            })?;
        cert.verify_for_usage(
            crate::tls::crypto_provider()
                .signature_verification_algorithms
                .all,
            &roots.anchors,
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map_err(|err| webpki_error(err, peer, roots.anchors.len()))?;
        let id = info.id.map_err(IdentityError::NoSpiffeId)?;
        if id.trust_domain() != &*self.trust_domain {
            return Err(IdentityError::ForeignTrustDomain {
                peer: id,
                trust_domain: self.trust_domain.to_string(),
            });
        }
        Ok(id)
    }
}

fn webpki_error(err: webpki::Error, peer: String, roots: usize) -> IdentityError {
    let secs = |t: UnixTime| i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    match err {
        // A bad signature under a trusted name is a different root with the same name
        // (or an altered certificate): either way it does not chain to the bundle.
        webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
            IdentityError::UnknownRoot { peer, roots }
        }
        webpki::Error::CertExpired { time, not_after } => IdentityError::Expired {
            peer,
            not_after: rfc3339(secs(not_after)),
            now: rfc3339(secs(time)),
        },
        webpki::Error::CertNotValidYet { time, not_before } => IdentityError::NotYetValid {
            peer,
            not_before: rfc3339(secs(not_before)),
            now: rfc3339(secs(time)),
        },
        other => IdentityError::PeerCertificate {
            peer,
            reason: other.to_string(),
        },
    }
}
