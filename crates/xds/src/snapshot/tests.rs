use std::sync::Arc;

use skiff_model::config::ProxyConfig;

use super::*;

fn config(id: &str, cluster: &str) -> ProxyConfig {
    let mut c = ProxyConfig::default();
    c.node.id = id.to_owned();
    c.missing_clusters
        .insert(cluster.to_owned(), "no such host".to_owned());
    c
}

#[test]
fn equal_shared_parts_are_kept_once_and_joined_back_whole() {
    let snapshot = PushSnapshot::new(
        1,
        [
            config("a.prod", "outbound|80||s"),
            config("b.prod", "outbound|80||s"),
            config("c.prod", "outbound|81||s"),
        ],
    );
    assert_eq!(snapshot.shared_parts(), 2);
    let (a, b, c) = (
        snapshot.get("a.prod").unwrap(),
        snapshot.get("b.prod").unwrap(),
        snapshot.get("c.prod").unwrap(),
    );
    assert!(Arc::ptr_eq(&a.shared, &b.shared));
    assert!(!Arc::ptr_eq(&a.shared, &c.shared));
    assert_eq!(a.config(), config("a.prod", "outbound|80||s"));
    assert!(
        a.own.missing_clusters.is_empty(),
        "the own part holds no shared field"
    );
    assert_ne!(a.version, b.version, "the own parts differ");
    let pieces: usize = a.shared.pieces.iter().map(|p| p.body.len()).sum();
    assert_eq!(a.size(), a.own_body.len() + pieces);
}

#[test]
fn the_version_follows_both_parts_and_only_them() {
    let one = ProxyEntry::new(config("a.prod", "outbound|80||s"));
    let same = ProxyEntry::new(config("a.prod", "outbound|80||s"));
    assert_eq!(one.version, same.version);
    let other_shared = ProxyEntry::new(config("a.prod", "outbound|81||s"));
    assert_ne!(one.version, other_shared.version);
    assert_eq!(one.own_version, other_shared.own_version);
    let mut relabelled = config("a.prod", "outbound|80||s");
    relabelled.node.labels.insert("rev".into(), "2".into());
    let relabelled = ProxyEntry::new(relabelled);
    assert_ne!(one.version, relabelled.version);
    assert_eq!(one.shared.digest, relabelled.shared.digest);
}

#[test]
fn parts_that_are_one_value_are_encoded_once() {
    let shared = Arc::new(ProxyParts::from(config("x", "outbound|80||s")).shared);
    let parts = |id: &str| {
        let mut own = ProxyConfig::default();
        own.node.id = id.to_owned();
        ProxyParts {
            own,
            shared: Arc::clone(&shared),
        }
    };
    let snapshot = PushSnapshot::from_parts(1, [parts("a.prod"), parts("b.prod")]);
    assert_eq!(snapshot.shared_parts(), 1);
    let a = snapshot.get("a.prod").unwrap();
    assert!(Arc::ptr_eq(
        &a.shared,
        &snapshot.get("b.prod").unwrap().shared
    ));
    assert_eq!(a.shared.config(), **shared);
}

#[test]
fn a_piece_two_views_hold_alike_is_one_value() {
    // Two views (different missing clusters) that both hold the cluster
    // `outbound|80||s` as missing, and a third piece each of their own.
    let mut a = config("a.prod", "outbound|80||s");
    a.missing_clusters
        .insert("outbound|81||a".into(), "no such host".into());
    let mut b = config("b.other", "outbound|80||s");
    b.missing_clusters
        .insert("outbound|81||b".into(), "no such host".into());
    let snapshot = PushSnapshot::new(1, [a, b]);
    assert_eq!(snapshot.shared_parts(), 2);
    let (a, b) = (
        snapshot.get("a.prod").unwrap(),
        snapshot.get("b.other").unwrap(),
    );
    let name = "cluster/outbound|80||s";
    assert!(Arc::ptr_eq(
        a.shared.piece(name).unwrap(),
        b.shared.piece(name).unwrap()
    ));
    // The cluster of each, and the mesh piece both hold alike.
    assert_eq!(snapshot.pieces(), 4);
    assert!(a.shared.piece("cluster/outbound|81||b").is_none());
}

#[test]
fn the_next_snapshot_keeps_the_pieces_a_change_did_not_touch() {
    let mut before = config("a.prod", "outbound|80||s");
    before
        .missing_clusters
        .insert("outbound|81||t".into(), "no such host".into());
    let first = PushSnapshot::new(1, [before.clone()]);
    let mut after = before;
    after
        .missing_clusters
        .insert("outbound|81||t".into(), "another reason".into());
    let second = first.next(2, [ProxyParts::from(after)]);
    let (a, b) = (first.get("a.prod").unwrap(), second.get("a.prod").unwrap());
    let same = "cluster/outbound|80||s";
    let changed = "cluster/outbound|81||t";
    assert!(Arc::ptr_eq(
        a.shared.piece(same).unwrap(),
        b.shared.piece(same).unwrap()
    ));
    assert_ne!(
        a.shared.piece(changed).unwrap().version,
        b.shared.piece(changed).unwrap().version
    );
    assert_eq!(
        second.pieces(),
        3,
        "what the new snapshot holds, not the old"
    );
}

fn with_missing(id: &str, clusters: &[(&str, &str)]) -> ProxyConfig {
    let mut c = ProxyConfig::default();
    c.node.id = id.to_owned();
    for (name, why) in clusters {
        c.missing_clusters
            .insert((*name).to_owned(), (*why).to_owned());
    }
    c
}

#[test]
fn the_changes_between_two_parts_are_worked_out_once_for_every_proxy() {
    let before = PushSnapshot::new(
        1,
        [
            with_missing(
                "a.prod",
                &[("outbound|80||a", "x"), ("outbound|80||b", "x")],
            ),
            with_missing(
                "b.prod",
                &[("outbound|80||a", "x"), ("outbound|80||b", "x")],
            ),
        ],
    );
    // a's cluster changed, b's is gone, c's is new.
    let after = before.next(
        2,
        [
            with_missing(
                "a.prod",
                &[("outbound|80||a", "y"), ("outbound|80||c", "x")],
            ),
            with_missing(
                "b.prod",
                &[("outbound|80||a", "y"), ("outbound|80||c", "x")],
            ),
        ]
        .map(ProxyParts::from),
    );
    let held = &before.get("a.prod").unwrap().shared;
    let want = &after.get("a.prod").unwrap().shared;
    let changes = want.changes_from(held);
    let changed: Vec<&str> = changes.changed.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        changed,
        ["cluster/outbound|80||a", "cluster/outbound|80||c"]
    );
    assert_eq!(changes.removed, ["cluster/outbound|80||b"]);
    // The other proxy of the view gets the same value, not another walk.
    let again = after
        .get("b.prod")
        .unwrap()
        .shared
        .changes_from(&before.get("b.prod").unwrap().shared);
    assert!(Arc::ptr_eq(&changes, &again));
    // Nothing between a part and itself.
    let none = want.changes_from(want);
    assert!(none.changed.is_empty() && none.removed.is_empty());
}
