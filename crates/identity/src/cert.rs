//! Certificate chains and the few facts skiff reads from a certificate (its SPIFFE id,
//! validity, public key), parsed with x509-parser.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use x509_parser::extensions::GeneralName;

use crate::{IdentityError, SpiffeId};

/// A certificate chain as the CA hands it out: the leaf first, then the intermediates,
/// the root last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertChain {
    certs: Vec<CertificateDer<'static>>,
}

impl CertChain {
    /// A chain of DER certificates, leaf first. It must not be empty.
    pub fn new(certs: Vec<CertificateDer<'static>>) -> Result<Self, IdentityError> {
        if certs.is_empty() {
            return Err(IdentityError::BadCertificate {
                what: "certificate chain".into(),
                reason: "it is empty".into(),
            });
        }
        Ok(CertChain { certs })
    }

    /// A chain from PEM strings, leaf first, each holding one or more certificates
    /// (the `cert_chain` of a CA answer, or a `cert-chain.pem` file as one string).
    /// `what` names where they came from, for the error.
    pub fn from_pem<S: AsRef<str>>(pems: &[S], what: &str) -> Result<Self, IdentityError> {
        let mut certs = Vec::new();
        for pem in pems {
            certs.extend(parse_pem_certs(pem.as_ref(), what)?);
        }
        Self::new(certs)
    }

    /// The workload's own certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.certs[0]
    }

    /// The last certificate of the chain: the root, in a chain from the CA.
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.certs[self.certs.len() - 1]
    }

    /// Every certificate, leaf first.
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// Each certificate as its own PEM string, leaf first (the gRPC answer's shape).
    pub fn to_pem(&self) -> Vec<String> {
        self.certs.iter().map(cert_to_pem).collect()
    }
}

/// Every certificate in a PEM text; an error if there is none.
pub(crate) fn parse_pem_certs(
    pem: &str,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| IdentityError::BadCertificate {
            what: what.to_string(),
            reason: format!("not PEM certificates: {err}"),
        })?;
    if certs.is_empty() {
        return Err(IdentityError::BadCertificate {
            what: what.to_string(),
            reason: "no `-----BEGIN CERTIFICATE-----` block in it".into(),
        });
    }
    Ok(certs)
}

/// One certificate as PEM.
pub(crate) fn cert_to_pem(der: &CertificateDer<'_>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// What skiff reads from a certificate.
#[derive(Debug)]
pub(crate) struct CertInfo {
    /// The SPIFFE id of its only URI SAN, or why it has none.
    pub(crate) id: Result<SpiffeId, String>,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
    /// The subjectPublicKey bits of its SPKI.
    pub(crate) public_key: Vec<u8>,
}

impl CertInfo {
    /// The SPIFFE id, or a name for messages when it has none.
    pub(crate) fn describe(&self) -> String {
        match &self.id {
            Ok(id) => id.to_string(),
            Err(_) => "a certificate without SPIFFE id".into(),
        }
    }
}

/// Reads a certificate's SPIFFE id, validity and public key.
pub(crate) fn cert_info(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|err| format!("not an X.509 certificate: {err}"))?;
    let validity = cert.validity();
    Ok(CertInfo {
        id: spiffe_id_of(&cert),
        not_before: unix_to_system(validity.not_before.timestamp()),
        not_after: unix_to_system(validity.not_after.timestamp()),
        public_key: cert.public_key().subject_public_key.data.to_vec(),
    })
}

fn spiffe_id_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<SpiffeId, String> {
    let san = cert
        .subject_alternative_name()
        .map_err(|err| format!("its subjectAltName cannot be parsed: {err}"))?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|san| san.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => Err("it has no URI SAN".into()),
        [uri] => uri.parse().map_err(|err: IdentityError| err.to_string()),
        _ => Err(format!(
            "it has {} URI SANs ({}); a SPIFFE certificate has exactly one",
            uris.len(),
            uris.join(", ")
        )),
    }
}

pub(crate) fn unix_to_system(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// RFC 3339, for messages.
pub(crate) fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} (Unix time)"))
}
