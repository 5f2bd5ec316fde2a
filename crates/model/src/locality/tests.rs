use std::collections::BTreeMap;

use skiff_api::networking::{LocalityDistribute, LocalityFailover, LocalityLoadBalancerSetting};

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The priorities `setting` gives endpoints at `localities` (with `endpoint_labels`),
/// for a client at `client` with `client_labels`.
fn priorities(
    setting: &LocalityLoadBalancerSetting,
    failover: bool,
    client: &str,
    client_labels: &[(&str, &str)],
    endpoints: &[(&str, &[(&str, &str)])],
) -> Option<Plan> {
    let client = Locality::parse(client);
    let client_labels = client.augment(&labels(client_labels));
    let localities: Vec<Locality> = endpoints.iter().map(|(l, _)| Locality::parse(l)).collect();
    let label_sets: Vec<_> = endpoints
        .iter()
        .zip(&localities)
        .map(|((_, l), loc)| loc.augment(&labels(l)))
        .collect();
    let members: Vec<Member<'_>> = localities
        .iter()
        .zip(&label_sets)
        .map(|(locality, labels)| Member {
            locality,
            labels,
            weight: 1,
        })
        .collect();
    plan(Some(setting), failover, &client, &client_labels, &members)
}

fn default_setting() -> LocalityLoadBalancerSetting {
    effective(None, &mesh_default()).expect("the mesh default is on")
}

#[test]
fn localities_come_from_the_entry_then_the_topology_labels() {
    let l = Locality::of_workload(Some("us-east/us-east-1a/rack1"), &BTreeMap::new());
    assert_eq!(
        (l.region.as_str(), l.zone.as_str(), l.subzone.as_str()),
        ("us-east", "us-east-1a", "rack1")
    );
    let by_labels = labels(&[(REGION_LABEL, "eu"), (ZONE_LABEL, "eu-1")]);
    assert_eq!(Locality::of_workload(None, &by_labels).label(), "eu/eu-1");
    assert_eq!(
        Locality::of_workload(Some(" "), &by_labels).label(),
        "eu/eu-1"
    );
    // The entry's field wins over labels.
    assert_eq!(Locality::of_workload(Some("ap"), &by_labels).label(), "ap");
    let old = labels(&[("istio-locality", "r.z.s")]);
    assert_eq!(Locality::of_workload(None, &old).label(), "r/z/s");
    assert!(Locality::of_workload(None, &BTreeMap::new()).is_empty());
    assert_eq!(Locality::parse("r//s").label(), "r//s");
}

#[test]
fn rule_localities_match_with_wildcards_and_missing_parts() {
    let l = Locality::parse("us/us-1/a");
    for rule in [
        "us",
        "us/*",
        "us/us-1",
        "us/us-1/*",
        "us/us-1/a",
        "*",
        "*/us-1/a",
    ] {
        assert!(l.matches(rule), "{rule}");
    }
    for rule in ["eu", "us/us-2", "us/us-1/b", "*/us-2"] {
        assert!(!l.matches(rule), "{rule}");
    }
}

#[test]
fn priorities_follow_how_much_of_the_locality_matches() {
    let plan = priorities(
        &default_setting(),
        true,
        "r1/z1/s1",
        &[],
        &[
            ("r2/z1/s1", &[]),
            ("r1/z1/s1", &[]),
            ("r1/z2/s1", &[]),
            ("r1/z1/s2", &[]),
        ],
    )
    .unwrap();
    assert_eq!(plan.priorities, vec![Some(3), Some(0), Some(2), Some(1)]);
    // Implicit failover does not turn on locality-weighted balancing (Istio sets it for
    // explicit failover settings and `distribute` only).
    assert!(!plan.locality_weighted);
}

#[test]
fn priorities_are_numbered_without_gaps() {
    let plan = priorities(
        &default_setting(),
        true,
        "r1/z1",
        &[],
        &[("r3/z", &[]), ("r1/z1", &[]), ("r2/z", &[])],
    )
    .unwrap();
    assert_eq!(plan.priorities, vec![Some(1), Some(0), Some(1)]);
    // No endpoint in the client's own zone: the same region comes first.
    let plan = priorities(
        &default_setting(),
        true,
        "r1/z1",
        &[],
        &[("r1/z2", &[]), ("r2/z1", &[])],
    )
    .unwrap();
    assert_eq!(plan.priorities, vec![Some(0), Some(1)]);
}

#[test]
fn without_outlier_detection_no_priorities_are_applied() {
    let explicit = LocalityLoadBalancerSetting {
        failover: vec![LocalityFailover {
            from: Some("r1".into()),
            to: Some("r2".into()),
        }],
        failover_priority: vec!["version".into()],
        ..Default::default()
    };
    for setting in [default_setting(), explicit] {
        let plan = priorities(
            &setting,
            false,
            "r1/z1",
            &[("version", "v1")],
            &[("r1/z1", &[]), ("r2/z1", &[])],
        );
        assert_eq!(plan, None);
    }
}

#[test]
fn disabled_settings_apply_nothing() {
    let off = LocalityLoadBalancerSetting {
        enabled: Some(false),
        distribute: vec![LocalityDistribute {
            from: Some("*".into()),
            to: [("r1".to_string(), 100)].into(),
        }],
        ..Default::default()
    };
    let mesh = mesh_default();
    assert_eq!(effective(Some(&off), &mesh), None);
    let on = LocalityLoadBalancerSetting::default();
    assert_eq!(effective(Some(&on), &mesh), Some(on.clone()));
    // Without a rule, the mesh's setting; a rule wins over a mesh that turns it off.
    assert_eq!(effective(None, &off), None);
    assert_eq!(effective(Some(&on), &off), Some(on));
    let mesh_distribute = LocalityLoadBalancerSetting {
        enabled: None,
        ..off.clone()
    };
    assert_eq!(
        effective(None, &mesh_distribute),
        Some(mesh_distribute.clone())
    );
}

#[test]
fn failover_puts_the_named_region_before_the_others() {
    let setting = LocalityLoadBalancerSetting {
        failover: vec![
            LocalityFailover {
                from: Some("r9".into()),
                to: Some("r2".into()),
            },
            LocalityFailover {
                from: Some("r1".into()),
                to: Some("r3".into()),
            },
        ],
        ..Default::default()
    };
    let plan = priorities(
        &setting,
        true,
        "r1/z1",
        &[],
        &[
            ("r2/z1", &[]),
            ("r3/z1", &[]),
            ("r1/z2", &[]),
            ("r1/z1", &[]),
        ],
    )
    .unwrap();
    assert_eq!(plan.priorities, vec![Some(3), Some(2), Some(1), Some(0)]);
    assert!(plan.locality_weighted);
    // A client in a region no entry names: other regions are alike.
    let plan = priorities(
        &setting,
        true,
        "r5/z1",
        &[],
        &[("r2/z1", &[]), ("r3/z1", &[]), ("r5/z1", &[])],
    )
    .unwrap();
    assert_eq!(plan.priorities, vec![Some(1), Some(1), Some(0)]);
}

#[test]
fn failover_priority_orders_by_the_labels_that_match_from_the_first() {
    let setting = LocalityLoadBalancerSetting {
        failover_priority: vec!["network".into(), "version".into()],
        ..Default::default()
    };
    let plan = priorities(
        &setting,
        true,
        "r1/z1",
        &[("network", "n1"), ("version", "v1")],
        &[
            ("r2", &[("network", "n2"), ("version", "v1")]),
            ("r2", &[("network", "n1"), ("version", "v2")]),
            ("r2", &[("network", "n1"), ("version", "v1")]),
            ("r1/z1", &[("version", "v1")]),
        ],
    )
    .unwrap();
    // Both match: 0; the first matches: 1; the first does not: 2. The locality does
    // not count (no `failover`).
    assert_eq!(plan.priorities, vec![Some(2), Some(1), Some(0), Some(2)]);
    assert!(plan.locality_weighted);
}

#[test]
fn failover_priority_reads_topology_labels_from_localities_and_overrides() {
    let setting = LocalityLoadBalancerSetting {
        failover_priority: vec![ZONE_LABEL.into()],
        ..Default::default()
    };
    let plan = priorities(
        &setting,
        true,
        "r1/z1",
        &[],
        &[("r1/z2", &[]), ("r2/z1", &[])],
    )
    .unwrap();
    assert_eq!(plan.priorities, vec![Some(1), Some(0)]);
    // `label=value` prefers that value, whatever the client's.
    let setting = LocalityLoadBalancerSetting {
        failover_priority: vec!["version=v2".into()],
        ..Default::default()
    };
    let plan = priorities(
        &setting,
        true,
        "r1",
        &[("version", "v1")],
        &[("r1", &[("version", "v1")]), ("r1", &[("version", "v2")])],
    )
    .unwrap();
    assert_eq!(plan.priorities, vec![Some(1), Some(0)]);
}

#[test]
fn failover_priority_with_failover_orders_by_labels_then_locality() {
    let setting = LocalityLoadBalancerSetting {
        failover_priority: vec!["version".into()],
        failover: vec![LocalityFailover {
            from: Some("r1".into()),
            to: Some("r2".into()),
        }],
        ..Default::default()
    };
    let plan = priorities(
        &setting,
        true,
        "r1/z1",
        &[("version", "v1")],
        &[
            ("r3", &[("version", "v1")]),
            ("r2", &[("version", "v1")]),
            ("r1/z1", &[("version", "v2")]),
            ("r1/z1", &[("version", "v1")]),
        ],
    )
    .unwrap();
    assert_eq!(plan.priorities, vec![Some(2), Some(1), Some(3), Some(0)]);
}

#[test]
fn distribute_weighs_localities_and_leaves_out_the_rest() {
    let setting = LocalityLoadBalancerSetting {
        distribute: vec![
            LocalityDistribute {
                from: Some("r9/*".into()),
                to: [("r9".to_string(), 100)].into(),
            },
            LocalityDistribute {
                from: Some("r1/z1/*".into()),
                to: [("r1/z1/*".to_string(), 80), ("r1/z2/*".to_string(), 20)].into(),
            },
        ],
        ..Default::default()
    };
    let endpoints: &[(&str, &[(&str, &str)])] = &[
        ("r1/z1/s1", &[]),
        ("r1/z1/s2", &[]),
        ("r1/z1/s2", &[]),
        ("r1/z2/s1", &[]),
        ("r2/z1/s1", &[]),
    ];
    // Without outlier detection too: `distribute` does not need it.
    let plan = priorities(&setting, false, "r1/z1/s3", &[], endpoints).unwrap();
    assert_eq!(
        plan.priorities,
        vec![Some(0), Some(0), Some(0), Some(0), None]
    );
    assert!(plan.locality_weighted);
    // 80 shared by endpoint weight (1 and 2 of 3), rounded up; 20 to the other zone.
    let want: BTreeMap<String, u32> = [
        ("r1/z1/s1".to_string(), 27),
        ("r1/z1/s2".to_string(), 54),
        ("r1/z2/s1".to_string(), 20),
    ]
    .into();
    assert_eq!(plan.weights, want);
    // A client no `from` matches: every endpoint stays, weighed by its locality.
    let plan = priorities(&setting, true, "r2/z1/s1", &[], endpoints).unwrap();
    assert!(plan.priorities.iter().all(|p| *p == Some(0)));
    assert!(plan.weights.is_empty());
}
