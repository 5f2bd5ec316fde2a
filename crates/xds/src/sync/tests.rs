use skiff_model::config::ProxyConfig;

use super::*;

fn snapshot(ids: &[&str]) -> PushSnapshot {
    PushSnapshot::new(
        1,
        ids.iter().map(|id| {
            let mut c = ProxyConfig::default();
            c.node.id = (*id).to_owned();
            c
        }),
    )
}

#[test]
fn never_connected_proxy_is_not_connected() {
    let snap = snapshot(&["a.prod"]);
    let rows = SyncTable::new().rows(&snap);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, SyncStatus::NotConnected);
    assert_eq!(rows[0].name, "a");
    assert_eq!(rows[0].namespace, "prod");
    assert!(rows[0].desired.is_some());
}

#[test]
fn push_then_ack_is_synced_and_nack_shows_reason() {
    let snap = snapshot(&["a.prod"]);
    let v = snap.get("a.prod").unwrap().version.clone();
    let table = SyncTable::new();
    table.connected(
        "a.prod",
        7,
        None,
        Some("0.1.0".into()),
        Some("127.0.0.1:15000".into()),
    );
    table.pushed("a.prod", 7, &v);
    assert_eq!(table.row("a.prod", &snap).status, SyncStatus::Stale);
    table.acked("a.prod", 7, &v);
    let row = table.row("a.prod", &snap);
    assert_eq!(row.status, SyncStatus::Synced);
    assert_eq!(row.proxy_version.as_deref(), Some("0.1.0"));
    assert_eq!(row.admin.as_deref(), Some("127.0.0.1:15000"));

    table.pushed("a.prod", 7, "other");
    table.nacked("a.prod", 7, "other", "bad regex");
    let row = table.row("a.prod", &snap);
    assert_eq!(row.status, SyncStatus::Nack);
    assert_eq!(row.nack.as_deref(), Some("bad regex"));
    assert_eq!(row.acked.as_deref(), Some(v.as_str()));
}

#[test]
fn updates_from_a_replaced_stream_are_ignored() {
    let snap = snapshot(&["a.prod"]);
    let table = SyncTable::new();
    table.connected("a.prod", 1, None, None, None);
    table.connected("a.prod", 2, None, None, None);
    table.pushed("a.prod", 1, "old");
    table.disconnected("a.prod", 1);
    let row = table.row("a.prod", &snap);
    assert!(row.connected);
    assert_eq!(row.sent, None);
}

#[test]
fn connected_proxy_unknown_to_snapshot_is_listed_and_disconnected_one_is_not() {
    let snap = snapshot(&[]);
    let table = SyncTable::new();
    table.connected("ghost.prod", 1, None, None, None);
    table.connected("gone.prod", 2, None, None, None);
    table.disconnected("gone.prod", 2);
    let rows = table.rows(&snap);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].proxy, "ghost.prod");
    assert_eq!(rows[0].status, SyncStatus::Stale);
}

#[test]
fn pushes_rejects_and_connected_proxies_are_counted_under_istios_names() {
    let table = SyncTable::new();
    table.connected("a.prod", 1, None, None, None);
    table.connected("b.prod", 2, None, None, None);
    table.pushed("a.prod", 1, "v1");
    table.pushed("b.prod", 2, "v1");
    table.nacked("b.prod", 2, "v1", "bad");
    table.disconnected("a.prod", 1);
    let mut registry = Registry::default();
    table.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("\npilot_xds 1\n"), "{text}");
    assert!(
        text.contains("pilot_xds_pushes_total{type=\"ProxyConfig\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("pilot_total_xds_rejects_total{type=\"ProxyConfig\"} 1\n"),
        "{text}"
    );
}
