use super::*;

#[test]
fn parse_and_display_round_trip() {
    let text = "spiffe://cluster.local/ns/prod/sa/backend-v1";
    let id: SpiffeId = text.parse().unwrap();
    assert_eq!(id.trust_domain(), "cluster.local");
    assert_eq!(id.namespace(), "prod");
    assert_eq!(id.service_account(), "backend-v1");
    assert_eq!(id.to_string(), text);
    assert_eq!(
        SpiffeId::new("cluster.local", "prod", "backend-v1").unwrap(),
        id
    );
}

#[test]
fn control_plane_id() {
    let id = SpiffeId::control_plane("example.org").unwrap();
    assert_eq!(
        id.to_string(),
        "spiffe://example.org/ns/skiff-system/sa/skiff-control"
    );
}

fn reason(input: &str) -> String {
    match input.parse::<SpiffeId>() {
        Err(IdentityError::InvalidSpiffeId { input: got, reason }) => {
            assert_eq!(got, input);
            reason
        }
        other => panic!("{input}: expected an InvalidSpiffeId error, got {other:?}"),
    }
}

#[test]
fn bad_inputs_say_what_is_wrong() {
    assert!(reason("").contains("does not start with `spiffe://`"));
    assert!(reason("https://cluster.local/ns/a/sa/b").contains("does not start with"));
    assert!(reason("SPIFFE://cluster.local/ns/a/sa/b").contains("lower case"));
    assert!(reason("spiffe:///ns/a/sa/b").contains("trust domain is empty"));
    assert!(reason("spiffe://Cluster.local/ns/a/sa/b").contains("has `C`"));
    assert!(reason("spiffe://cluster.local:8080/ns/a/sa/b").contains("has `:`"));
    assert!(reason("spiffe://cluster.local").contains("the path is `/`"));
    assert!(reason("spiffe://cluster.local/ns/a").contains("the path is `/ns/a`"));
    assert!(reason("spiffe://cluster.local/ns/a/sa/b/c").contains("not `/ns/"));
    assert!(reason("spiffe://cluster.local/sa/b/ns/a").contains("not `/ns/"));
    assert!(reason("spiffe://cluster.local/ns//sa/b").contains("namespace is empty"));
    assert!(reason("spiffe://cluster.local/ns/a/sa/").contains("service account is empty"));
    assert!(reason("spiffe://cluster.local/ns/../sa/b").contains("cannot be `..`"));
    assert!(reason("spiffe://cluster.local/ns/a/sa/b?x=1").contains("has `?`"));
    assert!(reason("spiffe://cluster.local/ns/a b/sa/b").contains("has ` `"));
}

#[test]
fn new_checks_parts() {
    let err = SpiffeId::new("cluster.local", "prod", "a/b").unwrap_err();
    assert!(
        err.to_string().contains("service account `a/b` has `/`"),
        "{err}"
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn valid_parts_round_trip(
            td in "[a-z0-9][a-z0-9.-]{0,30}",
            ns in "[a-zA-Z0-9_-][a-zA-Z0-9._-]{0,20}",
            sa in "[a-zA-Z0-9_-][a-zA-Z0-9._-]{0,20}",
        ) {
            let id = SpiffeId::new(td.clone(), ns.clone(), sa.clone()).unwrap();
            let text = id.to_string();
            prop_assert_eq!(text.parse::<SpiffeId>().unwrap(), id);
            prop_assert_eq!(text, format!("spiffe://{td}/ns/{ns}/sa/{sa}"));
        }

        #[test]
        fn any_input_parses_or_errs_and_what_parses_prints_back(input in "\\PC{0,60}") {
            if let Ok(id) = input.parse::<SpiffeId>() {
                prop_assert_eq!(id.to_string(), input);
            }
        }

        #[test]
        fn near_misses_parse_or_err_without_panic(
            tail in "[a-zA-Z0-9./:?#@ _-]{0,40}",
        ) {
            let input = format!("spiffe://{tail}");
            if let Ok(id) = input.parse::<SpiffeId>() {
                prop_assert_eq!(id.to_string(), input);
            }
        }
    }
}
