use std::borrow::Cow;

use super::*;
use crate::proto::Node;

#[test]
fn clean_short_text_is_borrowed() {
    assert!(matches!(
        printable("frontend.prod", 64),
        Cow::Borrowed("frontend.prod")
    ));
}

#[test]
fn control_characters_are_escaped() {
    let forged = "bad\n\u{1b}[2Jfrontend.prod  SYNCED";
    let shown = printable(forged, 256);
    assert!(!shown.chars().any(char::is_control), "{shown}");
    assert!(
        shown.contains("\\u{a}") && shown.contains("\\u{1b}"),
        "{shown}"
    );
}

#[test]
fn long_text_is_cut_with_a_note() {
    let long = "x".repeat(10_000);
    let shown = printable(&long, 100);
    assert!(shown.len() < 140, "{}", shown.len());
    assert!(shown.ends_with("(9900 more bytes)"), "{shown}");
}

fn request(id: String) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node {
            id,
            ..Node::default()
        }),
        ..DiscoveryRequest::default()
    }
}

#[test]
fn huge_or_unprintable_node_ids_are_refused_without_echo() {
    let err = check_node(&request("a".repeat(4_000_000))).unwrap_err();
    assert!(err.len() < 200, "{err}");
    let err = check_node(&request("frontend.prod\n".into())).unwrap_err();
    assert!(!err.contains('\n'), "{err}");
    assert!(check_node(&request("frontend.prod".into())).is_ok());
}

#[test]
fn metadata_is_bounded() {
    let mut r = request("a.b".into());
    let node = r.node.as_mut().unwrap();
    node.metadata.insert("version".into(), "v".repeat(5000));
    assert!(check_node(&r).is_err());
    let mut r = request("a.b".into());
    let node = r.node.as_mut().unwrap();
    for i in 0..65 {
        node.metadata.insert(format!("k{i}"), "v".into());
    }
    assert!(check_node(&r).is_err());
}
