//! Istio's egress tasks over `examples/egress`, in process: the tasks' client (`curl`)
//! calls an external service, here a server of the test on loopback known by the name
//! `localhost` (which resolves to 127.0.0.1, as an external host resolves to its
//! address). The tasks write their YAML inline on their pages; it is quoted here with
//! the external host and port changed to the test server's.
//!
//! - Accessing external services: with `ALLOW_ANY` the sidecar passes the request to
//!   the host it names (`PassthroughCluster`); with `REGISTRY_ONLY` it answers 502
//!   (`BlackHoleCluster`); a ServiceEntry with `resolution: DNS` makes the host known
//!   again, and the sidecar resolves it and routes to it.
//! - Egress gateway: a ServiceEntry whose endpoint is named by DNS, a Gateway on the
//!   egress gateway for the host, a VirtualService that sends the mesh's requests to
//!   the gateway and the gateway's to the host: the request goes client sidecar →
//!   egress gateway → external server; and the task's mutual-TLS variant, the
//!   gateway's server in `ISTIO_MUTUAL` mode.

#[path = "shared/example.rs"]
mod example;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use example::{borrowed, example};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use skiff_harness::{Mesh, Reply};

const CLIENT: &str = "curl.default";
const EGRESS: &str = "istio-egressgateway.istio-system";

/// The external service: answers `external` and counts, recording the authorities.
struct External {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    hosts: Arc<Mutex<Vec<String>>>,
}

async fn external() -> Result<External> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let hits = Arc::new(AtomicUsize::new(0));
    let hosts = Arc::new(Mutex::new(Vec::new()));
    let (h, s) = (hits.clone(), hosts.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (h, s) = (h.clone(), s.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<_>| {
                    h.fetch_add(1, Ordering::Relaxed);
                    let host = req
                        .headers()
                        .get(http::header::HOST)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    s.lock().unwrap_or_else(|e| e.into_inner()).push(host);
                    async move {
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("x-app", "external")
                                .body(Full::new(Bytes::from_static(b"external")))
                                .unwrap_or_default(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(External { addr, hits, hosts })
}

/// A request until it gets `status` (a DNS answer or a config arrives a moment after
/// the proxies acknowledged it), for at most ten seconds.
async fn until_status(mesh: &Mesh, from: &str, url: &str, status: u16) -> Result<Reply> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = mesh.get_via(from, url).await?;
        if reply.status == status || tokio::time::Instant::now() >= deadline {
            anyhow::ensure!(reply.status == status, "{url}: wanted {status}: {reply:?}");
            return Ok(reply);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Istio's `meshConfig.outboundTrafficPolicy.mode`, written as a Sidecar of the root
/// namespace (skiff's mesh-wide default).
fn mesh_mode(mode: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: default\n  namespace: istio-system\nspec:\n  outboundTrafficPolicy:\n    mode: {mode}\n"
    )
}

/// The task's ServiceEntry for its external host (`httpbin.org` there), `resolution:
/// DNS`, no endpoints: the host itself is resolved.
fn service_entry(port: u16) -> String {
    format!(
        "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: httpbin-ext
spec:
  hosts:
  - localhost
  ports:
  - number: {port}
    name: http
    protocol: HTTP
  resolution: DNS
  location: MESH_EXTERNAL
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_any_registry_only_and_a_service_entry_resolved_by_dns() -> Result<()> {
    let ext = external().await?;
    let port = ext.addr.port();
    let url = format!("http://localhost:{port}/headers");
    let files = example("egress", 22)?;
    // Only the client: the egress gateway is the other test's.
    let files: Vec<_> = files
        .into_iter()
        .filter(|(n, _)| n.contains("client"))
        .collect();
    let mesh = Mesh::start(&borrowed(&files)).await?;

    // ALLOW_ANY (Istio's default): passed through to where the name resolves.
    let reply = mesh.get_via(CLIENT, &url).await?;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-app"), "external");
    mesh.log_line(CLIENT, "PassthroughCluster").await?;

    // REGISTRY_ONLY: refused at the sidecar, the external server never sees it.
    mesh.write_config("mesh.yaml", &mesh_mode("REGISTRY_ONLY"))
        .await?;
    mesh.wait_synced().await?;
    let seen = ext.hits.load(Ordering::Relaxed);
    let reply = until_status(&mesh, CLIENT, &url, 502).await?;
    assert_eq!(reply.header("x-app"), "", "{reply:?}");
    mesh.log_line(CLIENT, "BlackHoleCluster").await?;
    assert_eq!(
        ext.hits.load(Ordering::Relaxed),
        seen,
        "refused before it left"
    );

    // The ServiceEntry makes the host known: resolved by DNS in the sidecar, routed
    // to its own cluster.
    mesh.write_config("httpbin-ext.yaml", &service_entry(port))
        .await?;
    mesh.wait_synced().await?;
    let reply = until_status(&mesh, CLIENT, &url, 200).await?;
    assert_eq!(reply.header("x-app"), "external", "{reply:?}");
    // Tries made while the name was still resolving are logged too: the 200 that
    // answered is among the cluster's lines.
    let cluster = format!("outbound|{port}||localhost");
    mesh.log_line(CLIENT, &cluster).await?;
    let lines: Vec<String> = mesh
        .logs(CLIENT)
        .into_iter()
        .filter(|l| l.contains(&cluster))
        .collect();
    assert!(lines.iter().any(|l| l.contains(" 200 ")), "{lines:?}");
    for _ in 0..5 {
        let reply = mesh.get_via(CLIENT, &url).await?;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    // The config names the host, not an address: the proxy found it.
    let snapshot = mesh.control().plane.snapshot();
    let config = &snapshot.get(CLIENT).expect("client served").config();
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.service == "localhost")
        .expect("the ServiceEntry's cluster");
    assert!(
        cluster.endpoints.iter().all(|e| e.dns.is_some()),
        "{:?}",
        cluster.endpoints
    );
    Ok(())
}

/// The egress-gateway task's ServiceEntry (for `edition.cnn.com` there, resolved by
/// DNS): a name of the test's own, with the external server as its endpoint, named
/// `localhost` and resolved by the proxy (a Gateway's hosts must be FQDNs, and
/// `localhost` is the one name that resolves to loopback everywhere).
fn cnn_entry(port: u16) -> String {
    format!(
        "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: cnn
spec:
  hosts:
  - external.example.com
  ports:
  - number: {port}
    name: http-port
    protocol: HTTP
  resolution: DNS
  endpoints:
  - address: localhost
"
    )
}

/// The egress-gateway task's Gateway, DestinationRule and VirtualService.
fn through_egress_gateway(port: u16) -> String {
    format!(
        "\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - external.example.com
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: egressgateway-for-cnn
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: cnn
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: direct-cnn-through-egress-gateway
spec:
  hosts:
  - external.example.com
  gateways:
  - istio-egressgateway
  - mesh
  http:
  - match:
    - gateways:
      - mesh
      port: {port}
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: cnn
        port:
          number: 80
      weight: 100
  - match:
    - gateways:
      - istio-egressgateway
      port: 80
    route:
    - destination:
        host: external.example.com
        port:
          number: {port}
      weight: 100
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_reaches_the_external_host_through_the_egress_gateway() -> Result<()> {
    let ext = external().await?;
    let port = ext.addr.port();
    let url = format!("http://external.example.com:{port}/politics");
    let mut files = example("egress", 22)?;
    files.push(("cnn.yaml".into(), cnn_entry(port)));
    files.push(("egress-gateway.yaml".into(), through_egress_gateway(port)));
    let mesh = Mesh::start(&borrowed(&files)).await?;

    let reply = until_status(&mesh, CLIENT, &url, 200).await?;
    assert_eq!(reply.header("x-app"), "external", "{reply:?}");
    // The client's sidecar sent it to the gateway, the gateway to the host.
    let line = mesh
        .log_line(
            CLIENT,
            "outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local",
        )
        .await?;
    assert!(line.contains(" 200 "), "{line}");
    let line = mesh
        .log_line(EGRESS, &format!("outbound|{port}||external.example.com"))
        .await?;
    assert!(line.contains("/politics"), "{line}");
    assert_eq!(
        ext.hosts.lock().unwrap_or_else(|e| e.into_inner()).last(),
        Some(&format!("external.example.com:{port}"))
    );
    Ok(())
}

/// The egress-gateway task's mutual-TLS variant: the gateway's server on 443 in
/// `ISTIO_MUTUAL` mode, the sidecars' DestinationRule for the gateway with
/// `tls.mode: ISTIO_MUTUAL` and `sni` on port 443, the mesh rule to port 443.
fn through_egress_gateway_with_mtls(port: u16) -> String {
    format!(
        "\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: istio-egressgateway
spec:
  selector:
    istio: egressgateway
  servers:
  - port:
      number: 443
      name: https
      protocol: HTTPS
    hosts:
    - external.example.com
    tls:
      mode: ISTIO_MUTUAL
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: egressgateway-for-cnn
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: cnn
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
      portLevelSettings:
      - port:
          number: 443
        tls:
          mode: ISTIO_MUTUAL
          sni: external.example.com
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: direct-cnn-through-egress-gateway
spec:
  hosts:
  - external.example.com
  gateways:
  - istio-egressgateway
  - mesh
  http:
  - match:
    - gateways:
      - mesh
      port: {port}
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: cnn
        port:
          number: 443
      weight: 100
  - match:
    - gateways:
      - istio-egressgateway
      port: 443
    route:
    - destination:
        host: external.example.com
        port:
          number: {port}
      weight: 100
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_reach_the_egress_gateway_with_istio_mutual_tls() -> Result<()> {
    let ext = external().await?;
    let port = ext.addr.port();
    let url = format!("http://external.example.com:{port}/politics");
    let mut files = example("egress", 22)?;
    files.push(("cnn.yaml".into(), cnn_entry(port)));
    files.push((
        "egress-gateway.yaml".into(),
        through_egress_gateway_with_mtls(port),
    ));
    let mesh = Mesh::start(&borrowed(&files)).await?;

    let reply = until_status(&mesh, CLIENT, &url, 200).await?;
    assert_eq!(reply.header("x-app"), "external", "{reply:?}");
    let line = mesh
        .log_line(
            CLIENT,
            "outbound|443|cnn|istio-egressgateway.istio-system.svc.cluster.local",
        )
        .await?;
    assert!(line.contains(" 200 "), "{line}");
    // The gateway terminated the mesh's TLS: it knows who called.
    let line = mesh
        .log_line(EGRESS, &format!("outbound|{port}||external.example.com"))
        .await?;
    assert!(line.contains("/politics"), "{line}");

    // Plain text to the gateway's 443 is refused: only the mesh's TLS is served there.
    let gateway = mesh.proxy(EGRESS).gateway(443).expect("port 443 served");
    let seen = ext.hits.load(Ordering::Relaxed);
    let plain = plain_get(gateway).await.unwrap_or_default();
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
    mesh.log_line(EGRESS, "DPE").await?;
    assert_eq!(ext.hits.load(Ordering::Relaxed), seen, "nothing went out");
    Ok(())
}

/// A plain-text GET to `addr`: what came back before the server closed.
async fn plain_get(addr: SocketAddr) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        b"GET /politics HTTP/1.1\r\nhost: external.example.com\r\nconnection: close\r\n\r\n",
    )
    .await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("no close"))??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
