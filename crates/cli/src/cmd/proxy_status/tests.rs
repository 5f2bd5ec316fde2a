use super::*;

fn row(name: &str, status: SyncStatus) -> SyncRow {
    SyncRow {
        proxy: format!("{name}.prod"),
        name: name.into(),
        namespace: "prod".into(),
        status,
        connected: status != SyncStatus::NotConnected,
        connected_since_ms: None,
        peer: None,
        proxy_version: None,
        admin: None,
        desired: Some("00000000000000aa".into()),
        sent: None,
        acked: None,
        nack: None,
        last_push_ms: None,
        last_push_age_ms: None,
        generation: 1,
        applied_ms: None,
        config_age_ms: None,
        last_change: None,
        pushes: 0,
        pushed_bytes: 0,
    }
}

#[test]
fn the_table_has_one_aligned_line_per_proxy() {
    let mut synced = row("backend-v1", SyncStatus::Synced);
    synced.sent = Some("00000000000000aa".into());
    synced.acked = synced.sent.clone();
    synced.last_push_age_ms = Some(65_000);
    synced.last_change = Some(ChangeRow {
        generation: 4,
        state: ChangeState::Applied,
        propagation_ms: Some(1_430),
        seen_age_ms: 70_000,
    });
    let mut nack = row("web", SyncStatus::Nack);
    nack.sent = Some("00000000000000bb".into());
    nack.acked = Some("00000000000000aa".into());
    nack.nack = Some("bad regex".into());
    nack.last_push_age_ms = Some(1_500);
    nack.last_change = Some(ChangeRow {
        generation: 4,
        state: ChangeState::Waiting,
        propagation_ms: None,
        seen_age_ms: 3_200,
    });
    let table = render(&[synced, nack, row("db", SyncStatus::NotConnected)]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("NAME         NAMESPACE   SENT"),
        "{table}"
    );
    assert!(
        lines[1].contains("SYNCED") && lines[1].ends_with("1m5s   1.4s"),
        "{table}"
    );
    assert!(
        lines[2].contains("NACK: bad regex") && lines[2].ends_with("1s     waiting:3s"),
        "{table}"
    );
    assert!(
        lines[3].contains("NOT CONNECTED") && lines[3].ends_with("-      -"),
        "{table}"
    );
    // Columns line up: STATUS starts at the same offset on every line.
    let col = lines[0].find("STATUS").unwrap();
    assert!(lines[1][col..].starts_with("SYNCED"), "{table}");
    assert!(lines[3][col..].starts_with("NOT CONNECTED"), "{table}");
}

#[test]
fn propagation_is_precise_under_a_minute() {
    let change = |state, propagation_ms| ChangeRow {
        generation: 2,
        state,
        propagation_ms,
        seen_age_ms: 61_000,
    };
    assert_eq!(propagation(&change(ChangeState::Applied, Some(85))), "85ms");
    assert_eq!(
        propagation(&change(ChangeState::Applied, Some(12_340))),
        "12.3s"
    );
    assert_eq!(
        propagation(&change(ChangeState::Applied, Some(61_000))),
        "1m1s"
    );
    assert_eq!(
        propagation(&change(ChangeState::Waiting, None)),
        "waiting:1m1s"
    );
    assert_eq!(propagation(&change(ChangeState::Nack, None)), "nack");
    assert_eq!(
        propagation(&change(ChangeState::Disconnected, None)),
        "disconnected"
    );
}

#[test]
fn ages_are_short() {
    assert_eq!(age(850), "850ms");
    assert_eq!(age(12_400), "12s");
    assert_eq!(age(184_000), "3m4s");
    assert_eq!(age(7_380_000), "2h3m");
    assert_eq!(age(5 * 86_400_000 + 4 * 3_600_000), "5d4h");
}

#[test]
fn configuration_errors_are_listed_under_the_table() {
    use skiff_control::{Finding, KEPT_NOTE, Severity};
    let mut status = ConfigStatus {
        config_dir: "/mesh".into(),
        ok: true,
        ..ConfigStatus::default()
    };
    assert_eq!(
        render_config(&status),
        "",
        "nothing when there are no errors"
    );
    status.ok = false;
    status.errors.push(
        Finding::new(
            Severity::Error,
            "VirtualService prod/backend: spec.http[0].route[0].wieght: unknown field `wieght`",
        )
        .at("route.yaml", 12, 7),
    );
    status.warnings.push(
        Finding::new(
            Severity::Warning,
            format!("VirtualService prod/backend: {KEPT_NOTE}"),
        )
        .at("route.yaml", 1, 1),
    );
    status
        .warnings
        .push(Finding::new(Severity::Warning, "an unrelated warning"));
    let text = render_config(&status);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "", "a blank line after the table: {text}");
    assert!(
        lines[1].starts_with("configuration errors in /mesh (1):"),
        "{text}"
    );
    assert_eq!(
        lines[2],
        "  error: route.yaml:12:7: VirtualService prod/backend: spec.http[0].route[0].wieght: unknown field `wieght`"
    );
    assert!(
        lines[3]
            .starts_with("  kept:  route.yaml:1:1: VirtualService prod/backend: its new version"),
        "{text}"
    );
    assert_eq!(lines.len(), 4, "unrelated warnings stay out: {text}");
}
