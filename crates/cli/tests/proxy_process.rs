//! `skiff proxy --config-file` as a process: it serves the file's config, picks up a
//! changed file, and drains and exits on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback address of this test process only, so fixed ports do not clash.
fn own_ip() -> IpAddr {
    let pid = std::process::id();
    IpAddr::V4(Ipv4Addr::new(
        127,
        60 + (pid % 150) as u8,
        (pid / 150 % 250) as u8,
        7,
    ))
}

/// A backend that answers every request with `hello from the app`.
fn backend(ip: IpAddr) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    // Read one request head (no bodies in this test).
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let body = "hello from the app";
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

/// One request, `Connection: close`; returns the whole response.
fn request(to: SocketAddr, head: &str) -> String {
    let mut s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "{head}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn config(ip: IpAddr, backend: SocketAddr, direct: bool) -> String {
    let action = if direct {
        r#"{"directResponse": {"status": 503, "body": "maintenance"}}"#.to_owned()
    } else {
        r#"{"forward": {"destinations": [{"cluster": "outbound|80||backend.prod.svc.cluster.local", "weight": 100}]}}"#.to_owned()
    };
    format!(
        r#"{{
  "node": {{"id": "frontend.prod", "name": "frontend", "namespace": "prod", "kind": "sidecar",
            "address": "{ip}", "labels": {{}}, "serviceAccount": "default", "spiffeId": ""}},
  "outbound": [{{"port": 80, "protocol": "HTTP", "tcp": [], "virtualHosts": [
    {{"name": "backend.prod.svc.cluster.local:80", "domains": ["backend", "backend:80"],
      "routes": [{{"name": "default", "matches": [], "action": {action}}}]}}]}}],
  "inbound": [], "gateway": [],
  "clusters": [{{"name": "outbound|80||backend.prod.svc.cluster.local",
    "service": "backend.prod.svc.cluster.local", "port": 80, "protocol": "HTTP",
    "lb": "ROUND_ROBIN", "connectTimeout": 1000,
    "endpoints": [{{"address": "{backend}", "workload": "backend-v1.prod", "weight": 1}}]}}]
}}"#
    )
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serves_a_config_file_reloads_it_and_drains_on_sigterm() {
    let ip = own_ip();
    let app = backend(ip);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("frontend.json");
    std::fs::write(&file, config(ip, app, false)).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["proxy", "--id", "frontend.prod", "--config-file"])
        .arg(&file)
        .args(["--address", &ip.to_string(), "--concurrency", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("skiff runs");
    let admin = SocketAddr::new(ip, 15000);
    let outbound = SocketAddr::new(ip, 15001);
    wait_for("readiness", || {
        TcpStream::connect(admin).is_ok()
            && request(admin, "GET /ready HTTP/1.1\r\nHost: admin").starts_with("HTTP/1.1 200")
    });

    // Access-log lines, as they come.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });

    let resp = request(
        outbound,
        "GET http://backend/hello HTTP/1.1\r\nHost: backend",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("hello from the app"), "{resp}");
    // The line shows while the proxy runs (lines are written in batches, within 50 ms).
    let first = lines
        .recv_timeout(Duration::from_secs(5))
        .expect("an access-log line");
    assert!(
        first.contains("\"GET /hello HTTP/1.1\" 200 - 0 18 "),
        "{first}"
    );
    assert!(
        first.ends_with("\"backend\" default outbound|80||backend.prod.svc.cluster.local"),
        "{first}"
    );

    // A changed file is applied (the watcher polls every second).
    std::fs::write(&file, config(ip, app, true)).unwrap();
    wait_for("the new config", || {
        request(outbound, "GET http://backend/ HTTP/1.1\r\nHost: backend").ends_with("maintenance")
    });
    let dump = request(admin, "GET /config_dump HTTP/1.1\r\nHost: admin");
    assert!(dump.contains("\"maintenance\""), "{dump}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "proxy did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    reader.join().unwrap();
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(rest.iter().any(|l| l.contains(" 503 - ")), "{rest:?}");
}

/// A proxy that runs out of file descriptors (a flood of connections) keeps running
/// under `skiff up`: its check that the supervisor still runs cannot read `/proc` then,
/// and not knowing must not be taken for "skiff up is gone". This test process stands in
/// for `skiff up` (its pid in `SKIFF_UP_PID`); the proxy gets a limit of 64 descriptors.
#[test]
fn a_proxy_out_of_file_descriptors_keeps_running() {
    let ip = {
        let IpAddr::V4(v4) = own_ip() else {
            unreachable!()
        };
        let [a, b, c, _] = v4.octets();
        IpAddr::V4(Ipv4Addr::new(a, b, c, 8))
    };
    let app = backend(ip);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("frontend.json");
    std::fs::write(&file, config(ip, app, false)).unwrap();
    let script = format!(
        "ulimit -n 64 && exec '{}' proxy --id frontend.prod --config-file '{}' --address {ip} --concurrency 1 --max-downstream-connections 1000",
        env!("CARGO_BIN_EXE_skiff"),
        file.display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .env("SKIFF_UP_PID", std::process::id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("skiff runs");
    let admin = SocketAddr::new(ip, 15000);
    let outbound = SocketAddr::new(ip, 15001);
    wait_for("readiness", || {
        TcpStream::connect(admin).is_ok()
            && request(admin, "GET /ready HTTP/1.1\r\nHost: admin").starts_with("HTTP/1.1 200")
    });

    // Hold more connections than the proxy has descriptors, for longer than the
    // supervisor check's period (1 s), so several checks run while it has none left.
    let flood: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(outbound).ok())
        .collect();
    assert!(flood.len() > 64, "only {} connections opened", flood.len());
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the proxy stopped itself while out of file descriptors"
    );
    drop(flood);

    // Once the flood is gone it serves again, with no restart.
    wait_for("service after the flood", || {
        request(outbound, "GET http://backend/ HTTP/1.1\r\nHost: backend")
            .ends_with("hello from the app")
    });
    assert!(child.try_wait().unwrap().is_none());
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs a proxy with `SKIFF_LOG=info`, sets its level through the admin endpoint when
/// `level` is given (checking what `/logging` reads back), stops it with SIGTERM and
/// returns what it logged on stderr.
fn logged_with_level(level: Option<&str>) -> String {
    // An address of its own (the other tests of this file use .7 and .8).
    let ip = {
        let IpAddr::V4(v4) = own_ip() else {
            unreachable!()
        };
        let [a, b, c, _] = v4.octets();
        IpAddr::V4(Ipv4Addr::new(a, b, c, 9))
    };
    let app = backend(ip);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("frontend.json");
    std::fs::write(&file, config(ip, app, false)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["proxy", "--id", "frontend.prod", "--config-file"])
        .arg(&file)
        .args(["--address", &ip.to_string(), "--concurrency", "1"])
        .env("SKIFF_LOG", "info")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("skiff runs");
    let admin = SocketAddr::new(ip, 15000);
    wait_for("readiness", || {
        TcpStream::connect(admin).is_ok()
            && request(admin, "GET /ready HTTP/1.1\r\nHost: admin").starts_with("HTTP/1.1 200")
    });
    let now = request(admin, "GET /logging HTTP/1.1\r\nHost: admin");
    assert!(now.contains("\"level\": \"info\""), "{now}");
    if let Some(level) = level {
        let bad = request(admin, "POST /logging?level=loud HTTP/1.1\r\nHost: admin");
        assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
        let set = request(
            admin,
            &format!("POST /logging?level={level} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0"),
        );
        assert!(set.starts_with("HTTP/1.1 200"), "{set}");
        let now = request(admin, "GET /logging HTTP/1.1\r\nHost: admin");
        assert!(now.contains(&format!("\"level\": \"{level}\"")), "{now}");
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(child.wait().unwrap().success());
    stderr
}

#[test]
fn the_log_level_changes_while_the_proxy_runs() {
    // At `info`, closing the listeners on SIGTERM logs nothing at debug level ...
    let quiet = logged_with_level(None);
    assert!(!quiet.contains("listener closed"), "{quiet}");
    // ... and after `POST /logging?level=debug` it does.
    let loud = logged_with_level(Some("debug"));
    assert!(loud.contains("listener closed"), "{loud}");
    assert!(
        loud.contains("log level changed through the admin endpoint"),
        "{loud}"
    );
}
