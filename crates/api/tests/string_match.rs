//! Property tests: `StringMatch::matches` agrees with a reference implementation, and
//! string matches survive serde and YAML round trips.

use proptest::prelude::*;
use skiff_api::{HeaderMatch, StringMatch};

/// Reference semantics, written without the code under test: exact is byte equality,
/// prefix compares the leading bytes, and Istio's regexes must match the whole value.
fn reference(m: &StringMatch, value: &str) -> bool {
    match m {
        StringMatch::Exact(s) => value.as_bytes() == s.as_bytes(),
        StringMatch::Prefix(p) => {
            value.len() >= p.len() && value.as_bytes()[..p.len()] == *p.as_bytes()
        }
        StringMatch::Regex(_) => unreachable!("regexes are checked against literal models"),
    }
}

fn text() -> impl Strategy<Value = String> {
    // Mostly a small alphabet so that equal and prefixed strings actually occur.
    prop_oneof![
        3 => "[ab/]{0,6}",
        1 => "[ -~]{0,12}",
        1 => "[a-zé日/.*+?()\\[\\]|^$\\\\]{0,8}",
    ]
}

proptest! {
    #[test]
    fn exact_agrees_with_reference(s in text(), v in text()) {
        let m = StringMatch::Exact(s);
        prop_assert_eq!(m.matches(&v), reference(&m, &v));
    }

    #[test]
    fn exact_matches_itself(s in text()) {
        prop_assert!(StringMatch::Exact(s.clone()).matches(&s));
    }

    #[test]
    fn prefix_agrees_with_reference(p in text(), v in text()) {
        let m = StringMatch::Prefix(p);
        prop_assert_eq!(m.matches(&v), reference(&m, &v));
    }

    #[test]
    fn prefix_matches_every_extension(p in text(), rest in text()) {
        let value = format!("{p}{rest}");
        prop_assert!(StringMatch::Prefix(p).matches(&value));
    }

    /// A regex built from a literal matches exactly that literal: the match is anchored
    /// at both ends.
    #[test]
    fn literal_regex_is_exact(s in text(), v in text()) {
        let m = StringMatch::Regex(regex::escape(&s));
        prop_assert_eq!(m.matches(&v), v == s);
    }

    /// `literal.*` behaves as a prefix match.
    #[test]
    fn literal_star_regex_is_prefix(p in text(), v in "[ab/\n]{0,8}") {
        let m = StringMatch::Regex(format!("{}(?s:.*)", regex::escape(&p)));
        prop_assert_eq!(m.matches(&v), v.starts_with(p.as_str()));
    }

    /// An alternation is anchored as a whole: `a|b` matches only `a` or `b`.
    #[test]
    fn alternation_is_anchored_as_a_whole(a in "[ab]{1,4}", b in "[ab]{1,4}", v in "[ab]{0,9}") {
        let m = StringMatch::Regex(format!("{}|{}", regex::escape(&a), regex::escape(&b)));
        prop_assert_eq!(m.matches(&v), v == a || v == b);
    }

    #[test]
    fn serde_json_round_trip(m in string_match()) {
        let json = serde_json::to_string(&m).unwrap();
        let back: StringMatch = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, m);
    }

    /// Through skiff's own YAML loader: a match written (as JSON, which is YAML) in a
    /// VirtualService comes back equal, for uri and for a header.
    #[test]
    fn yaml_round_trip(m in yaml_safe_string_match()) {
        let json = serde_json::to_string(&m).unwrap();
        let yaml = format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\n\
             spec:\n  hosts: [svc]\n  http:\n  - match:\n    - uri: {json}\n      headers:\n        x-h: {json}\n    route:\n    - destination: {{host: svc}}\n"
        );
        let loaded = skiff_api::load_str("vs.yaml", &yaml);
        let vs = loaded.resources.virtual_services().next();
        // A regex that does not compile is rejected by validation; every other one loads.
        if let StringMatch::Regex(re) = &m
            && (regex::Regex::new(re).is_err() || re.is_empty())
        {
            prop_assert!(vs.is_none());
            return Ok(());
        }
        prop_assert!(vs.is_some(), "{:?}", loaded.diagnostics);
        let vs = vs.unwrap();
        let mr = &vs.http[0].r#match[0];
        prop_assert_eq!(mr.uri.as_ref(), Some(&m));
        prop_assert_eq!(mr.headers.get("x-h"), Some(&HeaderMatch::Value(m.clone())));
    }
}

fn string_match() -> impl Strategy<Value = StringMatch> {
    prop_oneof![
        any::<String>().prop_map(StringMatch::Exact),
        any::<String>().prop_map(StringMatch::Prefix),
        any::<String>().prop_map(StringMatch::Regex),
    ]
}

/// Strings made only of characters YAML allows in a stream (printable).
fn yaml_safe_string_match() -> impl Strategy<Value = StringMatch> {
    let s = "[ -~\u{a0}-\u{d7ff}\t]{0,16}";
    prop_oneof![
        s.prop_map(StringMatch::Exact),
        s.prop_map(StringMatch::Prefix),
        s.prop_map(StringMatch::Regex),
    ]
}

#[test]
fn empty_header_match_means_present() {
    let loaded = skiff_api::load_str(
        "vs.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [svc]\n  http:\n  - match:\n    - headers: {x-debug: {}}\n      withoutHeaders: {x-skip: {}}\n    route:\n    - destination: {host: svc}\n",
    );
    let vs = loaded.resources.virtual_services().next().unwrap();
    let m = &vs.http[0].r#match[0];
    assert_eq!(m.headers["x-debug"], HeaderMatch::Present);
    assert_eq!(m.without_headers["x-skip"], HeaderMatch::Present);
    assert_eq!(serde_json::to_string(&HeaderMatch::Present).unwrap(), "{}");
}

#[test]
fn an_empty_uri_match_is_an_error() {
    let loaded = skiff_api::load_str(
        "vs.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [svc]\n  http:\n  - match:\n    - uri: {}\n    route:\n    - destination: {host: svc}\n",
    );
    let errors: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            "vs.yaml:8:12: VirtualService default/vs: spec.http[0].match[0].uri: set one of `exact`, `prefix` or `regex`"
        ]
    );
}
