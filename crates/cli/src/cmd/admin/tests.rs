use super::*;

#[test]
fn tables_align_their_columns() {
    let t = table(
        &["NAME", "PORT"],
        &[
            vec!["backend.prod".into(), "80".into()],
            vec!["a".into(), "9080".into()],
        ],
    );
    assert_eq!(
        t,
        "NAME           PORT\nbackend.prod   80\na              9080\n"
    );
}

#[test]
fn words_are_strings_or_compact_json() {
    assert_eq!(word(&serde_json::json!("HTTP")), "HTTP");
    assert_eq!(word(&serde_json::json!(null)), "-");
    assert_eq!(
        word(&serde_json::json!({"prefix": "/a"})),
        r#"{"prefix":"/a"}"#
    );
}
