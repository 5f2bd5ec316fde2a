//! TLS origination (DestinationRule `tls.mode: SIMPLE` and `MUTUAL`): the proxy opens
//! TLS to a server outside the mesh on the app's behalf.
//!
//! The server is verified against `caCertificates` (or the `ca.crt` of
//! `credentialName`), else against the Mozilla roots; `subjectAltNames`, when given,
//! replace the host name check (any one of them must be in the certificate);
//! `insecureSkipVerify` skips the check. `MUTUAL` shows `clientCertificate` and
//! `privateKey` (or `tls.crt` and `tls.key` of `credentialName`). In local mode a
//! `credentialName` is a directory of the proxy's credentials directory, holding those
//! files as a Kubernetes TLS secret would. TLS 1.2 and 1.3, as external servers need;
//! mesh connections stay TLS 1.3 only.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use skiff_model::config::TlsOrigination;

/// A compiled origination: the client config and the server name to send and check.
#[derive(Clone)]
pub(crate) struct Origination {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) server_name: ServerName<'static>,
}

/// Compiles `t` for a cluster of service `host`. `mutual` is `MUTUAL`; `alpn` the
/// protocols to offer. Errors name the file or field at fault.
pub(crate) fn compile(
    t: &TlsOrigination,
    mutual: bool,
    host: &str,
    alpn: &[&[u8]],
    credentials: Option<&Path>,
) -> Result<Origination, String> {
    let secret = match (&t.credential_name, credentials) {
        (Some(name), Some(dir)) => Some(dir.join(name)),
        (Some(name), None) => {
            return Err(format!(
                "credentialName {name:?}: this proxy has no credentials directory \
                 (--credentials-dir) to read it from"
            ));
        }
        (None, _) => None,
    };
    let provider = skiff_identity::crypto_provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn ServerCertVerifier> = if t.insecure_skip_verify {
        Arc::new(NoVerify(provider))
    } else {
        let mut roots = RootCertStore::empty();
        let ca = t
            .ca_certificates
            .as_deref()
            .map(Path::new)
            .map(Path::to_path_buf)
            .or_else(|| {
                secret
                    .as_ref()
                    .map(|s| s.join("ca.crt"))
                    .filter(|p| p.exists())
            });
        match ca {
            Some(file) => {
                for cert in read_certs(&file)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("caCertificates {}: {e}", file.display()))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
        if t.subject_alt_names.is_empty() {
            webpki
        } else {
            let names = t
                .subject_alt_names
                .iter()
                .map(|n| {
                    ServerName::try_from(n.clone())
                        .map_err(|_| format!("subjectAltNames: {n:?} is not a DNS name or address"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(AltNames {
                inner: webpki,
                names,
            })
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = if mutual {
        let (cert, key) = match (&t.client_certificate, &t.private_key, &secret) {
            (Some(c), Some(k), _) => (Path::new(c).to_path_buf(), Path::new(k).to_path_buf()),
            (None, None, Some(s)) => (s.join("tls.crt"), s.join("tls.key")),
            _ => {
                return Err(
                    "MUTUAL needs clientCertificate and privateKey, or credentialName".into(),
                );
            }
        };
        builder
            .with_client_auth_cert(read_certs(&cert)?, read_key(&key)?)
            .map_err(|e| format!("clientCertificate {}: {e}", cert.display()))?
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = t.sni.clone().unwrap_or_else(|| host.to_owned());
    let server_name = ServerName::try_from(name.clone())
        .map_err(|_| format!("sni {name:?} is not a DNS name or address"))?;
    Ok(Origination {
        config: Arc::new(config),
        server_name,
    })
}

pub(crate) fn read_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let certs: Vec<_> =
        rustls_pemfile_certs(&pem).map_err(|e| format!("{}: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", file.display()));
    }
    Ok(certs)
}

fn rustls_pemfile_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

pub(crate) fn read_key(file: &Path) -> Result<PrivateKeyDer<'static>, String> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_file(file).map_err(|e| format!("privateKey {}: {e}", file.display()))
}

/// `subjectAltNames`: the chain must verify and carry one of these names.
#[derive(Debug)]
struct AltNames {
    inner: Arc<WebPkiServerVerifier>,
    names: Vec<ServerName<'static>>,
}

impl ServerCertVerifier for AltNames {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut last = None;
        for name in &self.names {
            match self
                .inner
                .verify_server_cert(end_entity, intermediates, name, ocsp, now)
            {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(rustls::Error::General("no subjectAltNames".into())))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecureSkipVerify`: any certificate; the handshake's signatures are still checked,
/// so the session is with whoever holds the certificate's key.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
