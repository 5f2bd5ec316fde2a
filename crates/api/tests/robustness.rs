//! The loader reads untrusted text: whatever it is given, it answers with resources and
//! diagnostics, never a panic, and every diagnostic points inside the text.

use proptest::prelude::*;

const SEEDS: &[&str] = &[
    include_str!("fixtures/seeds/002-service-mesh-istio/virtualservice.yaml"),
    include_str!("fixtures/seeds/002-service-mesh-istio/destinationrule.yaml"),
    include_str!("fixtures/seeds/002-service-mesh-istio/authorization-policy.yaml"),
    include_str!("fixtures/seeds/002-service-mesh-istio/gateway.yaml"),
    include_str!("fixtures/seeds/004-handbook/frontend.yaml"),
];

fn check(text: &str) {
    let loaded = skiff_api::load_str("fuzz.yaml", text);
    let lines = text.lines().count().max(1) as u32 + 1;
    for d in &loaded.diagnostics {
        if let Some(p) = d.position {
            assert!(
                p.line >= 1 && p.line <= lines,
                "{d} (text has {lines} lines)"
            );
            assert!(p.column >= 1, "{d}");
        }
        let _ = d.to_string();
    }
}

/// An edit of a seed: cut a range, duplicate a line, or insert some text.
#[derive(Debug, Clone)]
enum Edit {
    Cut(usize, usize),
    DuplicateLine(usize),
    Insert(usize, String),
}

fn apply(seed: &str, edits: &[Edit]) -> String {
    let mut s: Vec<char> = seed.chars().collect();
    for e in edits {
        match e {
            Edit::Cut(at, len) if !s.is_empty() => {
                let at = at % s.len();
                let end = (at + len).min(s.len());
                s.drain(at..end);
            }
            Edit::DuplicateLine(n) => {
                let text: String = s.iter().collect();
                let lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let i = n % lines.len();
                    let mut out: Vec<&str> = lines.clone();
                    out.insert(i, lines[i]);
                    s = (out.join("\n") + "\n").chars().collect();
                }
            }
            Edit::Insert(at, text) => {
                let at = if s.is_empty() { 0 } else { at % s.len() };
                for (i, c) in text.chars().enumerate() {
                    s.insert(at + i, c);
                }
            }
            Edit::Cut(..) => {}
        }
    }
    s.into_iter().collect()
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(a, l)| Edit::Cut(a, l)),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), "[ \n:{}\\[\\]\\-&*!|>'\"#a-z0-9]{1,8}")
            .prop_map(|(a, t)| Edit::Insert(a, t)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn edited_seeds_never_panic(seed in 0..SEEDS.len(), edits in proptest::collection::vec(edit(), 1..6)) {
        check(&apply(SEEDS[seed], &edits));
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text);
    }

    #[test]
    fn yaml_shaped_noise_never_panics(text in "([a-zA-Z]{1,6}: ?|- |  |\\n|[\\[\\]{},]|&a |\\*a|<<: |\"|'|#|~|[0-9.]{1,4}){0,60}") {
        check(&text);
    }
}
