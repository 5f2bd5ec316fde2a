//! Mesh identity end to end, as real processes on loopback: `skiff control` with its CA
//! on the TLS xDS port, `skiff proxy` getting its certificate with a bootstrap token,
//! renewing it, and refusing a control plane of another root.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_identity::{BootstrapTokens, SpiffeId};

fn mesh_yaml(net: u8) -> String {
    format!(
        "\
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
  name: backend-v1
  namespace: prod
spec:
  address: 127.0.{net}.11
  serviceAccount: backend
  labels:
    app: backend
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: frontend
  namespace: prod
spec:
  address: 127.0.{net}.12
  serviceAccount: frontend
  labels:
    app: frontend
"
    )
}

/// A child process whose output goes to a file; killed when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `command` with only the given identity environment.
    fn spawn(mut command: Command, log: PathBuf, token: Option<&str>) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        command
            .env("RUST_BACKTRACE", "0")
            .env_remove("SKIFF_BOOTSTRAP_TOKEN")
            .env_remove("SKIFF_BOOTSTRAP_SECRET_FILE");
        if let Some(token) = token {
            command.env("SKIFF_BOOTSTRAP_TOKEN", token);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit; its status, or `None` if it still runs.
    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A control plane with its CA, on 127.0.<net>.1.
struct Control {
    dir: tempfile::TempDir,
    net: u8,
    tokens: BootstrapTokens,
    proc: Proc,
}

impl Control {
    /// With `--bootstrap-secret-file` if `secret`, and `extra` flags.
    fn start(net: u8, secret: bool, extra: &[&str]) -> Control {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::create_dir(&config).unwrap();
        std::fs::write(config.join("mesh.yaml"), mesh_yaml(net)).unwrap();
        let secret_text = "0123456789abcdef0123456789abcdef0123456789abcdef";
        let mut command = Command::new(env!("CARGO_BIN_EXE_skiff"));
        command
            .arg("control")
            .arg("--config")
            .arg(&config)
            .arg("--xds-listen")
            .arg(format!("127.0.{net}.1:15010"))
            .arg("--debug-listen")
            .arg(format!("127.0.{net}.1:15014"))
            .args(extra);
        if !extra.contains(&"--plugin-ca-dir") {
            command.arg("--ca-dir").arg(dir.path().join("ca"));
        }
        if secret {
            // With the newline `echo` leaves: it is not part of the secret.
            std::fs::write(dir.path().join("secret"), format!("{secret_text}\n")).unwrap();
            command
                .arg("--bootstrap-secret-file")
                .arg(dir.path().join("secret"));
        }
        let proc = Proc::spawn(command, dir.path().join("control.log"), None);
        let control = Control {
            tokens: BootstrapTokens::new(secret_text.as_bytes()).unwrap(),
            dir,
            net,
            proc,
        };
        control.wait_for(
            "the control plane to be ready",
            Duration::from_secs(30),
            || http_get(control.debug(), "/ready").is_some_and(|(status, _)| status == 200),
        );
        control
    }

    fn xds(&self) -> String {
        format!("127.0.{}.1:15010", self.net)
    }

    fn debug(&self) -> SocketAddr {
        format!("127.0.{}.1:15014", self.net).parse().unwrap()
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("ca/root-cert.pem")
    }

    fn token(&self, service_account: &str) -> String {
        self.tokens
            .token_for(&SpiffeId::new("cluster.local", "prod", service_account).unwrap())
    }

    /// `skiff proxy --id <id>` on 127.0.<net>.<host>, with `token` in its environment.
    fn proxy(&self, id: &str, host: u8, token: &str, extra: &[&str]) -> Proc {
        let mut command = Command::new(env!("CARGO_BIN_EXE_skiff"));
        command
            .arg("proxy")
            .arg("--id")
            .arg(id)
            .arg("--control")
            .arg(self.xds())
            .arg("--address")
            .arg(format!("127.0.{}.{host}", self.net))
            .arg("--access-log")
            .arg("off")
            .args(extra);
        let log = self.dir.path().join(format!("{id}.{host}.log"));
        Proc::spawn(command, log, Some(token))
    }

    fn proxy_status(&self) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["proxy-status", "--control"])
            .arg(self.debug().to_string())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the control plane logged:\n{}",
                self.proc.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `GET path` on `addr`: status and body.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: skiff\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.get(9..12)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

fn admin(net: u8, host: u8) -> SocketAddr {
    format!("127.0.{net}.{host}:15000").parse().unwrap()
}

fn ready(net: u8, host: u8) -> bool {
    http_get(admin(net, host), "/ready").is_some_and(|(status, _)| status == 200)
}

fn synced(status: &str, name: &str) -> bool {
    status
        .lines()
        .any(|l| l.starts_with(name) && l.contains("SYNCED"))
}

#[test]
fn a_proxy_gets_its_certificate_and_its_config_over_tls() {
    let control = Control::start(61, true, &[]);
    assert!(control.root().is_file(), "no {}", control.root().display());
    let mut proxy = control.proxy(
        "frontend.prod",
        12,
        &control.token("frontend"),
        &["--ca-root", control.root().to_str().unwrap()],
    );
    control.wait_for("the proxy to be ready", Duration::from_secs(30), || {
        assert!(proxy.running(), "the proxy exited:\n{}", proxy.log());
        ready(61, 12)
    });
    let log = proxy.log();
    assert!(
        log.contains("got the workload certificate id=spiffe://cluster.local/ns/prod/sa/frontend"),
        "{log}"
    );
    control.wait_for(
        "proxy-status to show SYNCED",
        Duration::from_secs(20),
        || synced(&control.proxy_status(), "frontend"),
    );
}

#[test]
fn the_ca_refuses_a_token_of_another_identity_and_serves_the_next_proxy() {
    let control = Control::start(62, true, &[]);
    let root = control.root();
    let root = root.to_str().unwrap();
    // backend-v1's proxy, holding frontend's token.
    let mut wrong = control.proxy(
        "backend-v1.prod",
        11,
        &control.token("frontend"),
        &["--ca-root", root, "--service-account", "backend"],
    );
    let status = wrong
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the proxy kept running:\n{}", wrong.log()));
    assert!(!status.success());
    let log = wrong.log();
    assert!(
        log.contains("CSR asks for spiffe://cluster.local/ns/prod/sa/backend but the caller is spiffe://cluster.local/ns/prod/sa/frontend"),
        "{log}"
    );
    assert!(log.contains("PermissionDenied"), "{log}");
    assert!(!ready(62, 11));

    // Nothing else is disturbed: the control plane serves, and the right proxy gets
    // its certificate and config.
    let mut right = control.proxy(
        "backend-v1.prod",
        11,
        &control.token("backend"),
        &["--ca-root", root],
    );
    control.wait_for(
        "the right proxy to be ready",
        Duration::from_secs(30),
        || {
            assert!(right.running(), "the proxy exited:\n{}", right.log());
            ready(62, 11)
        },
    );
    control.wait_for(
        "proxy-status to show SYNCED",
        Duration::from_secs(20),
        || synced(&control.proxy_status(), "backend-v1"),
    );
}

#[test]
fn a_proxy_with_a_foreign_root_does_not_connect_and_says_why() {
    let control = Control::start(63, true, &[]);
    let other = tempfile::tempdir().unwrap();
    skiff_identity::Ca::load_or_create(other.path(), "cluster.local").unwrap();
    let other_root = other.path().join("root-cert.pem");
    let mut proxy = control.proxy(
        "frontend.prod",
        12,
        &control.token("frontend"),
        &["--ca-root", other_root.to_str().unwrap()],
    );
    let status = proxy
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the proxy kept running:\n{}", proxy.log()));
    assert!(!status.success());
    let log = proxy.log();
    assert!(
        log.contains(&format!("control plane at {}", control.xds())),
        "{log}"
    );
    assert!(log.contains("from an unknown root"), "{log}");
    assert!(log.contains("is --ca-root the mesh root?"), "{log}");
    assert!(!synced(&control.proxy_status(), "frontend"));
}

#[test]
fn a_proxy_renews_its_certificate_while_it_serves() {
    let control = Control::start(64, true, &["--cert-ttl", "4s"]);
    let mut proxy = control.proxy(
        "frontend.prod",
        12,
        &control.token("frontend"),
        &["--ca-root", control.root().to_str().unwrap()],
    );
    control.wait_for("the proxy to be ready", Duration::from_secs(30), || {
        assert!(proxy.running(), "the proxy exited:\n{}", proxy.log());
        ready(64, 12)
    });
    let serials = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("the workload certificate"))
            .filter_map(|l| l.split("serial=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    };
    // The first certificate and at least two renewals (4 s certificates, renewed at
    // about 2 s), each a new certificate.
    control.wait_for("two renewals", Duration::from_secs(20), || {
        assert!(proxy.running(), "the proxy exited:\n{}", proxy.log());
        serials(&proxy.log()).len() >= 3
    });
    let log = proxy.log();
    let seen = serials(&log);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a serial came back: {log}");
    assert!(log.contains("renewed the workload certificate"), "{log}");
    assert!(!log.contains("cannot renew"), "{log}");
    // `/certs` shows the certificate in service: frontend's, and a new one over time.
    let certs = || -> serde_json::Value {
        let (status, body) = http_get(admin(64, 12), "/certs").unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let first = certs();
    let cert = &first["certificates"][0];
    assert_eq!(
        cert["spiffeId"], "spiffe://cluster.local/ns/prod/sa/frontend",
        "{first}"
    );
    assert_eq!(first["trustBundleRoots"], 1, "{first}");
    let mut later = certs();
    control.wait_for(
        "/certs to show a renewed certificate",
        Duration::from_secs(10),
        || {
            later = certs();
            later["certificates"][0]["serialNumber"] != cert["serialNumber"]
        },
    );
    let renewed = &later["certificates"][0];
    assert!(
        renewed["notAfter"].as_str().unwrap() > cert["notAfter"].as_str().unwrap(),
        "{first} then {later}"
    );
    assert!(
        seen.iter()
            .any(|s| s == cert["serialNumber"].as_str().unwrap()),
        "{first} {seen:?}"
    );

    // Serving all along: still ready, and the xDS stream still SYNCED.
    assert!(ready(64, 12));
    assert!(synced(&control.proxy_status(), "frontend"));
    assert!(proxy.running());
}

#[test]
fn a_control_plane_without_a_secret_signs_no_first_certificate() {
    let control = Control::start(65, false, &[]);
    let mut proxy = control.proxy(
        "frontend.prod",
        12,
        &control.token("frontend"),
        &["--ca-root", control.root().to_str().unwrap()],
    );
    let status = proxy
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the proxy kept running:\n{}", proxy.log()));
    assert!(!status.success());
    let log = proxy.log();
    assert!(log.contains("Unauthenticated"), "{log}");
    assert!(log.contains("no mesh certificate shown"), "{log}");
}

#[test]
fn a_proxy_without_ca_root_or_token_says_what_it_needs() {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "proxy",
            "--id",
            "frontend.prod",
            "--control",
            "127.0.67.1:15010",
        ])
        .args(["--address", "127.0.67.12"])
        .env_remove("SKIFF_BOOTSTRAP_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs --ca-root FILE"), "{err}");

    let root = tempfile::tempdir().unwrap();
    skiff_identity::Ca::load_or_create(root.path(), "cluster.local").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "proxy",
            "--id",
            "frontend.prod",
            "--control",
            "127.0.67.1:15010",
        ])
        .args(["--address", "127.0.67.12", "--ca-root"])
        .arg(root.path().join("root-cert.pem"))
        .env_remove("SKIFF_BOOTSTRAP_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs a bootstrap token"), "{err}");
}

/// Istio's plug-in CA files in `dir`: a root, an intermediate signed by it (the
/// signing CA), and the chain.
fn write_plugin_ca(dir: &std::path::Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
    };
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca("operator root");
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let signing_key = KeyPair::generate().unwrap();
    let signing = ca("operator intermediate")
        .signed_by(&signing_key, &root_issuer)
        .unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    write("ca-cert.pem", &signing.pem());
    write("ca-key.pem", &signing_key.serialize_pem());
    write("root-cert.pem", &root.pem());
    write(
        "cert-chain.pem",
        &format!("{}{}", signing.pem(), root.pem()),
    );
}

#[test]
fn istio_plug_in_ca_files_sign_the_workload_certificates() {
    let plugin = tempfile::tempdir().unwrap();
    write_plugin_ca(plugin.path());
    let plugin_dir = plugin.path().to_str().unwrap();
    let control = Control::start(68, true, &["--plugin-ca-dir", plugin_dir]);
    let root = plugin.path().join("root-cert.pem");
    let mut proxy = control.proxy(
        "frontend.prod",
        12,
        &control.token("frontend"),
        &["--ca-root", root.to_str().unwrap()],
    );
    control.wait_for("the proxy to be ready", Duration::from_secs(30), || {
        assert!(proxy.running(), "the proxy exited:\n{}", proxy.log());
        ready(68, 12)
    });
    let (_, body) = http_get(admin(68, 12), "/certs").unwrap();
    let certs: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Leaf, the operator's intermediate, its root.
    assert_eq!(certs["certificates"][0]["chainLength"], 3, "{certs}");
    assert!(
        !control.dir.path().join("ca").exists(),
        "a self-signed CA was made"
    );
}
