//! Config updates: in-flight requests keep their snapshot, bad updates are rejected.

use std::sync::atomic::Ordering;
use std::time::Duration;

use skiff_model::config::*;

use crate::support::*;

fn to_backend(ip: std::net::IpAddr, b: &Backend) -> ProxyConfig {
    one_service(
        ip,
        vec![route("r", vec![], to(b.name))],
        vec![cluster(b.name, Protocol::Http, vec![endpoint(b.addr)])],
    )
}

#[tokio::test]
async fn swap_while_a_slow_request_is_in_flight() {
    let ip = fresh_ip();
    let old = backend("old", ip).await;
    let new = backend("new", ip).await;
    let p = TestProxy::with_config(ip, to_backend(ip, &old)).await;
    let addr = p.outbound();
    let slow = tokio::spawn(async move { get(addr, "http://backend/delay/600").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    p.proxy.apply("2", to_backend(ip, &new)).unwrap();
    assert_eq!(get(p.outbound(), "http://backend/").await.body, "new");
    let r = slow.await.unwrap();
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "old"));
    assert_eq!(p.proxy.snapshot().unwrap().version(), "2");
}

#[tokio::test]
async fn a_rejected_update_keeps_the_old_snapshot() {
    let ip = fresh_ip();
    let v1 = backend("v1", ip).await;
    let p = TestProxy::with_config(ip, to_backend(ip, &v1)).await;
    let mut bad = to_backend(ip, &v1);
    bad.outbound[0].virtual_hosts[0].routes[0].matches = vec![RouteMatch {
        uri: Some(StringMatch::Regex("(".into())),
        ..Default::default()
    }];
    let err = p.proxy.apply("2", bad).unwrap_err().to_string();
    assert!(err.contains("does not compile"), "{err}");
    let mut missing = to_backend(ip, &v1);
    missing.clusters.clear();
    assert!(p.proxy.apply("3", missing).is_err());
    assert_eq!(p.proxy.snapshot().unwrap().version(), "1");
    assert_eq!(get(p.outbound(), "http://backend/").await.body, "v1");
    let (version, reason) = p.proxy.last_rejected().unwrap();
    assert_eq!(version, "3");
    assert!(reason.contains("\"v1\""), "{reason}");
    // An accepted update clears it.
    p.proxy.apply("4", to_backend(ip, &v1)).unwrap();
    assert!(p.proxy.last_rejected().is_none());
}

#[tokio::test]
async fn upstream_connections_survive_a_swap() {
    let ip = fresh_ip();
    let v1 = backend("v1", ip).await;
    let p = TestProxy::with_config(ip, to_backend(ip, &v1)).await;
    let mut c = Client::connect(p.outbound()).await;
    c.get("http://backend/").await;
    c.get("http://backend/").await;
    assert_eq!(
        v1.conns.load(Ordering::Relaxed),
        1,
        "keep-alive to the upstream"
    );
    // The same endpoint in a new config keeps its pool: no new upstream connection.
    let mut cfg = to_backend(ip, &v1);
    cfg.outbound[0].virtual_hosts[0].routes[0].name = "renamed".into();
    p.proxy.apply("2", cfg).unwrap();
    c.get("http://backend/").await;
    assert_eq!(v1.hits.load(Ordering::Relaxed), 3);
    assert_eq!(
        v1.conns.load(Ordering::Relaxed),
        1,
        "pooled connection reused after the swap"
    );
    assert!(p.log_line(" renamed ").await.contains(" 200 "));
}
