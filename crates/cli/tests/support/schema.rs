//! Checks a JSON value against one of the schemas in `docs/schema/`. A small validator
//! for the part of JSON Schema (draft 2020-12) those files use: `type`, `required`,
//! `properties`, `additionalProperties`, `items`, `enum`, `anyOf` and `$ref` to
//! `#/$defs/...`. Any other keyword in a schema is an error here, so a schema cannot
//! rely on something these tests do not check.

use serde_json::Value;

/// Reads `docs/schema/<name>`.
pub(crate) fn load(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/schema")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The ways `value` breaks the schema `name` (its root, or `$defs/<def>`), each with
/// the JSON pointer where; empty when it conforms.
pub(crate) fn violations(name: &str, def: Option<&str>, value: &Value) -> Vec<String> {
    let root = load(name);
    let schema = match def {
        Some(d) => root["$defs"]
            .get(d)
            .unwrap_or_else(|| panic!("{name} has no $defs/{d}")),
        None => &root,
    };
    let mut out = Vec::new();
    check(&root, schema, value, "", &mut out);
    out
}

/// Panics with every violation (and the value) when `value` breaks the schema.
pub(crate) fn assert_valid(name: &str, def: Option<&str>, value: &Value) {
    let v = violations(name, def, value);
    assert!(
        v.is_empty(),
        "output does not conform to docs/schema/{name}{}:\n  {}\n{value:#}",
        def.map(|d| format!(" $defs/{d}")).unwrap_or_default(),
        v.join("\n  ")
    );
}

const ANNOTATIONS: &[&str] = &["$schema", "title", "description", "$defs"];

fn check(root: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        panic!("schema at {at:?} is not an object: {schema}");
    };
    for (key, rule) in schema {
        match key.as_str() {
            k if ANNOTATIONS.contains(&k) => {}
            "$ref" => {
                let name = rule
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/$defs/"))
                    .unwrap_or_else(|| panic!("unsupported $ref {rule}"));
                let target = root["$defs"]
                    .get(name)
                    .unwrap_or_else(|| panic!("$ref to a missing $defs/{name}"));
                check(root, target, value, at, out);
            }
            "type" => {
                let types: Vec<&str> = match rule {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                    _ => panic!("bad type {rule}"),
                };
                if !types.iter().any(|t| has_type(value, t)) {
                    out.push(format!("{at}: {} is not of type {rule}", brief(value)));
                }
            }
            "enum" => {
                let allowed = rule.as_array().expect("enum is an array");
                if !allowed.contains(value) {
                    out.push(format!("{at}: {} is not one of {rule}", brief(value)));
                }
            }
            "required" => {
                if let Some(obj) = value.as_object() {
                    for k in rule.as_array().expect("required is an array") {
                        let k = k.as_str().expect("required names are strings");
                        if !obj.contains_key(k) {
                            out.push(format!("{at}: required key {k:?} is missing"));
                        }
                    }
                }
            }
            "properties" => {
                if let Some(obj) = value.as_object() {
                    for (k, sub) in rule.as_object().expect("properties is an object") {
                        if let Some(v) = obj.get(k) {
                            check(root, sub, v, &format!("{at}/{k}"), out);
                        }
                    }
                }
            }
            "additionalProperties" => {
                let Some(obj) = value.as_object() else {
                    continue;
                };
                let known = schema.get("properties").and_then(Value::as_object);
                for (k, v) in obj {
                    if known.is_some_and(|p| p.contains_key(k)) {
                        continue;
                    }
                    match rule {
                        Value::Bool(false) => out.push(format!("{at}: unexpected key {k:?}")),
                        Value::Bool(true) => {}
                        sub => check(root, sub, v, &format!("{at}/{k}"), out),
                    }
                }
            }
            "items" => {
                if let Some(items) = value.as_array() {
                    for (i, v) in items.iter().enumerate() {
                        check(root, rule, v, &format!("{at}/{i}"), out);
                    }
                }
            }
            "anyOf" => {
                let branches = rule.as_array().expect("anyOf is an array");
                let fits = branches.iter().any(|b| {
                    let mut errs = Vec::new();
                    check(root, b, value, at, &mut errs);
                    errs.is_empty()
                });
                if !fits {
                    out.push(format!("{at}: {} fits none of anyOf", brief(value)));
                }
            }
            other => panic!("schema keyword {other:?} (at {at:?}) is not checked by these tests"),
        }
    }
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => panic!("unknown type {t:?}"),
    }
}

fn brief(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(77).collect::<String>())
    } else {
        s
    }
}
