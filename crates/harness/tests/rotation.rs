//! Certificate rotation through the control plane's CA under load: short-lived
//! certificates renewed by every proxy's agent while requests flow, none failing.

#[path = "shared/mesh.rs"]
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{BACKEND_URL, MESH};
use skiff_harness::{Mesh, MeshOptions};

const STRICT: &str = "\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: prod
spec:
  mtls:
    mode: STRICT
";

/// The serial of a workload's certificate in service now.
fn serial(mesh: &Mesh, id: &str) -> String {
    mesh.proxy(id)
        .tls()
        .current_cert()
        .map(|c| c.serial_hex())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_load_without_a_failed_request() -> anyhow::Result<()> {
    let options = MeshOptions {
        cert_ttl: Duration::from_secs(3),
        ..MeshOptions::default()
    };
    let mesh =
        Arc::new(Mesh::start_with(&[("mesh.yaml", MESH), ("strict.yaml", STRICT)], options).await?);

    // Four callers at once, so frontend's pool opens connections (and handshakes)
    // while certificates change, not only one at the start.
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|_| {
            let (mesh, stop) = (mesh.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0usize, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match mesh.get_via("frontend.prod", BACKEND_URL).await {
                        Ok(r) if r.status == 200 => ok += 1,
                        Ok(r) => failed.push(format!("{} {}", r.status, r.body)),
                        Err(e) => failed.push(format!("{e:#}")),
                    }
                }
                (ok, failed)
            })
        })
        .collect();

    // Watch both sides until each has served with three certificates (two renewals).
    let mut seen: [BTreeSet<String>; 2] = Default::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let ids = ["frontend.prod", "backend.prod"];
    while seen.iter().any(|s| s.len() < 3) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than two renewals in 30 s: {seen:?}"
        );
        for (set, id) in seen.iter_mut().zip(ids) {
            set.insert(serial(&mesh, id));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for loader in loaders {
        let (o, f) = loader.await?;
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    assert!(ok > 10, "only {ok} requests in the run");
    // A caller with no pooled connection: a new handshake, against backend's third
    // certificate, with other's renewed one.
    let fresh = mesh.get_via("other.prod", BACKEND_URL).await?;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    for id in ids {
        assert!(
            mesh.logs(id).iter().all(|l| !l.contains(" 503 ")),
            "{id}: {:?}",
            mesh.logs(id)
        );
    }
    Ok(())
}
