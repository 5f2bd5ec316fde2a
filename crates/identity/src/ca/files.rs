//! The CA's files: a self-signed root kept in a directory, or Istio's plug-in CA files.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::{Ca, DEFAULT_MAX_TTL, DEFAULT_TTL, random_serial};
use crate::cert::{cert_info, cert_to_pem, parse_pem_certs};
use crate::{IdentityError, SpiffeId, TrustBundle, WorkloadKey};

const ROOT_CERT: &str = "root-cert.pem";
const ROOT_KEY: &str = "root-key.pem";
const CA_CERT: &str = "ca-cert.pem";
const CA_KEY: &str = "ca-key.pem";
const CERT_CHAIN: &str = "cert-chain.pem";
/// Lifetime of a self-signed root: ten years, as Istio's self-signed CA.
const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

pub(super) fn load_or_create(dir: &Path, trust_domain: &str) -> Result<Ca, IdentityError> {
    // Check the trust domain before touching the disk.
    SpiffeId::control_plane(trust_domain)?;
    let cert_path = dir.join(ROOT_CERT);
    let key_path = dir.join(ROOT_KEY);
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {}
        (false, false) => create_root(dir, &cert_path, &key_path, trust_domain)?,
        (cert, _) => {
            let (present, missing) = if cert {
                (&cert_path, &key_path)
            } else {
                (&key_path, &cert_path)
            };
            return Err(IdentityError::BadCertificate {
                what: format!("the CA directory {}", dir.display()),
                reason: format!(
                    "{} is there but {} is not; restore it, or remove both to make a new root (every workload certificate must then be renewed)",
                    present.display(),
                    missing.display()
                ),
            });
        }
    }
    let root_pem = read(&cert_path)?;
    let key = load_key(&key_path)?;
    let root = single_cert(&root_pem, &cert_path)?;
    build(
        trust_domain,
        key,
        &key_path,
        root.clone(),
        vec![root.clone()],
        vec![root],
    )
}

pub(super) fn from_plugin_files(dir: &Path, trust_domain: &str) -> Result<Ca, IdentityError> {
    SpiffeId::control_plane(trust_domain)?;
    let ca_cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    let root_path = dir.join(ROOT_CERT);
    let chain_path = dir.join(CERT_CHAIN);
    let ca_cert = single_cert(&read(&ca_cert_path)?, &ca_cert_path)?;
    let key = load_key(&key_path)?;
    let roots = parse_pem_certs(&read(&root_path)?, &root_path.display().to_string())?;
    // An empty cert-chain.pem is allowed when ca-cert.pem is signed by the root itself.
    let chain_pem = read(&chain_path)?;
    let mut chain = if chain_pem.trim().is_empty() {
        vec![ca_cert.clone()]
    } else {
        parse_pem_certs(&chain_pem, &chain_path.display().to_string())?
    };
    if chain[0] != ca_cert {
        return Err(IdentityError::BadCertificate {
            what: chain_path.display().to_string(),
            reason: format!(
                "it must start with {CA_CERT} (the chain goes from the signing certificate up to the root)"
            ),
        });
    }
    // Istio's cert-chain.pem may stop below the root; the chain handed out ends with it.
    let last = &chain[chain.len() - 1];
    if !roots.contains(last) {
        chain.push(roots[0].clone());
    }
    build(trust_domain, key, &key_path, ca_cert, chain, roots)
}

fn build(
    trust_domain: &str,
    key: KeyPair,
    key_path: &Path,
    signing_cert: CertificateDer<'static>,
    chain_above_leaf: Vec<CertificateDer<'static>>,
    roots: Vec<CertificateDer<'static>>,
) -> Result<Ca, IdentityError> {
    let signing_info =
        cert_info(&signing_cert).map_err(|reason| IdentityError::BadCertificate {
            what: "the CA's signing certificate".into(),
            reason,
        })?;
    if signing_info.public_key != key.public_key_raw() {
        return Err(IdentityError::BadCertificate {
            what: key_path.display().to_string(),
            reason: "this key does not belong to the CA's signing certificate".into(),
        });
    }
    if signing_info.not_after <= SystemTime::now() {
        return Err(IdentityError::BadCertificate {
            what: "the CA's signing certificate".into(),
            reason: format!(
                "it expired at {}; install a new one",
                crate::cert::rfc3339(unix_secs(signing_info.not_after))
            ),
        });
    }
    let issuer =
        Issuer::from_ca_cert_der(&signing_cert, key).map_err(|source| IdentityError::Generate {
            what: "read the CA's signing certificate",
            source,
        })?;
    let ca = Ca {
        trust_domain: trust_domain.to_string(),
        issuer,
        signing_not_after: signing_info.not_after,
        chain_above_leaf,
        bundle: TrustBundle::new(trust_domain, roots)?,
        default_ttl: DEFAULT_TTL,
        max_ttl: DEFAULT_MAX_TTL,
    };
    self_check(&ca)?;
    Ok(ca)
}

/// Signs a throwaway leaf and verifies it against the bundle, so that a signing
/// certificate that does not chain to the roots is reported at start, not at the
/// first handshake.
fn self_check(ca: &Ca) -> Result<(), IdentityError> {
    let key = WorkloadKey::generate()?;
    let id = SpiffeId::control_plane(&ca.trust_domain)?;
    let chain = ca.issue(key.key_pair(), vec![crate::workload::uri_san(&id)?], None)?;
    ca.bundle
        .verify(
            chain.leaf(),
            &chain.certs()[1..],
            UnixTime::now(),
            webpki::KeyUsage::client_auth(),
        )
        .map_err(|err| IdentityError::BadCertificate {
            what: "the CA".into(),
            reason: format!(
                "a certificate it signs does not verify against its own root(s): {err}"
            ),
        })?;
    Ok(())
}

fn create_root(
    dir: &Path,
    cert_path: &Path,
    key_path: &Path,
    trust_domain: &str,
) -> Result<(), IdentityError> {
    fs::create_dir_all(dir).map_err(|source| io("create directory", dir, source))?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| {
        IdentityError::Generate {
            what: "generate the root key",
            source,
        }
    })?;
    let now = SystemTime::now();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::OrganizationName, trust_domain);
    // A name of its own, so that the next root (during a rotation) is told apart from
    // this one by name, not only by key.
    let serial = random_serial();
    let tag: String = serial.to_bytes()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("skiff root CA {tag}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + ROOT_TTL).into();
    params.serial_number = Some(serial);
    let cert = params
        .self_signed(&key)
        .map_err(|source| IdentityError::Generate {
            what: "make the self-signed root",
            source,
        })?;
    // The key first, 0600 from its creation: a root without its key is useless, a key
    // without its root is reported at the next start.
    write_new(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(cert_path, cert_to_pem(cert.der()).as_bytes(), 0o644)?;
    tracing::info!(dir = %dir.display(), %trust_domain, "made a new self-signed mesh root");
    Ok(())
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), IdentityError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| io("create", path, source))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|source| io("write", path, source))
}

fn read(path: &Path) -> Result<String, IdentityError> {
    fs::read_to_string(path).map_err(|source| io("read", path, source))
}

fn load_key(path: &Path) -> Result<KeyPair, IdentityError> {
    KeyPair::from_pem(&read(path)?).map_err(|err| IdentityError::BadCertificate {
        what: path.display().to_string(),
        reason: format!("not a PEM private key skiff can use: {err}"),
    })
}

fn single_cert(pem: &str, path: &Path) -> Result<CertificateDer<'static>, IdentityError> {
    let mut certs = parse_pem_certs(pem, &path.display().to_string())?;
    if certs.len() != 1 {
        return Err(IdentityError::BadCertificate {
            what: path.display().to_string(),
            reason: format!("it holds {} certificates; it must hold one", certs.len()),
        });
    }
    Ok(certs.remove(0))
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> IdentityError {
    IdentityError::Io {
        action,
        path: PathBuf::from(path),
        source,
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
