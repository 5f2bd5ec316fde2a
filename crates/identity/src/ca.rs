//! The control plane's certificate authority.
//!
//! [`Ca::load_or_create`] keeps a self-signed root in a directory;
//! [`Ca::from_plugin_files`] takes an operator's intermediate in Istio's plug-in CA
//! files. Either way [`Ca::sign`] turns a workload's CSR into a short-lived leaf for
//! the identity the caller proved, and [`Ca::bundle`] is the mesh trust bundle.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};

use crate::workload::uri_san;
use crate::{CertChain, IdentityError, SpiffeId, TrustBundle, WorkloadCert, WorkloadKey};

mod files;

/// The lifetime of a workload certificate when the caller asks for none: 24 hours, as
/// Istio's.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest lifetime the CA signs (longer requests are cut to it): 90 days, as
/// Istio's `MAX_WORKLOAD_CERT_TTL`.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// How far in the past a leaf's notBefore is put, for clocks that are a little behind.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The mesh's certificate authority: a signing certificate and key, the chain from it
/// up to the root, and the trust bundle.
pub struct Ca {
    trust_domain: String,
    issuer: Issuer<'static, KeyPair>,
    /// The signing certificate's notAfter: no leaf outlives it.
    signing_not_after: SystemTime,
    /// The certificates a leaf's chain continues with: the signing certificate, any
    /// intermediates above it, the root last.
    chain_above_leaf: Vec<CertificateDer<'static>>,
    bundle: TrustBundle,
    default_ttl: Duration,
    max_ttl: Duration,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .field("chain_len", &self.chain_above_leaf.len())
            .field("default_ttl", &self.default_ttl)
            .finish()
    }
}

impl Ca {
    /// The CA of `dir`: its `root-cert.pem` and `root-key.pem` if they are there, else
    /// a new self-signed root (ECDSA P-256, ten years, CA:true, keyCertSign) written
    /// there, the key with mode 0600 and `dir` made if needed.
    pub fn load_or_create(
        dir: impl AsRef<Path>,
        trust_domain: &str,
    ) -> Result<Self, IdentityError> {
        files::load_or_create(dir.as_ref(), trust_domain)
    }

    /// The CA of an operator's plug-in files in `dir`, named as Istio names them:
    /// `ca-cert.pem` (the signing certificate, usually an intermediate), `ca-key.pem`
    /// (its key), `root-cert.pem` (the root, or several during a root rotation) and
    /// `cert-chain.pem` (from `ca-cert.pem` up to the root). Leaves are signed by
    /// `ca-cert.pem` and their chain carries `cert-chain.pem`.
    pub fn from_plugin_files(
        dir: impl AsRef<Path>,
        trust_domain: &str,
    ) -> Result<Self, IdentityError> {
        files::from_plugin_files(dir.as_ref(), trust_domain)
    }

    /// Sets the lifetime of a leaf when the caller asks for none (default [`DEFAULT_TTL`]).
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// Sets the longest lifetime signed (default [`DEFAULT_MAX_TTL`]).
    pub fn with_max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }

    /// The trust domain of the identities this CA signs.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The lifetime of a leaf when the caller asks for none.
    pub fn default_ttl(&self) -> Duration {
        self.default_ttl
    }

    /// Signs a workload's CSR (PEM or DER) for `authorized`, the identity the caller
    /// proved.
    ///
    /// The CSR's own signature must verify, and it may ask for no identity but
    /// `authorized` (its only allowed SAN is that URI; none at all is fine too). Only
    /// its public key is taken from it: the leaf has the URI SAN of `authorized` and
    /// nothing else, CA:false, digitalSignature + keyEncipherment, serverAuth +
    /// clientAuth, notBefore five minutes ago and notAfter `now + ttl` (`ttl` `None`
    /// meaning the default), never past the max TTL or the signing certificate.
    pub fn sign(
        &self,
        csr: &[u8],
        authorized: &SpiffeId,
        ttl: Option<Duration>,
    ) -> Result<CertChain, IdentityError> {
        let csr = parse_csr(csr)?;
        if authorized.trust_domain() != self.trust_domain {
            return Err(IdentityError::ForeignTrustDomain {
                peer: authorized.clone(),
                trust_domain: self.trust_domain.clone(),
            });
        }
        let wanted = authorized.to_string();
        for san in &csr.params.subject_alt_names {
            let requested = match san {
                SanType::URI(uri) if uri.as_str() == wanted => continue,
                SanType::URI(uri) => uri.as_str().to_string(),
                SanType::DnsName(name) => format!("DNS name {}", name.as_str()),
                SanType::IpAddress(ip) => format!("IP address {ip}"),
                SanType::Rfc822Name(mail) => format!("e-mail {}", mail.as_str()),
                _ => "an otherName SAN".to_string(),
            };
            return Err(IdentityError::IdentityMismatch {
                requested,
                caller: authorized.clone(),
            });
        }
        if matches!(csr.params.is_ca, IsCa::Ca(_)) {
            return Err(IdentityError::BadCsr(
                "it asks for a CA certificate; workloads get CA:false leaves".into(),
            ));
        }
        self.issue(&csr.public_key, vec![uri_san(authorized)?], ttl)
    }

    /// A serving certificate for the control plane itself, for its gRPC (xDS and CA)
    /// port: SANs `dns_names`, `ips` and the control plane's SPIFFE id
    /// ([`SpiffeId::control_plane`]), with a fresh key made here.
    pub fn issue_server_cert(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        ttl: Option<Duration>,
    ) -> Result<WorkloadCert, IdentityError> {
        let key = WorkloadKey::generate()?;
        let mut sans = vec![uri_san(&SpiffeId::control_plane(&self.trust_domain)?)?];
        for name in dns_names {
            let name = name
                .clone()
                .try_into()
                .map_err(|source| IdentityError::Generate {
                    what: "put a DNS name in the serving certificate",
                    source,
                })?;
            sans.push(SanType::DnsName(name));
        }
        sans.extend(ips.iter().copied().map(SanType::IpAddress));
        let chain = self.issue(key.key_pair(), sans, ttl)?;
        WorkloadCert::new(chain, key)
    }

    /// The roots the mesh trusts (DER).
    pub fn trust_bundle(&self) -> Vec<CertificateDer<'static>> {
        self.bundle.roots()
    }

    /// The roots the mesh trusts, as one PEM text.
    pub fn trust_bundle_pem(&self) -> String {
        self.bundle.to_pem()
    }

    /// Trusts the roots in `pem` too, e.g. the next root during a root rotation;
    /// returns how many were new.
    pub fn add_trusted_root(&self, pem: &str) -> Result<usize, IdentityError> {
        self.bundle.add_root_pem(pem)
    }

    /// The live trust bundle: hand it to [`MeshTls`](crate::MeshTls) so that roots
    /// added here are trusted by its verifiers at once.
    pub fn bundle(&self) -> TrustBundle {
        self.bundle.clone()
    }

    fn issue(
        &self,
        public_key: &impl PublicKeyData,
        sans: Vec<SanType>,
        ttl: Option<Duration>,
    ) -> Result<CertChain, IdentityError> {
        let now = SystemTime::now();
        let ttl = ttl.unwrap_or(self.default_ttl).min(self.max_ttl);
        let not_after = (now + ttl).min(self.signing_not_after);
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = not_after.into();
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let leaf = params
            .signed_by(public_key, &self.issuer)
            .map_err(|source| IdentityError::Generate {
                what: "sign the workload certificate",
                source,
            })?;
        let mut certs = Vec::with_capacity(1 + self.chain_above_leaf.len());
        certs.push(leaf.der().clone());
        certs.extend(self.chain_above_leaf.iter().cloned());
        CertChain::new(certs)
    }
}

/// 128 random bits, positive.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn parse_csr(csr: &[u8]) -> Result<CertificateSigningRequestParams, IdentityError> {
    let text = std::str::from_utf8(csr).ok().map(str::trim_start);
    let parsed = match text {
        Some(pem) if pem.starts_with("-----BEGIN") => {
            CertificateSigningRequestParams::from_pem(pem)
        }
        _ => CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr)),
    };
    parsed.map_err(|err| {
        IdentityError::BadCsr(match err {
            rcgen::Error::CouldNotParseCertificationRequest => {
                "not a PKCS#10 certificate request (PEM `CERTIFICATE REQUEST` or DER)".into()
            }
            rcgen::Error::InvalidCertificationRequestSignature => {
                "its signature does not verify with the public key it carries (altered, or not signed by that key)".into()
            }
            rcgen::Error::UnsupportedExtension => {
                "it asks for an extension the CA does not sign (only SAN, key usage, extended key usage and basic constraints)".into()
            }
            other => other.to_string(),
        })
    })
}
