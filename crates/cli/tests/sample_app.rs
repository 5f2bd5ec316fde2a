//! `skiff sample-app` as a real process on loopback: the greeting, calling a target
//! directly and through an HTTP proxy, header forwarding, and the 502 on failure.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// A running sample app, killed when dropped.
struct App {
    child: Child,
    addr: SocketAddr,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `skiff sample-app` on a free loopback port with these extra arguments and
/// environment, and waits until it prints the address it listens on.
fn start(args: &[&str], env: &[(&str, &str)]) -> App {
    let mut command = Command::new(env!("CARGO_BIN_EXE_skiff"));
    command
        .args(["sample-app", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("spawn skiff sample-app");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    let line = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            panic!("sample-app did not report its address in time");
        }
    };
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .parse()
        .unwrap();
    App { child, addr }
}

/// One GET over a fresh connection; returns (status, headers, body).
fn get(addr: SocketAddr, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

/// A one-shot HTTP server standing in for an HTTP proxy: it records the request head it
/// receives and answers with `status` and `body`.
fn fake_proxy(status: &'static str, body: &'static str) -> (SocketAddr, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let mut stream = reader.into_inner();
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(answer.as_bytes()).unwrap();
        let _ = tx.send(head);
        // Hold the connection open a moment so the client reads the answer first.
        thread::sleep(Duration::from_millis(200));
    });
    (addr, rx)
}

#[test]
fn greets_like_hello_app() {
    let app = start(&["--version", "1.0.0", "--name", "backend-v1"], &[]);
    let (status, head, body) = get(app.addr, &[]);
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    assert_eq!(
        body,
        "Hello, world!\nVersion: 1.0.0\nHostname: backend-v1\n"
    );
}

#[test]
fn calls_its_target_directly_and_indents_the_answer() {
    let backend = start(&["--version", "1.0.0", "--name", "backend-v1"], &[]);
    let target = format!("http://{}/", backend.addr);
    let frontend = start(
        &[
            "--version",
            "2.0.0",
            "--name",
            "frontend",
            "--target",
            &target,
        ],
        &[],
    );
    // Twice: the second call reuses the pooled connection.
    for _ in 0..2 {
        let (status, _, body) = get(frontend.addr, &[]);
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body,
            format!(
                "Hello, world!\nVersion: 2.0.0\nHostname: frontend\nTarget: {target}\n  Hello, world!\n  Version: 1.0.0\n  Hostname: backend-v1\n"
            )
        );
    }
}

#[test]
fn goes_through_the_http_proxy_and_forwards_routing_headers() {
    let (proxy, heads) = fake_proxy("200 OK", "from the proxy\n");
    let proxy_url = format!("http://{proxy}");
    let frontend = start(
        &[
            "--name",
            "frontend",
            "--target",
            "backend.prod.svc.cluster.local:8080",
        ],
        &[("http_proxy", &proxy_url)],
    );
    let (status, _, body) = get(
        frontend.addr,
        &[
            ("x-canary", "true"),
            ("x-request-id", "req-42"),
            ("x-private", "not for the target"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.ends_with("Target: http://backend.prod.svc.cluster.local:8080/\n  from the proxy\n"),
        "{body}"
    );
    let head = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    let lower = head.to_ascii_lowercase();
    assert!(
        head.starts_with("GET http://backend.prod.svc.cluster.local:8080/ HTTP/1.1\r\n"),
        "the proxy must get an absolute-form request: {head}"
    );
    assert!(
        lower.contains("host: backend.prod.svc.cluster.local:8080\r\n"),
        "{head}"
    );
    assert!(lower.contains("x-canary: true\r\n"), "{head}");
    assert!(lower.contains("x-request-id: req-42\r\n"), "{head}");
    assert!(!lower.contains("x-private"), "{head}");
}

/// A header-echoing stand-in for a service: answers each request with the names and
/// values of the headers it got, one per line, prefixed with its own name.
fn echo_server(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut body = format!("{name}\n");
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.trim_end().split_once(": ") {
                        body.push_str(&format!("{}={v}\n", k.to_ascii_lowercase()));
                    }
                }
                let mut stream = reader.into_inner();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            });
        }
    });
    addr
}

#[test]
fn calls_every_target_in_order_and_propagates_bookinfo_headers() {
    let details = echo_server("details");
    let reviews = echo_server("reviews");
    let productpage = start(
        &[
            "--name",
            "productpage",
            "--target",
            &format!("http://{details}/details"),
            "--target",
            &format!("http://{reviews}/reviews"),
        ],
        &[],
    );
    let sent = [
        ("end-user", "jason"),
        ("x-request-id", "req-7"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("tracestate", "vendor=1"),
        ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ("x-b3-sampled", "1"),
        ("cookie", "session=abc"),
        ("user-agent", "bookinfo-test/1.0"),
    ];
    let mut headers = sent.to_vec();
    headers.push(("x-private", "stays here"));
    let (status, _, body) = get(productpage.addr, &headers);
    assert_eq!(status, 200, "{body}");
    let d = body
        .find(&format!("Target: http://{details}/details\n  details\n"))
        .expect(&body);
    let r = body
        .find(&format!("Target: http://{reviews}/reviews\n  reviews\n"))
        .expect(&body);
    assert!(d < r, "details is called before reviews: {body}");
    for part in [&body[d..r], &body[r..]] {
        for (name, value) in sent {
            assert!(
                part.contains(&format!("  {name}={value}\n")),
                "{name} not propagated: {part}"
            );
        }
        assert!(!part.contains("x-private"), "{part}");
    }
}

#[test]
fn unreachable_target_is_a_502_with_the_reason() {
    // A port that was free a moment ago: nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let target = format!("http://{closed}/");
    let frontend = start(&["--name", "frontend", "--target", &target], &[]);
    let (status, _, body) = get(frontend.addr, &[]);
    assert_eq!(status, 502, "{body}");
    assert!(body.starts_with("Hello, world!\n"), "{body}");
    assert!(body.contains(&format!("Error: calling {target}")), "{body}");
    assert!(body.contains("connect"), "{body}");
}

#[test]
fn target_error_status_is_a_502_that_names_it() {
    let (proxy, _heads) = fake_proxy("503 Service Unavailable", "no healthy upstream\n");
    let frontend = start(
        &["--name", "frontend", "--target", "http://backend:8080/"],
        &[("HTTP_PROXY", &format!("http://{proxy}"))],
    );
    let (status, _, body) = get(frontend.addr, &[]);
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains(&format!(
            "Error: http://backend:8080/ via proxy {proxy} answered 503 Service Unavailable: no healthy upstream"
        )),
        "{body}"
    );
}

#[test]
fn https_target_is_refused_at_start() {
    let output = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "sample-app",
            "--listen",
            "127.0.0.1:0",
            "--target",
            "https://backend",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not supported"), "{stderr}");
}
