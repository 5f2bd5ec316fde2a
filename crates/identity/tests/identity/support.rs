//! Test PKIs and TLS helpers.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::{CertificateDer, ServerName};
use skiff_identity::{Ca, CertChain, SpiffeId, WorkloadCert, WorkloadKey};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

pub(crate) const TD: &str = "cluster.local";

pub(crate) fn id(sa: &str) -> SpiffeId {
    SpiffeId::new(TD, "prod", sa).unwrap()
}

/// A CA with a self-signed root in a fresh directory.
pub(crate) fn self_signed_ca() -> (TempDir, Ca) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path().join("ca"), TD).unwrap();
    (dir, ca)
}

/// A certificate for `sa` from `ca`, through a CSR, as a workload would get it.
pub(crate) fn workload_cert(ca: &Ca, sa: &str) -> WorkloadCert {
    let key = WorkloadKey::generate().unwrap();
    let csr = key.csr_pem(&id(sa)).unwrap();
    let chain = ca.sign(csr.as_bytes(), &id(sa), None).unwrap();
    WorkloadCert::new(chain, key).unwrap()
}

/// An operator's PKI made by hand: a root and an intermediate, written as Istio's
/// plug-in CA files. The test keeps the intermediate's key to sign odd certificates.
pub(crate) struct TestPki {
    pub(crate) dir: TempDir,
    pub(crate) root: CertificateDer<'static>,
    pub(crate) intermediate: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn ca_params(cn: &str, not_after: SystemTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = (SystemTime::now() - Duration::from_secs(3600)).into();
    params.not_after = not_after.into();
    params
}

impl TestPki {
    /// The intermediate expires `intermediate_ttl` from now.
    pub(crate) fn new(intermediate_ttl: Duration) -> Self {
        let now = SystemTime::now();
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca_params("test root", now + Duration::from_secs(365 * 86400));
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let int_key = KeyPair::generate().unwrap();
        let int_params = ca_params("test intermediate", now + intermediate_ttl);
        let intermediate = int_params.signed_by(&int_key, &root_issuer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca-cert.pem", intermediate.pem());
        write("ca-key.pem", int_key.serialize_pem());
        write("root-cert.pem", root.pem());
        write(
            "cert-chain.pem",
            format!("{}{}", intermediate.pem(), root.pem()),
        );
        TestPki {
            dir,
            root: root.der().clone(),
            intermediate: intermediate.der().clone(),
            issuer: Issuer::new(int_params, int_key),
        }
    }

    pub(crate) fn ca(&self) -> Ca {
        Ca::from_plugin_files(self.dir.path(), TD).unwrap()
    }

    /// A leaf for `key` with `sans` and the given validity, signed by the
    /// intermediate without any of the CA's checks.
    pub(crate) fn sign_raw(
        &self,
        key: &WorkloadKey,
        sans: Vec<SanType>,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> CertChain {
        // The key's public half, read from a CSR (the key itself never leaves it).
        let csr = key.csr_pem(&id("unused")).unwrap();
        let csr = CertificateSigningRequestParams::from_pem(&csr).unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let leaf = params.signed_by(&csr.public_key, &self.issuer).unwrap();
        CertChain::new(vec![
            leaf.der().clone(),
            self.intermediate.clone(),
            self.root.clone(),
        ])
        .unwrap()
    }

    /// A leaf for `sa` that expired an hour ago.
    pub(crate) fn expired_cert(&self, sa: &str) -> WorkloadCert {
        let key = WorkloadKey::generate().unwrap();
        let now = SystemTime::now();
        let uri = SanType::URI(id(sa).to_string().try_into().unwrap());
        let chain = self.sign_raw(
            &key,
            vec![uri],
            now - Duration::from_secs(7200),
            now - Duration::from_secs(3600),
        );
        WorkloadCert::new(chain, key).unwrap()
    }
}

/// The two ends of one TLS handshake over loopback TCP.
pub(crate) struct Handshake {
    pub(crate) server: std::io::Result<server::TlsStream<TcpStream>>,
    pub(crate) client: std::io::Result<client::TlsStream<TcpStream>>,
}

/// Runs one handshake between `server` and `client` over a real loopback socket.
pub(crate) async fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Handshake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server);
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client = TlsConnector::from(client)
        .connect(ServerName::try_from("backend.prod").unwrap(), tcp)
        .await;
    // In TLS 1.3 the client is done first; the server's verdict on the client's
    // certificate comes after.
    let server = server.await.unwrap();
    Handshake { server, client }
}

/// Sends `msg` from the client and back from the server; both must see it.
pub(crate) async fn round_trip(
    client: &mut client::TlsStream<TcpStream>,
    server: &mut server::TlsStream<TcpStream>,
    msg: &[u8],
) {
    client.write_all(msg).await.unwrap();
    client.flush().await.unwrap();
    let mut buf = vec![0; msg.len()];
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, msg);
    server.write_all(msg).await.unwrap();
    server.flush().await.unwrap();
    let mut buf = vec![0; msg.len()];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, msg);
}

/// The serial number of a DER certificate, hex.
pub(crate) fn serial(cert: &CertificateDer<'_>) -> String {
    x509_parser::parse_x509_certificate(cert)
        .unwrap()
        .1
        .raw_serial_as_string()
}
