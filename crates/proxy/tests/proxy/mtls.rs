//! Mutual TLS between proxies: identities from an in-process CA, STRICT / PERMISSIVE /
//! DISABLE on the server's inbound ports, refusals that name their reason, the caller's
//! identity handed to the app, and certificate and root rotation without a failed
//! request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use skiff_identity::{Ca, MeshTls, SpiffeId, WorkloadCert, WorkloadKey};
use skiff_model::config::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

pub const FRONTEND: &str = "spiffe://cluster.local/ns/prod/sa/frontend";
pub const BACKEND: &str = "spiffe://cluster.local/ns/prod/sa/backend";

/// A mesh CA in a temporary directory.
pub struct Mesh {
    pub ca: Ca,
    _dir: tempfile::TempDir,
}

impl Mesh {
    pub fn new() -> Mesh {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path().join("ca"), "cluster.local").unwrap();
        Mesh { ca, _dir: dir }
    }

    /// A certificate for `id`, as a proxy gets one: its own key, a CSR, the CA signs.
    pub fn cert(&self, id: &str) -> WorkloadCert {
        issue(&self.ca, id)
    }

    pub fn identity(&self, id: &str) -> MeshTls {
        MeshTls::new(self.cert(id), self.ca.bundle()).unwrap()
    }
}

fn issue(ca: &Ca, id: &str) -> WorkloadCert {
    let id: SpiffeId = id.parse().unwrap();
    let key = WorkloadKey::generate().unwrap();
    let chain = ca
        .sign(key.csr_pem(&id).unwrap().as_bytes(), &id, None)
        .unwrap();
    WorkloadCert::new(chain, key).unwrap()
}

/// The backend workload: its app and its sidecar, the app's port PeerAuthentication
/// `mode` (set by `prod/default`), and the endpoint a caller's proxy uses.
pub struct Server {
    pub proxy: TestProxy,
    pub app: Backend,
    pub endpoint: Endpoint,
}

pub async fn server(mesh: Option<MeshTls>, ports: &[MtlsMode]) -> Server {
    server_with(mesh, ports, vec![]).await
}

/// [`server`], with AuthorizationPolicies.
pub async fn server_with(
    mesh: Option<MeshTls>,
    ports: &[MtlsMode],
    authz: Vec<AuthzPolicy>,
) -> Server {
    let ip = fresh_ip();
    let app = backend("backend", ip).await;
    let mut config = sidecar(ip, vec![], vec![]);
    config.policies.authorization_policies = authz;
    config.policies.mtls = MtlsPolicy {
        mode: ports[0],
        ports: Default::default(),
        from: vec!["prod/default".into()],
    };
    config.inbound = vec![InboundPort {
        target_port: app.addr.port(),
        protocol: Protocol::Http,
        services: vec!["backend.prod.svc.cluster.local:80".into()],
        mtls: ports[0],
    }];
    let proxy = TestProxy::start_with(ip, |o| o.mesh_tls = mesh).await;
    proxy.proxy.apply("1", config).unwrap();
    let endpoint = Endpoint {
        address: app.addr,
        proxy_port: Some(proxy.inbound().port()),
        workload: "backend.prod".into(),
        weight: 1,
        spiffe_id: BACKEND.into(),
        sidecar: true,
        mtls: true,
        locality: String::new(),
        priority: 0,
        dns: None,
    };
    Server {
        proxy,
        app,
        endpoint,
    }
}

/// The frontend's sidecar, with `backend` as its one service.
pub async fn client(mesh: Option<MeshTls>, endpoint: Endpoint) -> TestProxy {
    let ip = fresh_ip();
    let name = "outbound|80||backend.prod.svc.cluster.local";
    let config = one_service(
        ip,
        vec![route("default", vec![], to(name))],
        vec![cluster(name, Protocol::Http, vec![endpoint])],
    );
    let p = TestProxy::start_with(ip, |o| o.mesh_tls = mesh).await;
    p.proxy.apply("1", config).unwrap();
    p
}

/// Sends an HTTP/1.1 request to a server proxy's inbound listener in plain text, as a
/// proxy without mutual TLS would: the transport header, then the request. Returns
/// what came back (empty when the connection was closed).
pub async fn plaintext_to_inbound(inbound: SocketAddr, app_port: u16) -> String {
    let mut s = tokio::net::TcpStream::connect(inbound).await.unwrap();
    let header = skiff_proxy::transport_header::TransportHeader {
        target_port: app_port,
    }
    .encode();
    s.write_all(&header).await.unwrap();
    let _ = s
        .write_all(b"GET /plain HTTP/1.1\r\nhost: backend\r\nconnection: close\r\n\r\n")
        .await;
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
    out
}

#[tokio::test]
async fn strict_serves_mutual_tls_and_tells_the_app_who_called() {
    let mesh = Mesh::new();
    let srv = server(Some(mesh.identity(BACKEND)), &[MtlsMode::Strict]).await;
    let cli = client(Some(mesh.identity(FRONTEND)), srv.endpoint.clone()).await;
    let r = get(cli.outbound(), "http://backend/hello").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "backend");
    // The app learns the caller's identity as Istio's sidecars tell it.
    assert_eq!(
        r.header("x-seen-x-forwarded-client-cert"),
        format!("By={BACKEND};URI={FRONTEND}")
    );
    // A caller cannot forge it: what the app sends is replaced.
    let mut c = Client::connect(cli.outbound()).await;
    let req = http::Request::get("http://backend/forged")
        .header(
            "x-forwarded-client-cert",
            "URI=spiffe://cluster.local/ns/prod/sa/admin",
        )
        .body(Default::default())
        .unwrap();
    let r = c.send(req).await;
    assert_eq!(
        r.header("x-seen-x-forwarded-client-cert"),
        format!("By={BACKEND};URI={FRONTEND}")
    );
}

#[tokio::test]
async fn strict_refuses_plain_text_and_says_which_policy() {
    let mesh = Mesh::new();
    let srv = server(Some(mesh.identity(BACKEND)), &[MtlsMode::Strict]).await;
    let out = plaintext_to_inbound(srv.proxy.inbound(), srv.app.addr.port()).await;
    assert!(out.is_empty(), "a plain-text request got an answer: {out}");
    let line = srv.proxy.log_line("plaintext connection refused").await;
    assert!(
        line.ends_with(
            "\"plaintext connection refused: PeerAuthentication prod/default is STRICT\""
        ),
        "{line}"
    );
    assert_eq!(srv.app.hits.load(Ordering::Relaxed), 0);

    // A caller's proxy without a mesh identity is refused the same way, and its app
    // sees a 503 whose log line says the upstream connection was cut.
    let cli = client(None, srv.endpoint.clone()).await;
    let r = get(cli.outbound(), "http://backend/no-identity").await;
    assert_eq!(r.status, 503);
    assert_eq!(srv.app.hits.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn strict_refuses_a_certificate_from_another_root() {
    let mesh = Mesh::new();
    let other = Mesh::new();
    let srv = server(Some(mesh.identity(BACKEND)), &[MtlsMode::Strict]).await;
    // The intruder's proxy trusts the server's root (so it would accept the server),
    // but its own certificate comes from another CA.
    let intruder = MeshTls::new(other.cert(FRONTEND), mesh.ca.bundle()).unwrap();
    let cli = client(Some(intruder), srv.endpoint.clone()).await;
    let r = get(cli.outbound(), "http://backend/intruder").await;
    assert_eq!(r.status, 503, "{}", r.body);
    let line = srv.proxy.log_line("TLS handshake failed").await;
    assert!(
        line.contains(
            "certificate of spiffe://cluster.local/ns/prod/sa/frontend is from an unknown root"
        ),
        "{line}"
    );
    assert_eq!(srv.app.hits.load(Ordering::Relaxed), 0);

    // And a client checks the server: a server of another root is refused by name.
    let fake = server(
        Some(MeshTls::new(other.cert(BACKEND), other.ca.bundle()).unwrap()),
        &[MtlsMode::Permissive],
    )
    .await;
    let cli = client(Some(mesh.identity(FRONTEND)), fake.endpoint.clone()).await;
    let r = get(cli.outbound(), "http://backend/fake-server").await;
    assert_eq!(r.status, 503);
    assert_eq!(fake.app.hits.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn the_client_checks_the_server_identity() {
    let mesh = Mesh::new();
    // The endpoint says backend, but the workload there has another identity.
    let srv = server(
        Some(mesh.identity("spiffe://cluster.local/ns/prod/sa/impostor")),
        &[MtlsMode::Strict],
    )
    .await;
    let cli = client(Some(mesh.identity(FRONTEND)), srv.endpoint.clone()).await;
    let r = get(cli.outbound(), "http://backend/impostor").await;
    assert_eq!(r.status, 503);
    assert_eq!(srv.app.hits.load(Ordering::Relaxed), 0);
    let line = cli.log_line("/impostor").await;
    assert!(line.contains(" 503 UF "), "{line}");
}

#[tokio::test]
async fn permissive_serves_both_on_one_port_and_disable_refuses_mutual_tls() {
    let mesh = Mesh::new();
    let srv = server(Some(mesh.identity(BACKEND)), &[MtlsMode::Permissive]).await;
    let plain = plaintext_to_inbound(srv.proxy.inbound(), srv.app.addr.port()).await;
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    // Plain text: the app gets no caller identity.
    assert!(!plain.contains("x-seen-x-forwarded-client-cert"), "{plain}");
    let cli = client(Some(mesh.identity(FRONTEND)), srv.endpoint.clone()).await;
    let r = get(cli.outbound(), "http://backend/tls").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("x-seen-x-forwarded-client-cert")
            .contains(FRONTEND)
    );

    let off = server(Some(mesh.identity(BACKEND)), &[MtlsMode::Disable]).await;
    let plain = plaintext_to_inbound(off.proxy.inbound(), off.app.addr.port()).await;
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    let cli = client(Some(mesh.identity(FRONTEND)), off.endpoint.clone()).await;
    let r = get(cli.outbound(), "http://backend/tls").await;
    assert_eq!(r.status, 503);
    let line = off.proxy.log_line("mutual TLS connection refused").await;
    assert!(
        line.contains("PeerAuthentication prod/default is DISABLE"),
        "{line}"
    );
}

#[tokio::test]
async fn an_endpoint_without_mtls_is_reached_in_plain_text() {
    let mesh = Mesh::new();
    let srv = server(Some(mesh.identity(BACKEND)), &[MtlsMode::Permissive]).await;
    let mut ep = srv.endpoint.clone();
    ep.mtls = false;
    let cli = client(Some(mesh.identity(FRONTEND)), ep).await;
    let r = get(cli.outbound(), "http://backend/plain").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-seen-x-forwarded-client-cert"), "");
}

/// Requests in a loop, each on a new downstream connection, until `stop`; counts
/// answers that are not 200.
fn load(outbound: SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(usize, usize)> {
    tokio::spawn(async move {
        let (mut ok, mut failed) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            let r = get(outbound, "http://backend/load").await;
            if r.status == 200 {
                ok += 1;
            } else {
                failed += 1;
            }
        }
        (ok, failed)
    })
}

/// TCP through both proxies in a loop, a new tunnel (so a new mutual TLS handshake
/// between the proxies) per round trip, until `stop`; counts failed round trips.
fn tcp_load(
    outbound: SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, usize)> {
    tokio::spawn(async move {
        let (mut ok, mut failed) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            let round = async {
                let mut s = connect_tunnel(outbound, "db:5432").await.ok()?;
                s.write_all(b"ping").await.ok()?;
                let mut buf = [0u8; 4];
                s.read_exact(&mut buf).await.ok()?;
                (&buf == b"ping").then_some(())
            };
            match tokio::time::timeout(Duration::from_secs(5), round).await {
                Ok(Some(())) => ok += 1,
                _ => failed += 1,
            }
        }
        (ok, failed)
    })
}

#[tokio::test]
async fn certificate_and_root_rotation_under_load_fail_no_request() {
    let mesh = Mesh::new();
    let server_tls = mesh.identity(BACKEND);
    let client_tls = mesh.identity(FRONTEND);
    // The backend serves HTTP and, on a second port, a TCP echo; both STRICT.
    let ip = fresh_ip();
    let app = backend("backend", ip).await;
    let echo = echo_server(ip).await;
    let mut config = sidecar(ip, vec![], vec![]);
    config.inbound = [
        (app.addr.port(), Protocol::Http),
        (echo.port(), Protocol::Tcp),
    ]
    .into_iter()
    .map(|(port, protocol)| InboundPort {
        target_port: port,
        protocol,
        services: vec![],
        mtls: MtlsMode::Strict,
    })
    .collect();
    let srv = TestProxy::start_with(ip, |o| o.mesh_tls = Some(server_tls.clone())).await;
    srv.proxy.apply("1", config).unwrap();
    let endpoint = |address| Endpoint {
        address,
        proxy_port: Some(srv.inbound().port()),
        workload: "backend.prod".into(),
        weight: 1,
        spiffe_id: BACKEND.into(),
        sidecar: true,
        mtls: true,
        locality: String::new(),
        priority: 0,
        dns: None,
    };
    let cip = fresh_ip();
    let http = "outbound|80||backend.prod.svc.cluster.local";
    let mut config = one_service(
        cip,
        vec![route("default", vec![], to(http))],
        vec![
            cluster(http, Protocol::Http, vec![endpoint(app.addr)]),
            cluster("db", Protocol::Tcp, vec![endpoint(echo)]),
        ],
    );
    config.outbound.push(OutboundPort {
        port: 5432,
        protocol: Protocol::Tcp,
        virtual_hosts: vec![],
        tcp: vec![TcpRoute {
            matches: vec![],
            name: "db.prod.svc.cluster.local:5432".into(),
            domains: vec!["db".into()],
            destinations: vec![WeightedCluster {
                cluster: "db".into(),
                weight: 100,
            }],
        }],
    });
    let cli = TestProxy::start_with(cip, |o| o.mesh_tls = Some(client_tls.clone())).await;
    cli.proxy.apply("1", config).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let http_loads: Vec<_> = (0..2).map(|_| load(cli.outbound(), stop.clone())).collect();
    let tcp_loads: Vec<_> = (0..2)
        .map(|_| tcp_load(cli.outbound(), stop.clone()))
        .collect();
    let handshakes = || {
        srv.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("\"- - -\""))
            .count()
    };
    let after = |n: usize| {
        let hits = app.hits.clone();
        let seen = handshakes();
        async move {
            let until = hits.load(Ordering::Relaxed) + n;
            while hits.load(Ordering::Relaxed) < until || handshakes() < seen + n / 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    // Several rotations of both certificates while requests flow. Pooled connections
    // keep the certificates they were made with; every tunnel is a new handshake with
    // the certificates of the moment.
    for _ in 0..4 {
        after(40).await;
        server_tls.rotate(mesh.cert(BACKEND));
        client_tls.rotate(mesh.cert(FRONTEND));
    }
    // Root rotation with overlap: a new CA's root joins the bundle both sides trust,
    // then both sides move to certificates of the new root, while the old is trusted.
    let dir = tempfile::tempdir().unwrap();
    let new_ca = Ca::load_or_create(dir.path().join("ca2"), "cluster.local").unwrap();
    mesh.ca
        .add_trusted_root(&new_ca.trust_bundle_pem())
        .unwrap();
    after(40).await;
    server_tls.rotate(issue(&new_ca, BACKEND));
    after(40).await;
    client_tls.rotate(issue(&new_ca, FRONTEND));
    after(40).await;
    stop.store(true, Ordering::Relaxed);
    let (mut requests, mut tunnels) = (0, 0);
    for l in http_loads {
        let (ok, failed) = l.await.unwrap();
        assert_eq!(failed, 0, "{failed} HTTP requests failed during rotation");
        requests += ok;
    }
    for l in tcp_loads {
        let (ok, failed) = l.await.unwrap();
        assert_eq!(failed, 0, "{failed} TCP round trips failed during rotation");
        tunnels += ok;
    }
    assert!(
        requests >= 200 && tunnels >= 100,
        "{requests} requests, {tunnels} tunnels"
    );
    // The server now serves a certificate of the new root.
    let served = server_tls.current_cert().unwrap();
    assert_eq!(served.chain().root(), &new_ca.trust_bundle()[0]);
    assert_eq!(app.hits.load(Ordering::Relaxed), requests);
}
