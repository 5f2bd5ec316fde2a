//! The workload side: a private key, its CSR, and the certificate the CA returns.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::cert::cert_info;
use crate::{CertChain, IdentityError, SpiffeId};

/// A workload's private key (ECDSA P-256), made in the process and never written out.
///
/// Cloning shares the same key. A new key is made for each renewal, as Istio does.
#[derive(Clone)]
pub struct WorkloadKey {
    key: Arc<KeyPair>,
}

impl std::fmt::Debug for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkloadKey(ECDSA P-256)")
    }
}

impl WorkloadKey {
    /// A fresh ECDSA P-256 key.
    pub fn generate() -> Result<Self, IdentityError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| {
            IdentityError::Generate {
                what: "generate an ECDSA P-256 key",
                source,
            }
        })?;
        Ok(WorkloadKey { key: Arc::new(key) })
    }

    /// An ECDSA P-256 key from a PKCS#8 PEM text (`-----BEGIN PRIVATE KEY-----`, as
    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes it).
    /// For identities issued outside the control plane (`skiff proxy --key-file`).
    /// `what` names where the key came from, for the error. Other key types, SEC1
    /// (`BEGIN EC PRIVATE KEY`) and encrypted keys are refused.
    pub fn from_pkcs8_pem(pem: &str, what: &str) -> Result<Self, IdentityError> {
        use rustls_pki_types::pem::PemObject as _;
        let bad = |reason: String| IdentityError::BadCertificate {
            what: what.to_string(),
            reason,
        };
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|err| {
            bad(format!(
                "no PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`) in it: {err}"
            ))
        })?;
        let key = KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_ECDSA_P256_SHA256)
            .map_err(|err| bad(format!("not an ECDSA P-256 key: {err}")))?;
        Ok(WorkloadKey { key: Arc::new(key) })
    }

    /// A PEM certificate signing request for `id`: its only SAN is the URI of `id`.
    pub fn csr_pem(&self, id: &SpiffeId) -> Result<String, IdentityError> {
        self.csr(id)?
            .pem()
            .map_err(|source| IdentityError::Generate {
                what: "encode the CSR as PEM",
                source,
            })
    }

    /// The same CSR as [`csr_pem`](Self::csr_pem), DER encoded.
    pub fn csr_der(&self, id: &SpiffeId) -> Result<Vec<u8>, IdentityError> {
        Ok(self.csr(id)?.der().to_vec())
    }

    fn csr(&self, id: &SpiffeId) -> Result<rcgen::CertificateSigningRequest, IdentityError> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![uri_san(id)?];
        params
            .serialize_request(&*self.key)
            .map_err(|source| IdentityError::Generate {
                what: "make the CSR",
                source,
            })
    }

    /// The subjectPublicKey bits, to compare with a certificate's.
    pub(crate) fn public_key_raw(&self) -> &[u8] {
        self.key.public_key_raw()
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.key
    }

    fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }
}

pub(crate) fn uri_san(id: &SpiffeId) -> Result<SanType, IdentityError> {
    let uri = id
        .to_string()
        .try_into()
        .map_err(|source| IdentityError::Generate {
            what: "put the SPIFFE id in a URI SAN",
            source,
        })?;
    Ok(SanType::URI(uri))
}

/// A workload's certificate: its chain (leaf first), its key, its identity and
/// validity, read from the leaf itself.
#[derive(Clone)]
pub struct WorkloadCert {
    chain: CertChain,
    key: WorkloadKey,
    id: SpiffeId,
    not_before: SystemTime,
    not_after: SystemTime,
    certified: Arc<CertifiedKey>,
}

impl std::fmt::Debug for WorkloadCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadCert")
            .field("id", &self.id.to_string())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("chain_len", &self.chain.certs().len())
            .finish()
    }
}

impl WorkloadCert {
    /// Puts a chain from the CA together with the key it was issued for. Fails if the
    /// leaf is not for this key, or has no SPIFFE id.
    pub fn new(chain: CertChain, key: WorkloadKey) -> Result<Self, IdentityError> {
        let what = "the workload certificate";
        let info = cert_info(chain.leaf()).map_err(|reason| IdentityError::BadCertificate {
            what: what.into(),
            reason,
        })?;
        if info.public_key != key.public_key_raw() {
            return Err(IdentityError::BadCertificate {
                what: what.into(),
                reason: "it was issued for another key than this workload's".into(),
            });
        }
        let id = info.id.map_err(|reason| IdentityError::BadCertificate {
            what: what.into(),
            reason: format!("no SPIFFE id: {reason}"),
        })?;
        let certified = CertifiedKey::from_der(
            chain.certs().to_vec(),
            key.private_key_der(),
            &crate::tls::crypto_provider(),
        )?;
        Ok(WorkloadCert {
            chain,
            key,
            id,
            not_before: info.not_before,
            not_after: info.not_after,
            certified: Arc::new(certified),
        })
    }

    /// The identity of the leaf's URI SAN.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &CertChain {
        &self.chain
    }

    /// The key the leaf was issued for.
    pub fn key(&self) -> &WorkloadKey {
        &self.key
    }

    /// The leaf's notBefore.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// The leaf's notAfter.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The leaf's serial number in hex (lower case, no separators), as Envoy's
    /// `/certs` shows it.
    pub fn serial_hex(&self) -> String {
        x509_parser::parse_x509_certificate(self.chain.leaf())
            .map(|(_, leaf)| {
                leaf.raw_serial()
                    .iter()
                    .map(|byte| format!("{byte:02x}"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// When to renew: half-way through the leaf's lifetime (as Istio does), moved by a
    /// random amount of up to `jitter` of the lifetime either way (`jitter` is clamped
    /// to 0..=0.4, so renewal always falls between 10% and 90% of the lifetime).
    /// Jitter keeps proxies started together from renewing together.
    pub fn refresh_at(&self, jitter: f64) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 0.4)
        } else {
            0.0
        };
        let fraction = 0.5 + jitter * (2.0 * rand::random::<f64>() - 1.0);
        self.not_before + lifetime.mul_f64(fraction)
    }

    pub(crate) fn certified_key(&self) -> Arc<CertifiedKey> {
        self.certified.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pkcs8_pem_key_loads_as_the_same_key() {
        let key = WorkloadKey::generate().unwrap();
        let pem = key.key_pair().serialize_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        let loaded = WorkloadKey::from_pkcs8_pem(&pem, "key.pem").unwrap();
        assert_eq!(loaded.public_key_raw(), key.public_key_raw());
    }

    #[test]
    fn other_keys_and_texts_are_refused_with_the_file_named() {
        let ed25519 = KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .unwrap()
            .serialize_pem();
        let err = WorkloadKey::from_pkcs8_pem(&ed25519, "ed.pem").unwrap_err();
        assert!(err.to_string().contains("ed.pem"), "{err}");
        assert!(err.to_string().contains("P-256"), "{err}");
        let err = WorkloadKey::from_pkcs8_pem("not a key", "junk.pem").unwrap_err();
        assert!(err.to_string().contains("junk.pem"), "{err}");
        let cert_only = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(WorkloadKey::from_pkcs8_pem(cert_only, "cert.pem").is_err());
    }
}
