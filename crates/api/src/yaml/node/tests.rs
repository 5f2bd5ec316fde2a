use super::{Resolved, Value, parse_documents};

/// How the value of `v: <text>` resolves, printed.
fn scalar(text: &str) -> String {
    let docs = parse_documents(&format!("v: {text}\n"));
    let root = docs[0].root.as_ref().unwrap();
    format!("{:?}", root.get("v").unwrap().resolve().unwrap())
}

#[test]
fn plain_scalars_follow_the_yaml_core_schema() {
    assert_eq!(scalar("~"), format!("{:?}", Resolved::Null));
    assert_eq!(scalar("null"), format!("{:?}", Resolved::Null));
    assert_eq!(scalar(""), format!("{:?}", Resolved::Null));
    assert_eq!(scalar("true"), format!("{:?}", Resolved::Bool(true)));
    assert_eq!(scalar("False"), format!("{:?}", Resolved::Bool(false)));
    assert_eq!(scalar("yes"), format!("{:?}", Resolved::Str("yes")));
    assert_eq!(scalar("42"), format!("{:?}", Resolved::Int(42)));
    assert_eq!(scalar("-7"), format!("{:?}", Resolved::Int(-7)));
    assert_eq!(scalar("0x1F"), format!("{:?}", Resolved::Int(31)));
    assert_eq!(scalar("0o17"), format!("{:?}", Resolved::Int(15)));
    assert_eq!(scalar("1.5"), format!("{:?}", Resolved::Float(1.5)));
    assert_eq!(scalar(".5"), format!("{:?}", Resolved::Float(0.5)));
    assert_eq!(scalar("1e3"), format!("{:?}", Resolved::Float(1000.0)));
    assert_eq!(scalar("30s"), format!("{:?}", Resolved::Str("30s")));
    assert_eq!(scalar("1.2.3"), format!("{:?}", Resolved::Str("1.2.3")));
    assert_eq!(scalar("\"42\""), format!("{:?}", Resolved::Str("42")));
    assert_eq!(scalar("'true'"), format!("{:?}", Resolved::Str("true")));
    assert_eq!(scalar("!!str 42"), format!("{:?}", Resolved::Str("42")));
}

#[test]
fn positions_are_one_based_lines_and_columns() {
    let docs = parse_documents("a:\n  b: [1, {c: d}]\n");
    let root = docs[0].root.as_ref().unwrap();
    let b = root.get("a").unwrap().get("b").unwrap();
    assert_eq!((b.pos.line, b.pos.column), (2, 6));
    let Value::Seq(items) = &b.value else {
        panic!()
    };
    assert_eq!((items[1].pos.line, items[1].pos.column), (2, 10));
}

#[test]
fn a_syntax_error_ends_only_its_document() {
    let docs = parse_documents("a: [1\n---\nb: 2\n");
    assert_eq!(docs.len(), 2);
    assert!(docs[0].error.is_some());
    assert!(docs[1].root.as_ref().unwrap().get("b").is_some());
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    text.push_str("---\nok: true\n");
    let docs = parse_documents(&text);
    let (_, message) = docs[0].error.as_ref().unwrap();
    assert!(message.contains("document too large"), "{message}");
    assert!(docs[1].root.as_ref().unwrap().get("ok").is_some());
}

#[test]
fn deep_nesting_is_refused() {
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let docs = parse_documents(&nested(200));
    let (_, message) = docs[0].error.as_ref().unwrap();
    assert!(message.contains("nested too deeply"), "{message}");
    // Far deeper, the parser's own limit answers first; either way, no stack overflow.
    let docs = parse_documents(&nested(100_000));
    assert!(docs[0].error.is_some());
    assert!(
        parse_documents(&nested(100))
            .first()
            .unwrap()
            .error
            .is_none()
    );
}

#[test]
fn aliases_cannot_build_deep_nesting() {
    // Each anchor nests the previous one 100 levels deeper.
    let mut text = String::from("a0: &a0 x\n");
    for i in 1..20 {
        text.push_str(&format!(
            "a{i}: &a{i} {}*a{}{}\n",
            "[".repeat(100),
            i - 1,
            "]".repeat(100)
        ));
    }
    let docs = parse_documents(&text);
    let (_, message) = docs[0].error.as_ref().unwrap();
    assert!(message.contains("nested too deeply"), "{message}");
}

#[test]
fn a_colon_before_a_flow_indicator_ends_no_scalar_as_in_go() {
    let docs = parse_documents("a: [1.2.3.4, 001:db8::]\nb: [x:, {k: v}]\n");
    let root = docs[0].root.as_ref().unwrap();
    let Value::Map(entries) = &root.value else {
        panic!("{root:?}")
    };
    let items = |i: usize| match &entries[i].1.value {
        Value::Seq(items) => items.clone(),
        v => panic!("{v:?}"),
    };
    let a = items(0);
    assert!(
        matches!(&a[1].value, Value::Scalar { text, .. } if text == "001:db8::"),
        "{:?}",
        a[1]
    );
    let b = items(1);
    assert!(
        matches!(&b[0].value, Value::Scalar { text, .. } if text == "x:"),
        "{:?}",
        b[0]
    );
    assert!(matches!(&b[1].value, Value::Map(_)), "{:?}", b[1]);
}
