//! TLS origination (DestinationRule `SIMPLE` / `MUTUAL`): the app speaks plain HTTP to
//! its sidecar, which opens TLS to a server outside the mesh and checks it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use skiff_model::config::*;

use crate::certs::TestCa;
use crate::support::*;

/// An HTTPS server with `cert`; with `client_ca`, it requires client certificates of
/// that CA. Answers `tls-server`, and records the SNI it was asked for.
async fn https_server(
    ip: std::net::IpAddr,
    (cert, key): (String, String),
    client_ca: Option<&str>,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(skiff_identity::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
                .unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                skiff_identity::crypto_provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let snis = Arc::new(Mutex::new(Vec::new()));
    let seen = snis.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                if let Some(sni) = tls.get_ref().1.server_name() {
                    seen.lock().unwrap().push(sni.to_owned());
                }
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        bytes::Bytes::from_static(b"tls-server"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, snis)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A sidecar with one external service `api.example.com` on port 80, reached at
/// `server` with DestinationRule TLS `tls`.
async fn sidecar_to(server: SocketAddr, tls: ClusterTls, creds: Option<&Path>) -> TestProxy {
    let ip = fresh_ip();
    let name = "outbound|80||api.example.com";
    let mut c = cluster(name, Protocol::Http, vec![endpoint(server)]);
    c.service = "api.example.com".into();
    c.tls = tls;
    let mut config = one_service(ip, vec![route("default", vec![], to(name))], vec![c]);
    config.outbound[0].virtual_hosts[0].domains = vec!["api.example.com".into()];
    let creds = creds.map(Path::to_path_buf);
    let p = TestProxy::start_with(ip, |o| o.credentials_dir = creds).await;
    p.proxy.apply("1", config).unwrap();
    p
}

fn simple(t: TlsOrigination) -> ClusterTls {
    ClusterTls::Simple(t)
}

#[tokio::test]
async fn simple_verifies_the_server_and_sends_sni() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("external ca");
    let other = TestCa::new("another ca");
    let ca_file = write(dir.path(), "ca.pem", &ca.pem);
    let other_file = write(dir.path(), "other.pem", &other.pem);
    let (server, snis) = https_server(fresh_ip(), ca.leaf(&["api.example.com"]), None).await;

    let ok = sidecar_to(
        server,
        simple(TlsOrigination {
            ca_certificates: Some(ca_file.clone()),
            ..Default::default()
        }),
        None,
    )
    .await;
    let r = get(ok.outbound(), "http://api.example.com/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "tls-server");
    assert_eq!(snis.lock().unwrap().last().unwrap(), "api.example.com");

    // A server whose certificate another CA signed is refused.
    let wrong = sidecar_to(
        server,
        simple(TlsOrigination {
            ca_certificates: Some(other_file),
            ..Default::default()
        }),
        None,
    )
    .await;
    let r = get(wrong.outbound(), "http://api.example.com/").await;
    assert_eq!(r.status, 503);
    assert!(
        wrong
            .log_line("\"GET / HTTP/1.1\" 503 UF")
            .await
            .contains("UF")
    );

    // subjectAltNames replace the name check: one the certificate lacks is refused,
    // and sni is what the proxy sends.
    let sans = |names: &[&str]| {
        simple(TlsOrigination {
            ca_certificates: Some(ca_file.clone()),
            subject_alt_names: names.iter().map(|n| n.to_string()).collect(),
            sni: Some("edge.example.com".into()),
            ..Default::default()
        })
    };
    let p = sidecar_to(server, sans(&["payments.example.com"]), None).await;
    assert_eq!(
        get(p.outbound(), "http://api.example.com/").await.status,
        503
    );
    let p = sidecar_to(server, sans(&["api.example.com"]), None).await;
    assert_eq!(
        get(p.outbound(), "http://api.example.com/").await.status,
        200
    );
    assert_eq!(snis.lock().unwrap().last().unwrap(), "edge.example.com");

    // insecureSkipVerify trusts any server.
    let p = sidecar_to(
        server,
        simple(TlsOrigination {
            insecure_skip_verify: true,
            ..Default::default()
        }),
        None,
    )
    .await;
    assert_eq!(
        get(p.outbound(), "http://api.example.com/").await.status,
        200
    );
}

#[tokio::test]
async fn mutual_shows_the_client_certificate_from_files_or_a_credential() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("external ca");
    let clients = TestCa::new("client ca");
    let ca_file = write(dir.path(), "ca.pem", &ca.pem);
    let (cert, key) = clients.leaf(&["frontend.prod"]);
    let (server, _) = https_server(
        fresh_ip(),
        ca.leaf(&["api.example.com"]),
        Some(&clients.pem),
    )
    .await;

    // Without a client certificate the server refuses the handshake.
    let p = sidecar_to(
        server,
        simple(TlsOrigination {
            ca_certificates: Some(ca_file.clone()),
            ..Default::default()
        }),
        None,
    )
    .await;
    assert_eq!(
        get(p.outbound(), "http://api.example.com/").await.status,
        503
    );

    let p = sidecar_to(
        server,
        ClusterTls::Mutual(TlsOrigination {
            ca_certificates: Some(ca_file),
            client_certificate: Some(write(dir.path(), "client.pem", &cert)),
            private_key: Some(write(dir.path(), "client-key.pem", &key)),
            ..Default::default()
        }),
        None,
    )
    .await;
    let r = get(p.outbound(), "http://api.example.com/").await;
    assert_eq!(r.status, 200, "{}", r.body);

    // credentialName: a directory of the credentials directory, as a TLS secret.
    let creds = dir.path().join("credentials");
    let secret = creds.join("api-client");
    std::fs::create_dir_all(&secret).unwrap();
    write(&secret, "tls.crt", &cert);
    write(&secret, "tls.key", &key);
    write(&secret, "ca.crt", &ca.pem);
    let p = sidecar_to(
        server,
        ClusterTls::Mutual(TlsOrigination {
            credential_name: Some("api-client".into()),
            ..Default::default()
        }),
        Some(&creds),
    )
    .await;
    assert_eq!(
        get(p.outbound(), "http://api.example.com/").await.status,
        200
    );
}

#[tokio::test]
async fn an_unreadable_certificate_file_rejects_the_config() {
    let ip = fresh_ip();
    let name = "outbound|80||api.example.com";
    let mut c = cluster(
        name,
        Protocol::Http,
        vec![endpoint("127.0.0.1:1".parse().unwrap())],
    );
    c.tls = simple(TlsOrigination {
        ca_certificates: Some("/nonexistent/ca.pem".into()),
        ..Default::default()
    });
    let config = one_service(ip, vec![route("default", vec![], to(name))], vec![c]);
    let p = TestProxy::start(ip).await;
    let err = p.proxy.apply("1", config).unwrap_err().to_string();
    assert!(
        err.contains("cluster outbound|80||api.example.com: tls")
            && err.contains("/nonexistent/ca.pem"),
        "{err}"
    );
}
