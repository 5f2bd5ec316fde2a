//! `skiff proxy --config-file` with a mesh identity from files (`--cert-file`,
//! `--key-file`, `--ca-root`): two such proxies talk mutual TLS, the server side's port
//! STRICT; without the client's certificate files the same request is refused. What
//! `bench/run`'s `skiff-mtls` target relies on.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

const CLIENT_ID: &str = "spiffe://cluster.local/ns/bench/sa/bench-client";
const SERVER_ID: &str = "spiffe://cluster.local/ns/bench/sa/backend";

/// A loopback address of this test process only (`last` tells the proxies apart).
fn own_ip(last: u8) -> IpAddr {
    let pid = std::process::id();
    IpAddr::V4(Ipv4Addr::new(
        127,
        60 + (pid % 150) as u8,
        (pid / 150 % 250) as u8,
        last,
    ))
}

/// A backend that answers with the `x-forwarded-client-cert` header it got (or `none`).
fn backend(ip: IpAddr) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut xfcc = "none".to_owned();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("x-forwarded-client-cert")
                        {
                            xfcc = value.trim().to_owned();
                        }
                    }
                    let body = format!("xfcc: {xfcc}");
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
        }
    });
    addr
}

fn request(to: SocketAddr, head: &str) -> String {
    let mut s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "{head}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn wait_for(what: &str, child: &mut Child, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the proxy exited ({status}) while waiting for {what}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The test PKI, written to `dir`: root-cert.pem, and `<name>-cert.pem` /
/// `<name>-key.pem` (PKCS#8) for the client and the server side.
fn write_pki(dir: &Path) {
    let root_key = KeyPair::generate().unwrap();
    let mut root_params = CertificateParams::default();
    root_params
        .distinguished_name
        .push(DnType::CommonName, "test root");
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root = root_params.self_signed(&root_key).unwrap();
    std::fs::write(dir.join("root-cert.pem"), root.pem()).unwrap();
    let issuer = Issuer::new(root_params, root_key);
    for (name, id) in [("client", CLIENT_ID), ("server", SERVER_ID)] {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}-cert.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }
}

fn server_config(ip: IpAddr, app: SocketAddr) -> String {
    format!(
        r#"{{
  "node": {{"id": "backend.bench", "name": "backend", "namespace": "bench", "kind": "sidecar",
            "address": "{ip}", "labels": {{}}, "serviceAccount": "backend", "spiffeId": "{SERVER_ID}"}},
  "outbound": [], "gateway": [], "clusters": [],
  "inbound": [{{"targetPort": {port}, "protocol": "HTTP", "services": ["backend.bench.svc.cluster.local:80"],
                "mtls": "STRICT"}}]
}}"#,
        port = app.port()
    )
}

fn client_config(ip: IpAddr, app: SocketAddr) -> String {
    format!(
        r#"{{
  "node": {{"id": "bench-client.bench", "name": "bench-client", "namespace": "bench", "kind": "sidecar",
            "address": "{ip}", "labels": {{}}, "serviceAccount": "bench-client", "spiffeId": "{CLIENT_ID}"}},
  "outbound": [{{"port": 80, "protocol": "HTTP", "tcp": [], "virtualHosts": [
    {{"name": "backend.bench.svc.cluster.local:80", "domains": ["backend.bench"],
      "routes": [{{"name": "default", "matches": [],
        "action": {{"forward": {{"destinations": [{{"cluster": "outbound|80||backend.bench.svc.cluster.local", "weight": 100}}]}}}}}}]}}]}}],
  "inbound": [], "gateway": [],
  "clusters": [{{"name": "outbound|80||backend.bench.svc.cluster.local",
    "service": "backend.bench.svc.cluster.local", "port": 80, "protocol": "HTTP",
    "lb": "ROUND_ROBIN", "connectTimeout": 1000,
    "endpoints": [{{"address": "{app}", "proxyPort": 15006, "workload": "backend.bench", "weight": 1,
                    "spiffeId": "{SERVER_ID}", "sidecar": true, "mtls": true}}]}}]
}}"#
    )
}

/// `skiff proxy --config-file <dir>/<name>.json`, with the identity files of `name` when
/// `tls`; its stderr goes to `<dir>/<name>.err`.
fn proxy(dir: &Path, name: &str, id: &str, ip: IpAddr, tls: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
    cmd.args(["proxy", "--id", id, "--config-file"])
        .arg(dir.join(format!("{name}.json")))
        .args(["--address", &ip.to_string(), "--concurrency", "1"])
        .args(["--access-log", "off"]);
    if tls {
        cmd.arg("--cert-file")
            .arg(dir.join(format!("{name}-cert.pem")))
            .arg("--key-file")
            .arg(dir.join(format!("{name}-key.pem")))
            .arg("--ca-root")
            .arg(dir.join("root-cert.pem"));
    }
    let err = std::fs::File::create(dir.join(format!("{name}.err"))).unwrap();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("skiff runs");
    let admin = SocketAddr::new(ip, 15000);
    wait_for(&format!("{name} readiness"), &mut child, || {
        TcpStream::connect(admin).is_ok()
            && request(admin, "GET /ready HTTP/1.1\r\nHost: admin").starts_with("HTTP/1.1 200")
    });
    child
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn two_proxies_with_identities_from_files_talk_mutual_tls() {
    let (server_ip, client_ip) = (own_ip(21), own_ip(22));
    let app = backend(server_ip);
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());
    std::fs::write(
        dir.path().join("server.json"),
        server_config(server_ip, app),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("client.json"),
        client_config(client_ip, app),
    )
    .unwrap();

    let _server = Kill(proxy(
        dir.path(),
        "server",
        "backend.bench",
        server_ip,
        true,
    ));
    let outbound = SocketAddr::new(client_ip, 15001);
    let get = "GET /hello HTTP/1.1\r\nHost: backend.bench";
    {
        let _client = Kill(proxy(
            dir.path(),
            "client",
            "bench-client.bench",
            client_ip,
            true,
        ));
        let started = std::fs::read_to_string(dir.path().join("client.err")).unwrap();
        assert!(
            started.contains(&format!("mesh identity {CLIENT_ID}")),
            "the identity is printed at start: {started}"
        );
        let resp = request(outbound, get);
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        // The server side saw the client's certificate: it names it to the app.
        assert!(
            resp.ends_with(&format!("xfcc: By={SERVER_ID};URI={CLIENT_ID}")),
            "{resp}"
        );
    }

    // The same client config without the certificate files: the endpoint is reached
    // in plain text, and the STRICT port refuses it.
    let _client = Kill(proxy(
        dir.path(),
        "client",
        "bench-client.bench",
        client_ip,
        false,
    ));
    let resp = request(outbound, get);
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
}

#[test]
fn identity_files_go_together() {
    let dir = tempfile::tempdir().unwrap();
    write_pki(dir.path());
    let ip = own_ip(23);
    std::fs::write(
        dir.path().join("client.json"),
        client_config(ip, SocketAddr::new(ip, 9)),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["proxy", "--id", "bench-client.bench", "--config-file"])
        .arg(dir.path().join("client.json"))
        .args(["--address", &ip.to_string()])
        .arg("--cert-file")
        .arg(dir.path().join("client-cert.pem"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing: --key-file, --ca-root"), "{err}");

    // A key that is not the certificate's.
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["proxy", "--id", "bench-client.bench", "--config-file"])
        .arg(dir.path().join("client.json"))
        .args(["--address", &ip.to_string()])
        .arg("--cert-file")
        .arg(dir.path().join("client-cert.pem"))
        .arg("--key-file")
        .arg(dir.path().join("server-key.pem"))
        .arg("--ca-root")
        .arg(dir.path().join("root-cert.pem"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another key"), "{err}");
}
