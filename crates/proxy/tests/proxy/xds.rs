//! The proxy fed by the real control-plane protocol: an xDS server on loopback pushes
//! configs, the proxy serves them, ACKs good ones and NACKs bad ones with the reason.

use std::sync::Arc;
use std::time::Duration;

use skiff_model::config::*;
use skiff_xds::{PushSnapshot, SyncStatus, SyncTable, XdsServer};
use tokio::sync::watch;

use crate::support::*;

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn serves_acks_and_nacks_configs_from_the_control_plane() {
    let ip = fresh_ip();
    let v1 = backend("v1", ip).await;
    let v2 = backend("v2", ip).await;
    let config_for = |b: &Backend| {
        one_service(
            ip,
            vec![route("r", vec![], to(b.name))],
            vec![cluster(b.name, Protocol::Http, vec![endpoint(b.addr)])],
        )
    };

    let (publish, snapshots) = watch::channel(Arc::new(PushSnapshot::new(1, [config_for(&v1)])));
    let sync = SyncTable::new();
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let control = listener.local_addr().unwrap();
    let server = XdsServer::new(snapshots, sync.clone());
    tokio::spawn(async move { server.serve(listener, std::future::pending()).await });

    let p = TestProxy::start(ip).await;
    let _client =
        skiff_proxy::xds_source::connect(&p.proxy, &control.to_string(), "test.ns").unwrap();
    eventually("the first config", || p.proxy.is_ready()).await;
    assert_eq!(get(p.outbound(), "http://backend/").await.body, "v1");
    let row = |s: &PushSnapshot| sync.row("test.ns", s);
    let current = || publish.borrow().clone();
    eventually("the ACK", || row(&current()).status == SyncStatus::Synced).await;

    // A new config is pushed and served.
    publish
        .send(Arc::new(PushSnapshot::new(2, [config_for(&v2)])))
        .unwrap();
    let mut body = String::new();
    for _ in 0..200 {
        body = get(p.outbound(), "http://backend/").await.body;
        if body == "v2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(body, "v2", "the second config is served");

    // A bad one is NACKed with the reason, and the proxy keeps serving the last good one.
    let mut bad = config_for(&v1);
    bad.clusters.clear();
    publish.send(Arc::new(PushSnapshot::new(3, [bad]))).unwrap();
    eventually("the NACK", || row(&current()).status == SyncStatus::Nack).await;
    let nack = row(&current()).nack.unwrap();
    assert!(
        nack.contains("is not among the config's clusters"),
        "{nack}"
    );
    assert_eq!(get(p.outbound(), "http://backend/").await.body, "v2");
}
