//! VirtualService delegation: the delegate's rules take the root rule's place, their
//! matches merged with its match, the root's fields filling in what they leave unset.

use skiff_model::config::StringMatch;

use super::*;

#[test]
fn delegate_rules_replace_the_root_rule_with_merged_matches() {
    let mesh = mesh("delegate");
    let config = compile(&mesh, "frontend.prod");
    let routes = &vhost(&config, 80, "reviews.prod.svc.cluster.local:80").routes;
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
    // The /other rule is wider than the root's /reviews: dropped.
    assert_eq!(names, ["prod/root/0.0", "prod/root/0.2", "prod/root/1"]);
    assert_eq!(
        routes[0].matches[0].uri,
        Some(StringMatch::Prefix("/reviews/v2".into()))
    );
    assert_eq!(
        forward(&routes[0]),
        [(
            "outbound|80|v2|reviews.prod.svc.cluster.local".to_string(),
            100
        )]
    );
    // The root's timeout where the delegate rule has none.
    assert_eq!(routes[0].timeout, Some(std::time::Duration::from_secs(5)));
    // No match of its own: the root's; its own timeout wins.
    assert_eq!(
        routes[1].matches[0].uri,
        Some(StringMatch::Prefix("/reviews".into()))
    );
    assert_eq!(routes[1].timeout, Some(std::time::Duration::from_secs(3)));
    assert_eq!(
        forward(&routes[2]),
        [(
            "outbound|80|v1|reviews.prod.svc.cluster.local".to_string(),
            100
        )]
    );
    let dropped = findings(&mesh, Code::UnknownDelegate);
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert!(
        dropped[0].message.contains("not narrower"),
        "{}",
        dropped[0].message
    );
}
