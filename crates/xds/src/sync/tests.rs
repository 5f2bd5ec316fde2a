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
    table.pushed("a.prod", 7, &v, 1, 100, Duration::ZERO);
    assert_eq!(table.row("a.prod", &snap).status, SyncStatus::Stale);
    table.acked("a.prod", 7, &v);
    let row = table.row("a.prod", &snap);
    assert_eq!(row.status, SyncStatus::Synced);
    assert_eq!(row.proxy_version.as_deref(), Some("0.1.0"));
    assert_eq!(row.admin.as_deref(), Some("127.0.0.1:15000"));

    table.pushed("a.prod", 7, "other", 1, 100, Duration::ZERO);
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
    table.pushed("a.prod", 1, "old", 1, 100, Duration::ZERO);
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
    table.pushed("a.prod", 1, "v1", 1, 100, Duration::ZERO);
    table.pushed("b.prod", 2, "v1", 1, 100, Duration::ZERO);
    table.nacked("b.prod", 2, "v1", "bad");
    table.disconnected("a.prod", 1);
    let mut registry = Registry::default();
    table.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("\npilot_xds{version=\"\"} 1\n"), "{text}");
    assert!(
        text.contains("pilot_xds_pushes_total{type=\"ProxyConfig\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("pilot_total_xds_rejects_total{type=\"ProxyConfig\"} 1\n"),
        "{text}"
    );
}

/// Generation `generation` of a mesh of these proxies, each config labelled `rev`.
fn revision(generation: u64, ids: &[&str], rev: &str) -> PushSnapshot {
    PushSnapshot::new(
        generation,
        ids.iter().map(|id| {
            let mut c = ProxyConfig::default();
            c.node.id = (*id).to_owned();
            c.node.labels.insert("rev".to_owned(), rev.to_owned());
            c
        }),
    )
}

fn version(snapshot: &PushSnapshot, id: &str) -> String {
    snapshot.get(id).unwrap().version.clone()
}

/// What a stream does when it pushes `snapshot`'s version to a proxy.
fn push(table: &SyncTable, id: &str, stream: u64, snapshot: &PushSnapshot) {
    let v = version(snapshot, id);
    table.pushed(id, stream, &v, snapshot.generation(), 100, Duration::ZERO);
    table.saw_generation(id, stream, snapshot.generation());
}

fn ack(table: &SyncTable, id: &str, stream: u64, snapshot: &PushSnapshot) {
    table.acked(id, stream, &version(snapshot, id));
}

fn text(table: &SyncTable) -> String {
    let mut registry = Registry::default();
    table.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
    text
}

/// The value of the sample `series` (name and labels, as written).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

fn change(table: &SyncTable, id: &str, snapshot: &PushSnapshot) -> ChangeRow {
    table
        .row(id, snapshot)
        .last_change
        .unwrap_or_else(|| panic!("{id} has no last change"))
}

/// Three proxies synced on generation 1, with streams 1, 2, 3.
fn three_synced() -> (SyncTable, PushSnapshot) {
    let ids = ["a.prod", "b.prod", "c.prod"];
    let first = revision(1, &ids, "1");
    let table = SyncTable::new();
    for (stream, id) in (1..).zip(ids) {
        table.connected(id, stream, None, Some("0.1.0".into()), None);
        push(&table, id, stream, &first);
        ack(&table, id, stream, &first);
    }
    (table, first)
}

#[tokio::test(start_paused = true)]
async fn a_change_is_one_propagation_sample_when_the_last_affected_proxy_acks() {
    let (table, first) = three_synced();
    let ids = ["a.prod", "b.prod", "c.prod"];
    let second = revision(2, &ids, "2");
    assert_eq!(table.publish(&first, &second, Instant::now()), 3);
    tokio::time::advance(Duration::from_millis(100)).await;
    for (stream, id) in (1..).zip(ids) {
        push(&table, id, stream, &second);
    }
    let t = text(&table);
    // Istio's convergence: from the change to each push, 100 ms three times.
    assert_eq!(sample(&t, "pilot_proxy_convergence_time_count"), 3.0);
    assert!((sample(&t, "pilot_proxy_convergence_time_sum") - 0.3).abs() < 1e-9);

    tokio::time::advance(Duration::from_millis(200)).await;
    ack(&table, "a.prod", 1, &second);
    ack(&table, "b.prod", 2, &second);
    // c is held back: the change has not propagated.
    let t = text(&table);
    assert_eq!(sample(&t, "skiff_config_propagation_seconds_count"), 0.0);
    let a = change(&table, "a.prod", &second);
    assert_eq!((a.generation, a.state), (2, ChangeState::Applied));
    assert_eq!(a.propagation_ms, Some(300));
    let c = change(&table, "c.prod", &second);
    assert_eq!((c.state, c.propagation_ms), (ChangeState::Waiting, None));
    assert_eq!(c.seen_age_ms, 300);

    tokio::time::advance(Duration::from_millis(100)).await;
    ack(&table, "c.prod", 3, &second);
    let t = text(&table);
    assert_eq!(sample(&t, "skiff_config_propagation_seconds_count"), 1.0);
    assert!((sample(&t, "skiff_config_propagation_seconds_sum") - 0.4).abs() < 1e-9);
    assert_eq!(
        sample(&t, "skiff_config_propagation_seconds_bucket{le=\"0.25\"}"),
        0.0
    );
    assert_eq!(
        sample(&t, "skiff_config_propagation_seconds_bucket{le=\"0.5\"}"),
        1.0
    );
    let c = change(&table, "c.prod", &second);
    assert_eq!(
        (c.state, c.propagation_ms),
        (ChangeState::Applied, Some(400))
    );

    // A repeated ACK observes nothing more.
    ack(&table, "c.prod", 3, &second);
    let t = text(&table);
    assert_eq!(sample(&t, "skiff_config_propagation_seconds_count"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn a_change_that_affects_some_proxies_waits_only_for_them() {
    let (table, first) = three_synced();
    // Only b's config changes.
    let mut configs: Vec<ProxyConfig> = first.proxies().map(|(_, e)| e.config()).collect();
    configs[1].node.labels.insert("rev".into(), "2".into());
    let second = PushSnapshot::new(2, configs);
    assert_eq!(table.publish(&first, &second, Instant::now()), 1);
    tokio::time::advance(Duration::from_millis(50)).await;
    push(&table, "b.prod", 2, &second);
    for (stream, id) in [(1, "a.prod"), (3, "c.prod")] {
        table.saw_generation(id, stream, 2);
    }
    ack(&table, "b.prod", 2, &second);
    let t = text(&table);
    assert_eq!(sample(&t, "skiff_config_propagation_seconds_count"), 1.0);
    assert!((sample(&t, "skiff_config_propagation_seconds_sum") - 0.05).abs() < 1e-9);
    assert_eq!(table.row("a.prod", &second).last_change, None);
}

#[tokio::test(start_paused = true)]
async fn a_nack_or_a_disconnect_leaves_the_change_incomplete_and_unobserved() {
    let (table, first) = three_synced();
    let ids = ["a.prod", "b.prod", "c.prod"];
    let second = revision(2, &ids, "2");
    table.publish(&first, &second, Instant::now());
    for (stream, id) in (1..).zip(ids) {
        push(&table, id, stream, &second);
    }
    ack(&table, "a.prod", 1, &second);
    table.nacked("b.prod", 2, &version(&second, "b.prod"), "bad route");
    table.disconnected("c.prod", 3);
    let t = text(&table);
    assert_eq!(sample(&t, "skiff_config_propagation_seconds_count"), 0.0);
    assert_eq!(
        sample(&t, "pilot_total_xds_rejects_total{type=\"ProxyConfig\"}"),
        1.0
    );
    // One change, counted once, under the first reason seen.
    assert_eq!(
        sample(
            &t,
            "skiff_config_propagation_incomplete_total{reason=\"nack\"}"
        ),
        1.0
    );
    assert!(!t.contains("reason=\"disconnect\"} 1"), "{t}");
    assert_eq!(change(&table, "b.prod", &second).state, ChangeState::Nack);
    assert_eq!(
        change(&table, "c.prod", &second).state,
        ChangeState::Disconnected
    );
    assert_eq!(sample(&t, "pilot_xds{version=\"0.1.0\"}"), 2.0);

    // The fix reaches b, which ACKs it: that change propagated.
    let third = revision(3, &["a.prod", "b.prod"], "3");
    tokio::time::advance(Duration::from_millis(20)).await;
    assert_eq!(table.publish(&second, &third, Instant::now()), 2);
    tokio::time::advance(Duration::from_millis(30)).await;
    push(&table, "a.prod", 1, &third);
    push(&table, "b.prod", 2, &third);
    ack(&table, "a.prod", 1, &third);
    ack(&table, "b.prod", 2, &third);
    let t = text(&table);
    assert_eq!(sample(&t, "skiff_config_propagation_seconds_count"), 1.0);
    assert!((sample(&t, "skiff_config_propagation_seconds_sum") - 0.03).abs() < 1e-9);
    let b = change(&table, "b.prod", &third);
    assert_eq!((b.generation, b.propagation_ms), (3, Some(30)));
}

#[tokio::test(start_paused = true)]
async fn a_version_that_carries_several_changes_settles_each() {
    let (table, first) = three_synced();
    let ids = ["a.prod", "b.prod", "c.prod"];
    let second = revision(2, &ids, "2");
    let third = revision(3, &ids, "3");
    table.publish(&first, &second, Instant::now());
    tokio::time::advance(Duration::from_millis(10)).await;
    table.publish(&second, &third, Instant::now());
    tokio::time::advance(Duration::from_millis(10)).await;
    // The streams saw only the newest snapshot.
    for (stream, id) in (1..).zip(ids) {
        push(&table, id, stream, &third);
        ack(&table, id, stream, &third);
    }
    let t = text(&table);
    assert_eq!(sample(&t, "skiff_config_propagation_seconds_count"), 2.0);
    assert!((sample(&t, "skiff_config_propagation_seconds_sum") - 0.03).abs() < 1e-9);
    // Convergence is once per push, from the oldest change it carries.
    assert_eq!(sample(&t, "pilot_proxy_convergence_time_count"), 3.0);
    assert!((sample(&t, "pilot_proxy_convergence_time_sum") - 0.06).abs() < 1e-9);
}

#[test]
fn a_push_the_stream_cannot_take_is_a_send_error() {
    let table = SyncTable::new();
    table.push_failed();
    let t = text(&table);
    assert_eq!(
        sample(&t, "pilot_xds_pushes_total{type=\"ProxyConfig_senderr\"}"),
        1.0
    );
}
