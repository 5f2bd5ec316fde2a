//! A whole mesh for end-to-end tests: `skiff up` on a private copy of
//! `examples/canary`, moved to its own loopback range so tests can run side by side.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the harness"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The skiff binary under test.
pub(crate) fn skiff() -> &'static str {
    env!("CARGO_BIN_EXE_skiff")
}

/// A running `skiff up`.
pub(crate) struct Mesh {
    /// The configuration directory (a copy of the example).
    pub(crate) dir: tempfile::TempDir,
    /// `127.0.<net>.x` is this mesh's range.
    pub(crate) net: u8,
    up: Option<Child>,
    log: PathBuf,
}

impl Mesh {
    /// Copies `examples/canary` to a temporary directory, moves its addresses from
    /// 127.0.10.x to 127.0.<net>.x, and starts `skiff up` on it with the control plane
    /// and gateway on 127.0.<net>.1. Returns once the gateway answers.
    pub(crate) fn start(net: u8) -> Mesh {
        Mesh::start_with(net, &[])
    }

    /// As [`Mesh::start`], with extra files (name, YAML) added to the directory; their
    /// `127.0.10.` addresses are moved too.
    pub(crate) fn start_with(net: u8, extra: &[(&str, &str)]) -> Mesh {
        Mesh::start_example("canary", net, extra, &[])
    }

    /// As [`Mesh::start_with`], on another example of `examples/` (its `127.0.10.`
    /// and `127.0.20.` addresses moved), with extra arguments to `skiff up`.
    pub(crate) fn start_example(
        example: &str,
        net: u8,
        extra: &[(&str, &str)],
        args: &[&str],
    ) -> Mesh {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in extra {
            let text = text.replace("127.0.10.", &format!("127.0.{net}."));
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let example = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(example);
        for entry in std::fs::read_dir(&example).unwrap() {
            let path = entry.unwrap().path();
            // Only the YAML: a local run of the example leaves its state in `.skiff/`.
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text
                .replace("127.0.10.", &format!("127.0.{net}."))
                .replace("127.0.20.", &format!("127.0.{net}."));
            std::fs::write(dir.path().join(path.file_name().unwrap()), text).unwrap();
        }
        let log = dir.path().with_extension("log");
        let out = std::fs::File::create(&log).unwrap();
        let up = Command::new(skiff())
            .arg("up")
            .arg(dir.path())
            .arg("--control-address")
            .arg(format!("127.0.{net}.1"))
            .arg("--gateway-address")
            .arg(format!("127.0.{net}.1"))
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mesh = Mesh {
            dir,
            net,
            up: Some(up),
            log,
        };
        mesh.wait_for("the summary of skiff up", Duration::from_secs(90), || {
            std::fs::read_to_string(&mesh.log)
                .map(|l| l.contains("Ctrl-C stops everything"))
                .unwrap_or(false)
        });
        mesh
    }

    /// Address of the gateway's port 80 (served on 8080).
    pub(crate) fn gateway(&self) -> SocketAddr {
        format!("127.0.{}.1:8080", self.net).parse().unwrap()
    }

    /// Address of the control plane's debug endpoint.
    pub(crate) fn control_debug(&self) -> SocketAddr {
        format!("127.0.{}.1:15014", self.net).parse().unwrap()
    }

    /// Address of a workload's loopback address (e.g. 10 for the frontend).
    pub(crate) fn workload(&self, host: u8) -> std::net::IpAddr {
        format!("127.0.{}.{host}", self.net).parse().unwrap()
    }

    /// What `skiff up` printed so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `done` every 50 ms until it holds; panics with the log after `timeout`.
    pub(crate) fn wait_for(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting for {what}; skiff up printed:\n{}",
            self.log()
        );
    }

    /// Process id of `skiff up`.
    pub(crate) fn pid(&self) -> u32 {
        self.up.as_ref().unwrap().id()
    }

    /// Sends SIGINT (Ctrl-C) to `skiff up` and waits for it to exit.
    pub(crate) fn interrupt(&mut self) -> std::process::ExitStatus {
        let mut up = self.up.take().unwrap();
        signal(up.id(), "INT");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = up.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "skiff up did not stop; it printed:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills `skiff up` with SIGKILL (no chance to stop its children) and reaps it.
    pub(crate) fn kill(&mut self) {
        let mut up = self.up.take().unwrap();
        signal(up.id(), "KILL");
        let _ = up.wait();
    }

    /// Processes (other than `skiff up` itself) whose command line mentions this
    /// mesh's addresses or directory, or that run in the directory (apps do): what
    /// would be left behind.
    pub(crate) fn processes(&self) -> Vec<(u32, String)> {
        let marker_net = format!("127.0.{}.", self.net);
        let marker_dir = self.dir.path().to_string_lossy().into_owned();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(" up ") {
                continue;
            }
            let in_dir = std::fs::read_link(entry.path().join("cwd"))
                .is_ok_and(|cwd| cwd == self.dir.path());
            if in_dir || cmdline.contains(&marker_net) || cmdline.contains(&marker_dir) {
                found.push((pid, cmdline));
            }
        }
        found
    }

    /// The pid of the control plane child.
    pub(crate) fn control_pid(&self) -> Option<u32> {
        self.processes()
            .into_iter()
            .find(|(_, cmd)| cmd.contains(" control "))
            .map(|(pid, _)| pid)
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if let Some(mut up) = self.up.take() {
            signal(up.id(), "INT");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if up.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = up.kill();
            let _ = up.wait();
        }
        for (pid, _) in self.processes() {
            signal(pid, "KILL");
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Sends a signal with kill(1), so the tests need no unsafe code.
pub(crate) fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// An HTTP/1.1 client with keep-alive.
pub(crate) fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http()
}

/// An HTTP/2 (prior knowledge, h2c) client.
pub(crate) fn h2_client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// GET `http://addr/` with extra headers; returns status and body.
pub(crate) async fn get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let mut request = http::Request::get(format!("http://{addr}/"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(Empty::new()).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The backend version in a frontend answer: the `Version:` line after `Target:`.
pub(crate) fn backend_version(body: &str) -> Option<&str> {
    let (_, after) = body.split_once("Target:")?;
    after
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))
        .map(str::trim)
}

/// Continuous load against the gateway from `workers` tasks until stopped: counts
/// successes, failures (with the first few reasons) and answers per backend version.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    pub(crate) ok: Arc<AtomicU64>,
    pub(crate) failed: Arc<AtomicU64>,
    pub(crate) v2: Arc<AtomicU64>,
    pub(crate) errors: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the load.
    pub(crate) fn start(addr: SocketAddr, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let v2 = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = (0..workers)
            .map(|_| {
                let (stop, ok, failed, v2, errors) = (
                    stop.clone(),
                    ok.clone(),
                    failed.clone(),
                    v2.clone(),
                    errors.clone(),
                );
                tokio::spawn(async move {
                    let client = client();
                    while !stop.load(Ordering::Relaxed) {
                        match get(&client, addr, &[]).await {
                            Ok((200, body)) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                if backend_version(&body) == Some("2.0.0") {
                                    v2.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            other => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                let mut errors = errors.lock().unwrap();
                                if errors.len() < 10 {
                                    errors.push(format!("{other:?}"));
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            v2,
            errors,
            tasks,
        }
    }

    /// Successful requests so far.
    pub(crate) fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the load; returns (ok, failed, first errors).
    pub(crate) async fn stop(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let errors = self.errors.lock().unwrap().clone();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
        )
    }
}

/// GET on a debug or admin endpoint; the body as text.
pub(crate) async fn get_path(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let client = client();
    let request = http::Request::get(format!("http://{addr}{path}"))
        .body(Empty::new())
        .unwrap();
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
