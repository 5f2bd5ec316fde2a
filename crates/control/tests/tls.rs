//! The control plane with its CA: xDS and the CA on one TLS port, on loopback. Who
//! gets a certificate, and who gets xDS.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use skiff_control::{ControlIdentity, ControlOptions, MeshCompiler, Running};
use skiff_identity::service::request_certificate;
use skiff_identity::transport::GrpcConnector;
use skiff_identity::{BootstrapTokens, Ca, IdentityError, MeshTls, SpiffeId, WorkloadKey};
use skiff_xds::{ChannelFactory, ClientOptions, ClientStatus, NodeInfo, SyncStatus};
use tonic::transport::{Channel, Endpoint};

const PATIENCE: Duration = Duration::from_secs(10);

const MESH: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: backend
  namespace: prod
spec:
  selector:
    app: backend
  ports:
  - name: http
    port: 80
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: frontend
  namespace: prod
spec:
  address: 127.0.0.12
  serviceAccount: frontend
  labels:
    app: frontend
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: backend-v1
  namespace: prod
spec:
  address: 127.0.0.13
  serviceAccount: backend
  labels:
    app: backend
";

struct Plane {
    running: Running,
    ca: Arc<Ca>,
    tokens: BootstrapTokens,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn start() -> Result<Plane> {
    let config = tempfile::tempdir()?;
    std::fs::write(config.path().join("mesh.yaml"), MESH)?;
    let ca_dir = tempfile::tempdir()?;
    let ca = Arc::new(Ca::load_or_create(ca_dir.path(), "cluster.local")?);
    let tokens = BootstrapTokens::new(&BootstrapTokens::generate_secret())?;
    let options = ControlOptions {
        xds_listen: "127.0.0.1:0".parse()?,
        debug_listen: "127.0.0.1:0".parse()?,
        identity: Some(ControlIdentity {
            ca: ca.clone(),
            tokens: Some(tokens.clone()),
        }),
        ..ControlOptions::new(config.path())
    };
    let running = skiff_control::start(options, MeshCompiler::default()).await?;
    Ok(Plane {
        running,
        ca,
        tokens,
        _dirs: (config, ca_dir),
    })
}

fn frontend() -> SpiffeId {
    SpiffeId::new("cluster.local", "prod", "frontend").unwrap()
}

impl Plane {
    fn endpoint(&self) -> Endpoint {
        Endpoint::from_shared(format!("http://{}", self.running.xds_addr)).unwrap()
    }

    async fn channel(&self, tls: &MeshTls) -> Result<Channel, IdentityError> {
        let control = SpiffeId::control_plane("cluster.local")?;
        skiff_identity::transport::connect(self.endpoint(), tls, &control).await
    }

    fn xds(&self, tls: &MeshTls) -> skiff_xds::XdsClient {
        self.xds_as(tls, "frontend.prod")
    }

    fn xds_as(&self, tls: &MeshTls, proxy: &str) -> skiff_xds::XdsClient {
        let connector = GrpcConnector::new(tls, &SpiffeId::control_plane("cluster.local").unwrap());
        let factory: ChannelFactory = Arc::new(move |endpoint: Endpoint| {
            let connector = connector.clone();
            Box::pin(async move { endpoint.connect_with_connector(connector).await })
        });
        let options = ClientOptions {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            ..ClientOptions::default()
        };
        skiff_xds::connect_with(
            &self.running.xds_addr.to_string(),
            NodeInfo::new(proxy),
            options,
            |_| Ok(()),
            factory,
        )
        .unwrap()
    }
}

async fn status_until(
    client: &skiff_xds::XdsClient,
    what: &str,
    f: impl Fn(&ClientStatus) -> bool,
) -> ClientStatus {
    let mut rx = client.status();
    let reached = tokio::time::timeout(PATIENCE, rx.wait_for(|s| f(s)))
        .await
        .ok()
        .and_then(|r| r.ok())
        .map(|s| s.clone());
    reached.unwrap_or_else(|| panic!("never reached: {what}; status {:?}", *rx.borrow()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_gets_a_certificate_and_the_certificate_gets_xds() -> Result<()> {
    let plane = start().await?;
    let bootstrap = MeshTls::without_cert(plane.ca.bundle())?;

    // Without a certificate: the stream is refused, saying what is missing.
    let anonymous = plane.xds(&bootstrap);
    let status = status_until(&anonymous, "a refusal", |s| s.last_error.is_some()).await;
    let error = status.last_error.unwrap();
    assert!(error.contains("needs a mesh certificate"), "{error}");
    assert_eq!(status.responses, 0);
    drop(anonymous);

    // The token of frontend gets frontend's certificate.
    let token = plane.tokens.token_for(&frontend());
    let channel = plane.channel(&bootstrap).await?;
    let cert = request_certificate(
        channel,
        WorkloadKey::generate()?,
        &frontend(),
        Some(&token),
        None,
    )
    .await?;
    assert_eq!(cert.id(), &frontend());
    let tls = MeshTls::new(cert, plane.ca.bundle())?;

    // With it, xDS is served and the proxy shows as SYNCED.
    let client = plane.xds(&tls);
    status_until(&client, "a config", |s| s.version.is_some()).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let row = plane
            .running
            .plane
            .sync()
            .row("frontend.prod", &plane.running.plane.snapshot());
        if row.status == SyncStatus::Synced {
            // The peer address reached the sync table through the TLS connection.
            assert!(row.peer.is_some(), "{row:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{row:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Renewal: the current certificate is the credential, no token.
    let channel = plane.channel(&tls).await?;
    let renewed =
        request_certificate(channel, WorkloadKey::generate()?, &frontend(), None, None).await?;
    assert_eq!(renewed.id(), &frontend());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csr_for_another_identity_than_the_token_is_refused() -> Result<()> {
    let plane = start().await?;
    let bootstrap = MeshTls::without_cert(plane.ca.bundle())?;
    let token = plane.tokens.token_for(&frontend());
    let backend = SpiffeId::new("cluster.local", "prod", "backend")?;
    let channel = plane.channel(&bootstrap).await?;
    let err = request_certificate(
        channel,
        WorkloadKey::generate()?,
        &backend,
        Some(&token),
        None,
    )
    .await
    .unwrap_err();
    let IdentityError::CaRefused { code, message } = &err else {
        panic!("{err}");
    };
    assert_eq!(*code, tonic::Code::PermissionDenied, "{message}");
    assert!(message.contains(&backend.to_string()), "{message}");
    assert!(message.contains(&frontend().to_string()), "{message}");

    // No credential at all.
    let channel = plane.channel(&bootstrap).await?;
    let err = request_certificate(channel, WorkloadKey::generate()?, &backend, None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            IdentityError::CaRefused {
                code: tonic::Code::Unauthenticated,
                ..
            }
        ),
        "{err}"
    );

    // The CA still serves the right caller.
    let channel = plane.channel(&bootstrap).await?;
    request_certificate(
        channel,
        WorkloadKey::generate()?,
        &frontend(),
        Some(&token),
        None,
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_port_speaks_only_tls() -> Result<()> {
    let plane = start().await?;
    let plain = skiff_xds::connect(
        &plane.running.xds_addr.to_string(),
        NodeInfo::new("frontend.prod"),
        ClientOptions {
            initial_backoff: Duration::from_millis(20),
            ..ClientOptions::default()
        },
        |_| Ok(()),
    )?;
    let status = status_until(&plain, "an error", |s| s.last_error.is_some()).await;
    assert_eq!(status.responses, 0, "{status:?}");
    assert!(!status.connected, "{status:?}");

    // A client trusting another root refuses the control plane.
    let other_dir = tempfile::tempdir()?;
    let other = Ca::load_or_create(other_dir.path(), "cluster.local")?;
    let stranger = MeshTls::without_cert(other.bundle())?;
    let err = plane.channel(&stranger).await.unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("unknown root"), "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_cannot_subscribe_as_another_workload() -> Result<()> {
    let plane = start().await?;
    let bootstrap = MeshTls::without_cert(plane.ca.bundle())?;
    let token = plane.tokens.token_for(&frontend());
    let channel = plane.channel(&bootstrap).await?;
    let cert = request_certificate(
        channel,
        WorkloadKey::generate()?,
        &frontend(),
        Some(&token),
        None,
    )
    .await?;
    let tls = MeshTls::new(cert, plane.ca.bundle())?;

    // frontend's certificate asking for backend-v1's config: refused, and backend-v1's
    // row in the sync table is not taken over.
    let impostor = plane.xds_as(&tls, "backend-v1.prod");
    let status = status_until(&impostor, "a refusal", |s| s.last_error.is_some()).await;
    let error = status.last_error.unwrap();
    assert!(
        error.contains(
            "the caller is spiffe://cluster.local/ns/prod/sa/frontend, but proxy \
             backend-v1.prod runs as spiffe://cluster.local/ns/prod/sa/backend"
        ),
        "{error}"
    );
    assert_eq!(status.responses, 0);
    let row = plane
        .running
        .plane
        .sync()
        .row("backend-v1.prod", &plane.running.plane.snapshot());
    assert_eq!(row.status, SyncStatus::NotConnected, "{row:?}");

    // As itself, the same certificate is served.
    let own = plane.xds(&tls);
    status_until(&own, "a config", |s| s.version.is_some()).await;
    Ok(())
}
