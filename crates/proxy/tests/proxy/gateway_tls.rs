//! Gateway servers that terminate TLS: `SIMPLE` with certificate files, `MUTUAL` with a
//! `credentialName` read from the credentials directory, the server chosen by SNI, and a
//! `TLS` server whose decrypted bytes go by a TCP route.

use std::net::IpAddr;
use std::path::Path;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use skiff_model::config::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::certs::{TestCa, read_text, tls_client};
use crate::support::*;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn server(hosts: &[&str], mode: ServerTlsMode) -> ServerTls {
    ServerTls {
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        mode,
        server_certificate: None,
        private_key: None,
        ca_certificates: None,
        credential_name: None,
        min_protocol_version: None,
        max_protocol_version: None,
        cipher_suites: vec![],
    }
}

/// A gateway with HTTPS port 443 (the `servers`, routing `*` to `web`) and, when
/// `tls_tcp`, TLS port 9443 terminating to the TCP echo.
async fn gateway(
    ip: IpAddr,
    servers: Vec<ServerTls>,
    creds: Option<&Path>,
    tls_tcp: Option<ServerTls>,
) -> TestProxy {
    let web = backend("web", ip).await;
    let echo = echo_server(ip).await;
    let mut config = sidecar(
        ip,
        vec![],
        vec![
            cluster("web", Protocol::Http, vec![endpoint(web.addr)]),
            cluster("echo", Protocol::Tcp, vec![endpoint(echo)]),
        ],
    );
    config.node.kind = ProxyKind::Gateway;
    config.gateway = vec![GatewayPort {
        port: 443,
        protocol: Protocol::Https,
        gateways: vec!["ns/gw".into()],
        virtual_hosts: vec![vhost(&["*"], vec![route("shop", vec![], to("web"))])],
        tcp: vec![],
        tls: servers,
    }];
    if let Some(t) = tls_tcp {
        config.gateway.push(GatewayPort {
            port: 9443,
            protocol: Protocol::Tls,
            gateways: vec!["ns/gw".into()],
            virtual_hosts: vec![],
            tcp: vec![TcpRoute {
                name: "ns/db/tcp/0".into(),
                domains: vec![],
                destinations: vec![WeightedCluster {
                    cluster: "echo".into(),
                    weight: 100,
                }],
                matches: vec![],
            }],
            tls: vec![t],
        });
    }
    let creds = creds.map(Path::to_path_buf);
    let p = TestProxy::start_with(ip, |o| o.credentials_dir = creds).await;
    p.proxy.apply("1", config).unwrap();
    p
}

/// One HTTPS GET through `tls`; returns the status and what the backend saw.
async fn https_get<I>(tls: I, host: &str) -> Reply
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/cart")
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    read_reply(sender.send_request(req).await.unwrap()).await
}

#[tokio::test]
async fn simple_tls_terminates_with_the_server_the_sni_names() {
    let ca = TestCa::new("gateway ca");
    let dir = tempfile::tempdir().unwrap();
    let (shop_cert, shop_key) = ca.leaf(&["shop.example.com"]);
    let (api_cert, api_key) = ca.leaf(&["api.example.com"]);
    let mut shop = server(&["shop.example.com"], ServerTlsMode::Simple);
    shop.server_certificate = Some(write(dir.path(), "shop.crt", &shop_cert));
    shop.private_key = Some(write(dir.path(), "shop.key", &shop_key));
    let mut api = server(&["*.example.com"], ServerTlsMode::Simple);
    api.server_certificate = Some(write(dir.path(), "api.crt", &api_cert));
    api.private_key = Some(write(dir.path(), "api.key", &api_key));
    let ip = fresh_ip();
    let p = gateway(ip, vec![shop, api], None, None).await;
    let addr = p.proxy.gateway_addr(443).unwrap();

    // Each name gets its own certificate, which the client verifies.
    for name in ["shop.example.com", "api.example.com"] {
        let s = TcpStream::connect(addr).await.unwrap();
        let tls = tls_client(s, name, &ca.pem, None).await.unwrap();
        let r = https_get(tls, name).await;
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.header("x-backend"), "web");
        assert_eq!(r.header("x-seen-x-forwarded-proto"), "https");
    }
    // A name no server holds: the handshake fails, and the log says why.
    let s = TcpStream::connect(addr).await.unwrap();
    assert!(
        tls_client(s, "shop.example.org", &ca.pem, None)
            .await
            .is_err()
    );
    let line = p
        .log_line("no TLS server of port 443 serves shop.example.org")
        .await;
    assert!(line.contains(" DPE "), "{line}");
    // Plain text on the TLS port is refused too.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: shop.example.com\r\n\r\n")
        .await
        .unwrap();
    p.log_line("did not start a TLS handshake").await;
}

#[tokio::test]
async fn mutual_tls_from_a_credential_name_requires_a_client_certificate() {
    let ca = TestCa::new("gateway ca");
    let clients = TestCa::new("client ca");
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("shop-credential");
    std::fs::create_dir(&secret).unwrap();
    let (cert, key) = ca.leaf(&["shop.example.com"]);
    write(&secret, "tls.crt", &cert);
    write(&secret, "tls.key", &key);
    write(&secret, "ca.crt", &clients.pem);
    let mut shop = server(&["shop.example.com"], ServerTlsMode::Mutual);
    shop.credential_name = Some("shop-credential".into());
    let mut tcp = server(&["*"], ServerTlsMode::Simple);
    tcp.credential_name = Some("shop-credential".into());
    let ip = fresh_ip();
    let p = gateway(ip, vec![shop], Some(dir.path()), Some(tcp)).await;
    let addr = p.proxy.gateway_addr(443).unwrap();

    let s = TcpStream::connect(addr).await.unwrap();
    let tls = tls_client(
        s,
        "shop.example.com",
        &ca.pem,
        Some(clients.leaf(&["client"])),
    )
    .await
    .unwrap();
    assert_eq!(https_get(tls, "shop.example.com").await.status, 200);

    // Without a client certificate the server refuses the handshake (TLS 1.3 reports
    // it after the client's Finished: the first read fails).
    let s = TcpStream::connect(addr).await.unwrap();
    let refused = match tls_client(s, "shop.example.com", &ca.pem, None).await {
        Err(_) => true,
        Ok(mut tls) => {
            let _ = tls.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
            let mut buf = [0u8; 16];
            !matches!(tokio::io::AsyncReadExt::read(&mut tls, &mut buf).await, Ok(n) if n > 0)
        }
    };
    assert!(refused, "a client without a certificate got through");
    let line = p.log_line("TLS handshake failed").await;
    assert!(line.contains(" DPE "), "{line}");
    // A client certificate of another CA fails as well.
    let s = TcpStream::connect(addr).await.unwrap();
    let other = TestCa::new("other");
    let r = tls_client(s, "shop.example.com", &ca.pem, Some(other.leaf(&["c"]))).await;
    if let Ok(mut tls) = r {
        let _ = tls.write_all(b"x").await;
        let mut buf = [0u8; 1];
        assert!(!matches!(tokio::io::AsyncReadExt::read(&mut tls, &mut buf).await, Ok(n) if n > 0));
    }

    // TLS server: terminated (no SNI needed for `*`), the bytes inside go by the TCP route.
    let s = TcpStream::connect(p.proxy.gateway_addr(9443).unwrap())
        .await
        .unwrap();
    let mut tls = tls_client(s, "db.example.com", &ca.pem, None).await;
    assert!(tls.is_err(), "the certificate names shop.example.com only");
    let s = TcpStream::connect(p.proxy.gateway_addr(9443).unwrap())
        .await
        .unwrap();
    tls = tls_client(s, "shop.example.com", &ca.pem, None).await;
    let mut tls = tls.unwrap();
    tls.write_all(b"hello").await.unwrap();
    assert_eq!(read_text(&mut tls, 5).await, "hello");
}

#[tokio::test]
async fn protocol_versions_and_cipher_suites_narrow_the_handshake() {
    let ca = TestCa::new("gateway ca");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf(&["shop.example.com"]);
    let mut shop = server(&["*"], ServerTlsMode::Simple);
    shop.server_certificate = Some(write(dir.path(), "c.crt", &cert));
    shop.private_key = Some(write(dir.path(), "c.key", &key));
    shop.min_protocol_version = Some("TLSV1_3".into());
    shop.cipher_suites = vec![
        "ECDHE-ECDSA-AES128-GCM-SHA256".into(),
        "DES-CBC3-SHA".into(),
    ];
    let ip = fresh_ip();
    let p = gateway(ip, vec![shop], None, None).await;
    let warnings = p.proxy.snapshot().unwrap().warnings().join("\n");
    assert!(
        warnings.contains("\"DES-CBC3-SHA\" is not one rustls offers"),
        "{warnings}"
    );
    let addr = p.proxy.gateway_addr(443).unwrap();
    // A TLS 1.2-only client is refused; the default client (1.3) gets through.
    let s = TcpStream::connect(addr).await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            rustls::pki_types::pem::PemObject::from_pem_slice(ca.pem.as_bytes())
                .map(|c: rustls::pki_types::CertificateDer<'static>| c.to_vec())
                .unwrap(),
        ))
        .unwrap();
    let tls12 = rustls::ClientConfig::builder_with_provider(skiff_identity::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("shop.example.com").unwrap();
    let r = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls12))
        .connect(name, s)
        .await;
    assert!(
        r.is_err(),
        "TLS 1.2 was accepted under minProtocolVersion TLSV1_3"
    );
    let s = TcpStream::connect(addr).await.unwrap();
    let tls = tls_client(s, "shop.example.com", &ca.pem, None)
        .await
        .unwrap();
    assert_eq!(https_get(tls, "shop.example.com").await.status, 200);
}

#[tokio::test]
async fn a_missing_credential_keeps_only_its_port_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut shop = server(&["*"], ServerTlsMode::Simple);
    shop.credential_name = Some("absent".into());
    let ip = fresh_ip();
    let p = gateway(ip, vec![shop], Some(dir.path()), None).await;
    let warnings = p.proxy.snapshot().unwrap().warnings().join("\n");
    assert!(warnings.contains("absent"), "{warnings}");
    assert!(warnings.contains("the port is not opened"), "{warnings}");
    assert!(p.proxy.gateway_addr(443).is_none());
    // The rest of the config is in service: an HTTP port added next to it opens.
    let mut config = p.proxy.snapshot().unwrap().config().clone();
    let mut http = config.gateway[0].clone();
    http.port = 80;
    http.protocol = Protocol::Http;
    http.tls = vec![];
    config.gateway.push(http);
    p.proxy.apply("2", config).unwrap();
    let r = get(
        p.proxy.gateway_addr(80).unwrap(),
        "http://shop.example.com/",
    )
    .await;
    assert_eq!(r.status, 200);
}
