//! The admin listener: readiness, config dump, drain.

use std::time::Duration;

use skiff_model::config::*;

use crate::support::*;

#[tokio::test]
async fn ready_only_after_the_first_config() {
    let ip = fresh_ip();
    let p = TestProxy::start(ip).await;
    let admin = p.proxy.admin_addr();
    assert_eq!(admin.ip(), ip);
    let r = get(admin, "/ready").await;
    assert_eq!(r.status, 503);
    let v1 = backend("v1", ip).await;
    let config = one_service(
        ip,
        vec![route("r", vec![], to("v1"))],
        vec![cluster("v1", Protocol::Http, vec![endpoint(v1.addr)])],
    );
    p.proxy.apply("v-42", config.clone()).unwrap();
    assert_eq!(get(admin, "/ready").await.status, 200);
    let health = std::net::SocketAddr::new(ip, 15021);
    assert_eq!(get(health, "/healthz/ready").await.status, 200);

    let dump = get(admin, "/config_dump").await;
    assert_eq!(dump.status, 200);
    let json: serde_json::Value = serde_json::from_str(&dump.body).unwrap();
    assert_eq!(json["version"], "v-42");
    let back: ProxyConfig = serde_json::from_value(json["config"].clone()).unwrap();
    assert_eq!(back, config);
    assert!(json["lastRejected"].is_null());
    assert_eq!(json["listeners"]["outbound"], p.outbound().to_string());
    assert_eq!(json["listeners"]["admin"], admin.to_string());

    let mut bad = config.clone();
    bad.clusters.clear();
    assert!(p.proxy.apply("v-43", bad).is_err());
    let json: serde_json::Value =
        serde_json::from_str(&get(admin, "/config_dump").await.body).unwrap();
    assert_eq!(json["version"], "v-42");
    assert_eq!(json["lastRejected"]["version"], "v-43");
}

#[tokio::test]
async fn quitquitquit_drains() {
    let ip = fresh_ip();
    let v1 = backend("v1", ip).await;
    let config = one_service(
        ip,
        vec![route("r", vec![], to("v1"))],
        vec![cluster("v1", Protocol::Http, vec![endpoint(v1.addr)])],
    );
    let p = TestProxy::with_config(ip, config).await;
    let outbound = p.outbound();
    // A slow request in flight when the drain starts still completes.
    let slow = tokio::spawn(async move { get(outbound, "http://backend/delay/300").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Posted where an Istio Job posts it: the pilot-agent's port.
    let mut c = Client::connect(std::net::SocketAddr::new(ip, 15020)).await;
    let r = c
        .send(
            http::Request::post("/quitquitquit")
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 200);
    tokio::time::timeout(Duration::from_secs(1), p.proxy.shutdown_requested())
        .await
        .expect("shutdown requested");
    assert!(p.proxy.drain().await, "drained before the deadline");
    assert_eq!(slow.await.unwrap().body, "v1");
    // The listener is closed.
    assert!(tokio::net::TcpStream::connect(outbound).await.is_err());
}
