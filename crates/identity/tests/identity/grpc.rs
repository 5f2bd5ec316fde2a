//! The CA service over TLS on loopback: bootstrap tokens, renewal with the current
//! certificate, and the status codes of refusals.

use std::sync::Arc;
use std::time::Duration;

use skiff_identity::proto::CreateCertificateRequest;
use skiff_identity::proto::certificate_service_client::CertificateServiceClient;
use skiff_identity::service::{CaService, PeerCertificate, request_certificate};
use skiff_identity::transport::{connect, tls_incoming};
use skiff_identity::{BootstrapTokens, Ca, IdentityError, MeshTls, SpiffeId, WorkloadKey};
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint, Server};

use crate::support::{TD, handshake, id, round_trip, self_signed_ca, serial};

struct ControlPlane {
    _dir: TempDir,
    ca: Arc<Ca>,
    tokens: BootstrapTokens,
    endpoint: Endpoint,
}

/// The CA service on a loopback port, TLS with a serving certificate from the CA,
/// callers authenticated by their certificate or a bootstrap token.
async fn control_plane() -> ControlPlane {
    let (dir, ca) = self_signed_ca();
    let ca = Arc::new(ca);
    let tokens = BootstrapTokens::new(&BootstrapTokens::generate_secret()).unwrap();
    let serving = ca
        .issue_server_cert(&["localhost".into()], &["127.0.0.1".parse().unwrap()], None)
        .unwrap();
    let tls = MeshTls::new(serving, ca.bundle()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = CaService::new(ca.clone(), (PeerCertificate, tokens.clone())).into_server();
    tokio::spawn(
        Server::builder()
            .add_service(service)
            .serve_with_incoming(tls_incoming(listener, tls.grpc_server_config())),
    );
    ControlPlane {
        _dir: dir,
        ca,
        tokens,
        endpoint: Endpoint::from_shared(format!("http://{addr}")).unwrap(),
    }
}

impl ControlPlane {
    /// A channel of a proxy that has no certificate yet.
    async fn anonymous_channel(&self) -> Channel {
        let tls = MeshTls::without_cert(self.ca.bundle()).unwrap();
        connect(
            self.endpoint.clone(),
            &tls,
            &SpiffeId::control_plane(TD).unwrap(),
        )
        .await
        .unwrap()
    }
}

async fn raw_request(
    channel: Channel,
    csr: String,
    token: Option<String>,
) -> Result<Vec<String>, tonic::Status> {
    let mut request = tonic::Request::new(CreateCertificateRequest {
        csr,
        validity_duration: 0,
    });
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", token.parse().unwrap());
    }
    CertificateServiceClient::new(channel)
        .create_certificate(request)
        .await
        .map(|r| r.into_inner().cert_chain)
}

#[tokio::test]
async fn bootstrap_token_gets_a_chain_for_its_own_id() {
    let cp = control_plane().await;
    let me = id("backend");
    let token = cp.tokens.token_for(&me);
    let cert = request_certificate(
        cp.anonymous_channel().await,
        WorkloadKey::generate().unwrap(),
        &me,
        Some(&token),
        Some(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    assert_eq!(cert.id(), &me);
    assert_eq!(cert.chain().root(), &cp.ca.trust_bundle()[0], "root last");
    let life = cert.not_after().duration_since(cert.not_before()).unwrap();
    assert_eq!(
        life,
        Duration::from_secs(600 + 300),
        "the TTL asked for, plus the skew margin"
    );

    // The certificate works for mesh mTLS with another workload of the CA.
    let peer = MeshTls::new(
        request_certificate(
            cp.anonymous_channel().await,
            WorkloadKey::generate().unwrap(),
            &id("frontend"),
            Some(&cp.tokens.token_for(&id("frontend"))),
            None,
        )
        .await
        .unwrap(),
        cp.ca.bundle(),
    )
    .unwrap();
    let mine = MeshTls::new(cert, cp.ca.bundle()).unwrap();
    let hs = handshake(mine.server_config(), peer.client_config(&[me])).await;
    let (mut c, mut s) = (hs.client.unwrap(), hs.server.unwrap());
    round_trip(&mut c, &mut s, b"issued over gRPC").await;
}

#[tokio::test]
async fn csr_for_another_id_is_permission_denied_naming_both() {
    let cp = control_plane().await;
    let csr = WorkloadKey::generate()
        .unwrap()
        .csr_pem(&id("admin"))
        .unwrap();
    let token = format!("Bearer {}", cp.tokens.token_for(&id("backend")));
    let status = raw_request(cp.anonymous_channel().await, csr, Some(token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status.message(),
        "CSR asks for spiffe://cluster.local/ns/prod/sa/admin but the caller is spiffe://cluster.local/ns/prod/sa/backend"
    );
}

#[tokio::test]
async fn bad_or_missing_credentials_are_unauthenticated() {
    let cp = control_plane().await;
    let csr = WorkloadKey::generate()
        .unwrap()
        .csr_pem(&id("backend"))
        .unwrap();
    let other = BootstrapTokens::new(&BootstrapTokens::generate_secret()).unwrap();
    for (token, words) in [
        (
            Some(format!("Bearer {}", other.token_for(&id("backend")))),
            "signature for spiffe://cluster.local/ns/prod/sa/backend is wrong",
        ),
        (Some("Bearer nonsense".to_string()), "bootstrap token"),
        (
            Some("Basic dXNlcjpwdw==".to_string()),
            "not `Bearer <token>`",
        ),
        (None, "no mesh certificate"),
    ] {
        let status = raw_request(cp.anonymous_channel().await, csr.clone(), token)
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
        assert!(status.message().contains(words), "{status:?}");
    }
}

#[tokio::test]
async fn malformed_csr_is_invalid_argument() {
    let cp = control_plane().await;
    let token = format!("Bearer {}", cp.tokens.token_for(&id("backend")));
    let status = raw_request(
        cp.anonymous_channel().await,
        "not a csr".into(),
        Some(token),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("bad CSR:"), "{status:?}");
}

#[tokio::test]
async fn renewal_with_the_current_certificate_needs_no_token() {
    let cp = control_plane().await;
    let me = id("backend");
    let first = request_certificate(
        cp.anonymous_channel().await,
        WorkloadKey::generate().unwrap(),
        &me,
        Some(&cp.tokens.token_for(&me)),
        None,
    )
    .await
    .unwrap();
    let first_serial = serial(first.chain().leaf());
    let tls = MeshTls::new(first, cp.ca.bundle()).unwrap();
    let control = SpiffeId::control_plane(TD).unwrap();
    let channel = connect(cp.endpoint.clone(), &tls, &control).await.unwrap();

    let renewed = request_certificate(
        channel.clone(),
        WorkloadKey::generate().unwrap(),
        &me,
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(renewed.id(), &me);
    assert_ne!(serial(renewed.chain().leaf()), first_serial);

    // The certificate proves its own identity only.
    let err = request_certificate(
        channel,
        WorkloadKey::generate().unwrap(),
        &id("admin"),
        None,
        None,
    )
    .await
    .unwrap_err();
    match err {
        IdentityError::CaRefused { code, message } => {
            assert_eq!(code, tonic::Code::PermissionDenied);
            assert!(message.contains("asks for spiffe://cluster.local/ns/prod/sa/admin but the caller is spiffe://cluster.local/ns/prod/sa/backend"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_that_never_handshakes_holds_up_no_one() {
    let cp = control_plane().await;
    let addr = cp.endpoint.uri().authority().unwrap().as_str().to_string();
    // Connected, silent: its handshake waits in a task of its own.
    let _silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let me = id("backend");
    let token = cp.tokens.token_for(&me);
    let request = async {
        let channel = cp.anonymous_channel().await;
        request_certificate(
            channel,
            WorkloadKey::generate().unwrap(),
            &me,
            Some(&token),
            None,
        )
        .await
    };
    // Far below the 10 s handshake timeout that a serial accept loop would wait out.
    let cert = tokio::time::timeout(Duration::from_secs(5), request)
        .await
        .expect("served while another client is stuck in its handshake")
        .unwrap();
    assert_eq!(cert.id(), &me);
}

#[tokio::test]
async fn proxies_refuse_a_control_plane_with_another_identity() {
    let cp = control_plane().await;
    let tls = MeshTls::without_cert(cp.ca.bundle()).unwrap();
    let err = connect(cp.endpoint.clone(), &tls, &id("not-the-control-plane"))
        .await
        .unwrap_err();
    let chain = format!("{:?}", anyhow::Error::from(err));
    assert!(
        chain.contains("peer is spiffe://cluster.local/ns/skiff-system/sa/skiff-control but spiffe://cluster.local/ns/prod/sa/not-the-control-plane was expected"),
        "{chain}"
    );
}
