//! The control plane end to end, before the mesh compiler is wired: a test compiler
//! reads each `*.yaml` file of the directory as one proxy's config written in JSON
//! (JSON is YAML), reporting parse errors with file:line like the real loader. The
//! watcher, the reload rules, the push server and the debug endpoint are the real ones.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use skiff_control::{
    Compiled, ConfigCompiler, ConfigStatus, ControlOptions, Finding, Running, Severity,
};
use skiff_model::config::ProxyConfig;
use skiff_xds::{ClientOptions, ConfigUpdate, NodeInfo, SyncRow, SyncStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const PATIENCE: Duration = Duration::from_secs(10);

struct JsonFiles;

impl ConfigCompiler for JsonFiles {
    fn compile(&self, dir: &Path) -> Compiled {
        let mut configs = Vec::new();
        let mut findings = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            match serde_json::from_str::<ProxyConfig>(&text) {
                Ok(c) => configs.push(c.into()),
                Err(e) => findings.push(Finding::new(Severity::Error, e.to_string()).at(
                    file.file_name().unwrap().to_string_lossy(),
                    e.line() as u32,
                    e.column() as u32,
                )),
            }
        }
        Compiled {
            configs: findings.is_empty().then_some(configs),
            unchanged: false,
            endpoints_only: false,
            findings,
        }
    }
}

fn config_json(id: &str, rev: &str) -> String {
    let mut c = ProxyConfig::default();
    c.node.id = id.to_owned();
    let (name, ns) = id.rsplit_once('.').unwrap();
    c.node.name = name.to_owned();
    c.node.namespace = ns.to_owned();
    c.node.labels.insert("rev".into(), rev.into());
    serde_json::to_string_pretty(&c).unwrap()
}

async fn start(dir: &Path) -> Result<Running> {
    let options = ControlOptions {
        xds_listen: "127.0.0.1:0".parse()?,
        debug_listen: "127.0.0.1:0".parse()?,
        ..ControlOptions::new(dir)
    };
    Ok(skiff_control::start(options, JsonFiles).await?)
}

/// A GET over a fresh connection: status and body.
async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut raw = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut raw)).await??;
    let status = raw.split(' ').nth(1).context("status line")?.parse()?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

async fn configz(addr: SocketAddr) -> Result<ConfigStatus> {
    Ok(serde_json::from_str(&get(addr, "/debug/configz").await?.1)?)
}

async fn status_until(
    running: &Running,
    what: &str,
    f: impl Fn(&ConfigStatus) -> bool,
) -> Arc<ConfigStatus> {
    let mut rx = running.plane.subscribe_status();
    let reached = tokio::time::timeout(PATIENCE, rx.wait_for(|s| f(s)))
        .await
        .ok()
        .and_then(|r| r.ok())
        .map(|s| s.clone());
    reached.unwrap_or_else(|| panic!("never reached: {what}; status {:?}", running.plane.status()))
}

#[tokio::test]
async fn valid_config_is_published_invalid_is_reported_and_kept_out_fixed_is_published()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("a.yaml"), config_json("a.prod", "1"))?;
    let running = start(dir.path()).await?;
    let first = running.plane.status();
    assert!(first.ok, "{first:?}");
    assert_eq!(first.serving_generation, 1);
    assert_eq!(running.plane.snapshot().len(), 1);
    assert_eq!(get(running.debug_addr, "/ready").await?.0, 200);

    // A second valid file: a new snapshot.
    std::fs::write(dir.path().join("b.yaml"), config_json("b.prod", "1"))?;
    let s = status_until(&running, "generation 2", |s| s.serving_generation == 2).await;
    assert!(s.ok);
    assert_eq!(running.plane.snapshot().len(), 2);

    // An invalid file: reported with file:line, snapshot unchanged.
    let before = running.plane.snapshot();
    std::fs::write(
        dir.path().join("b.yaml"),
        "{\n  \"node\": {\n    \"id\": \"b.prod\",\n    \"bogus\": 1,\n",
    )?;
    let s = status_until(&running, "an error", |s| !s.ok).await;
    assert_eq!(s.serving_generation, 2);
    let error = &s.errors[0];
    assert_eq!(error.file.as_deref(), Some("b.yaml"));
    assert!(error.line.is_some_and(|l| l >= 4), "{error:?}");
    let after = running.plane.snapshot();
    assert!(Arc::ptr_eq(&before, &after), "the snapshot did not change");
    let shown = configz(running.debug_addr).await?;
    assert!(!shown.ok);
    assert_eq!(shown.errors, s.errors);
    assert_eq!(
        get(running.debug_addr, "/ready").await?.0,
        200,
        "still serving"
    );

    // Fixed: a new snapshot.
    std::fs::write(dir.path().join("b.yaml"), config_json("b.prod", "2"))?;
    let s = status_until(&running, "fixed", |s| s.ok && s.serving_generation == 3).await;
    assert!(s.errors.is_empty());
    let b = running.plane.snapshot();
    assert_eq!(b.get("b.prod").unwrap().node().labels["rev"], "2");
    running.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_burst_of_writes_is_one_reload() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("a.yaml"), config_json("a.prod", "0"))?;
    let running = start(dir.path()).await?;
    assert_eq!(running.plane.status().reloads, 1);
    for i in 1..=10 {
        std::fs::write(
            dir.path().join("a.yaml"),
            config_json("a.prod", &i.to_string()),
        )?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let s = status_until(&running, "reloaded", |s| s.reloads >= 2).await;
    // The burst took ~50 ms, under the 100 ms debounce: one reload saw the last write.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(running.plane.status().reloads, 2, "{s:?}");
    assert_eq!(
        running
            .plane
            .snapshot()
            .get("a.prod")
            .unwrap()
            .node()
            .labels["rev"],
        "10"
    );
    running.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn an_invalid_config_at_start_is_not_ready_and_serves_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("a.yaml"), "{ nope")?;
    let running = start(dir.path()).await?;
    let (code, body) = get(running.debug_addr, "/ready").await?;
    assert_eq!(code, 503);
    assert!(body.contains("a.yaml:1:"), "{body}");
    assert_eq!(running.plane.snapshot().generation(), 0);

    std::fs::write(dir.path().join("a.yaml"), config_json("a.prod", "1"))?;
    status_until(&running, "fixed", |s| s.ok).await;
    assert_eq!(get(running.debug_addr, "/ready").await?.0, 200);
    running.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn proxies_follow_the_directory_and_the_debug_endpoint_shows_them() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("a.yaml"), config_json("a.prod", "1"))?;
    std::fs::write(dir.path().join("b.yaml"), config_json("b.prod", "1"))?;
    let running = start(dir.path()).await?;

    let (tx, mut updates) = mpsc::unbounded_channel();
    let options = ClientOptions {
        initial_backoff: Duration::from_millis(20),
        ..ClientOptions::default()
    };
    let client = skiff_xds::connect(
        &running.xds_addr.to_string(),
        NodeInfo::new("a.prod"),
        options,
        move |u: ConfigUpdate| {
            let _ = tx.send(u);
            Ok(())
        },
    )?;
    let first = tokio::time::timeout(PATIENCE, updates.recv())
        .await?
        .context("update")?;
    assert_eq!(first.own().node.labels["rev"], "1");

    // syncz: a SYNCED, b NOT CONNECTED.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let rows = loop {
        let rows: Vec<SyncRow> =
            serde_json::from_str(&get(running.debug_addr, "/debug/syncz").await?.1)?;
        if rows
            .iter()
            .any(|r| r.proxy == "a.prod" && r.status == SyncStatus::Synced)
        {
            break rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never synced: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].proxy, "b.prod");
    assert_eq!(rows[1].status, SyncStatus::NotConnected);

    // config_dump.
    let (code, body) = get(running.debug_addr, "/debug/config_dump?proxy=a.prod").await?;
    assert_eq!(code, 200);
    let dump: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(dump["version"], first.version);
    assert_eq!(dump["config"]["node"]["labels"]["rev"], "1");
    let (code, body) = get(running.debug_addr, "/debug/config_dump?proxy=zz.prod").await?;
    assert_eq!(code, 404);
    assert!(body.contains("a.prod"), "lists known proxies: {body}");
    assert_eq!(get(running.debug_addr, "/debug/config_dump").await?.0, 400);
    assert_eq!(get(running.debug_addr, "/nope").await?.0, 404);

    // Editing a's file pushes to a; an invalid edit pushes nothing.
    std::fs::write(dir.path().join("a.yaml"), config_json("a.prod", "2"))?;
    let second = tokio::time::timeout(PATIENCE, updates.recv())
        .await?
        .context("update")?;
    assert_eq!(second.own().node.labels["rev"], "2");
    std::fs::write(dir.path().join("a.yaml"), "{")?;
    status_until(&running, "error", |s| !s.ok).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), updates.recv())
            .await
            .is_err(),
        "an invalid config must not reach the proxy"
    );
    drop(client);
    running.shutdown().await?;
    Ok(())
}
