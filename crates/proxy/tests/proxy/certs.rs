//! Certificates and TLS ends for the tests: a CA that issues leaves, a TLS server
//! that names itself, a TLS client that checks the server.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A CA: its certificate (PEM) and a way to issue leaves.
pub struct TestCa {
    pub pem: String,
    params: CertificateParams,
    key: KeyPair,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa { pem, params, key }
    }

    /// A leaf for `names`: (certificate PEM, key PEM).
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A TLS server with `cert` that, once the handshake is done, writes `name` and then
/// echoes what it reads.
pub async fn tls_named_server(
    ip: IpAddr,
    name: &'static str,
    cert: (String, String),
) -> SocketAddr {
    let chain = vec![CertificateDer::from_pem_slice(cert.0.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(skiff_identity::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let _ = tls.write_all(name.as_bytes()).await;
                let _ = tls.flush().await;
                let mut buf = [0u8; 1024];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// The client side of TLS over `io` to `server_name`, trusting `ca_pem` (and showing
/// `client_cert` when given). Returns the stream after the handshake.
pub async fn tls_client<I>(
    io: I,
    server_name: &str,
    ca_pem: &str,
    client_cert: Option<(String, String)>,
) -> std::io::Result<tokio_rustls::client::TlsStream<I>>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(skiff_identity::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, io)
        .await
}

/// Reads exactly `n` bytes as text.
pub async fn read_text<R: AsyncRead + Unpin>(r: &mut R, n: usize) -> String {
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf).await.unwrap();
    String::from_utf8(buf).unwrap()
}
