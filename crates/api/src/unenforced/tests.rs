use super::{UNENFORCED, path_matches, segments};

#[test]
fn segments_split_keys_indexes_and_quoted_keys() {
    assert_eq!(
        segments(r#"spec.http[0]["a.b/c"].x"#),
        ["spec", "http", "[0]", "a.b/c", "x"]
    );
}

#[test]
fn patterns_match_indexes_and_names() {
    assert!(path_matches("spec.http[*].fault", "spec.http[3].fault"));
    assert!(!path_matches(
        "spec.http[*].fault",
        "spec.http[3].fault.abort"
    ));
    assert!(!path_matches("spec.http[*].fault", "spec.http.fault"));
    assert!(path_matches("spec.*", "spec.mtls"));
    assert!(!path_matches("spec.*", "spec[0]"));
    assert!(!path_matches("spec.*", "spec"));
}

#[test]
fn every_pattern_names_fields_of_its_kind() {
    // Patterns are written in Istio's camelCase, start at `spec`, and are unique.
    let mut seen = std::collections::HashSet::new();
    for row in UNENFORCED {
        assert!(
            row.pattern == "spec" || row.pattern.starts_with("spec."),
            "{row:?}"
        );
        assert!(!row.pattern.contains('_'), "{row:?}");
        assert!(
            seen.insert((row.kind, row.pattern)),
            "duplicate row {row:?}"
        );
        assert!(!row.reason.is_empty());
    }
}
