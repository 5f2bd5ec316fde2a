//! The CEL expressions of the Telemetry API (`accessLogging[].filter.expression`,
//! `metrics[].overrides[].tagOverrides[].value`) and the request attributes skiff
//! evaluates them on.
//!
//! Istio hands these expressions to Envoy, which evaluates them on its attribute
//! vocabulary (`request.*`, `response.*`, `connection.*`, `source.*`, `destination.*`,
//! `upstream.*`). skiff parses them with a CEL implementation and evaluates the
//! attributes in [`ATTRIBUTES`]; an expression that names another attribute is refused
//! when the file is loaded, so it never silently evaluates to an error on every request.

use ::cel::common::ast::{EntryExpr, Expr, IdedExpr};

/// The attributes skiff evaluates: each root with its fields.
pub const ATTRIBUTES: &[(&str, &[&str])] = &[
    (
        "request",
        &[
            "path",
            "url_path",
            "host",
            "scheme",
            "method",
            "headers",
            "useragent",
            "id",
            "protocol",
            "query",
            "size",
        ],
    ),
    ("response", &["code", "code_details", "size"]),
    (
        "connection",
        &["mtls", "requested_server_name", "uri_san_peer_certificate"],
    ),
    ("source", &["address", "port"]),
    ("destination", &["address", "port"]),
    ("upstream", &["address", "port"]),
];

/// How every refusal of an expression Istio would accept begins (Istio hands CEL to
/// Envoy unchecked; skiff refuses at load what it would fail to evaluate).
pub const CANNOT_EVALUATE: &str = "skiff cannot evaluate this CEL expression";

/// Parses `source` and checks that every attribute it reads is one skiff evaluates.
/// The error says what to change.
pub fn check(source: &str) -> Result<::cel::Program, String> {
    let program = ::cel::Program::compile(source).map_err(|e| {
        format!(
            "not a CEL expression: {}",
            e.to_string().replace('\n', "; ")
        )
    })?;
    let mut bound = Vec::new();
    walk(program.expression(), &mut bound).map_err(|e| format!("{CANNOT_EVALUATE}: {e}"))?;
    Ok(program)
}

/// Whether the expression reads request headers (the proxy then keeps them for it).
pub fn reads_headers(program: &::cel::Program) -> bool {
    fn any(e: &IdedExpr) -> bool {
        match &e.expr {
            Expr::Select(s) => {
                (s.field == "headers"
                    && matches!(&s.operand.expr, Expr::Ident(r) if r == "request"))
                    || any(&s.operand)
            }
            Expr::Call(c) => c.target.as_deref().is_some_and(any) || c.args.iter().any(any),
            Expr::List(l) => l.elements.iter().any(any),
            Expr::Map(m) => m.entries.iter().any(|en| match &en.expr {
                EntryExpr::MapEntry(me) => any(&me.key) || any(&me.value),
                EntryExpr::StructField(f) => any(&f.value),
            }),
            Expr::Comprehension(c) => {
                any(&c.iter_range)
                    || any(&c.accu_init)
                    || any(&c.loop_cond)
                    || any(&c.loop_step)
                    || any(&c.result)
            }
            _ => false,
        }
    }
    any(program.expression())
}

/// Whether the expression reads no attribute at all (a constant, evaluated once).
pub fn is_constant(program: &::cel::Program) -> bool {
    program.references().variables().is_empty()
}

fn walk(e: &IdedExpr, bound: &mut Vec<String>) -> Result<(), String> {
    match &e.expr {
        Expr::Ident(name) => {
            if bound.iter().any(|b| b == name) {
                return Ok(());
            }
            if ATTRIBUTES.iter().any(|(root, _)| root == name) {
                return Err(format!(
                    "`{name}` alone is not an attribute; name one of its fields: {}",
                    fields_of(name)
                ));
            }
            Err(unknown(name))
        }
        Expr::Select(s) => {
            if let Expr::Ident(root) = &s.operand.expr
                && !bound.iter().any(|b| b == root)
            {
                let Some((_, fields)) = ATTRIBUTES.iter().find(|(r, _)| r == root) else {
                    return Err(unknown(root));
                };
                if !fields.contains(&s.field.as_str()) {
                    return Err(format!(
                        "no attribute `{root}.{}`; {root} has: {}",
                        s.field,
                        fields_of(root)
                    ));
                }
                return Ok(());
            }
            walk(&s.operand, bound)
        }
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                walk(t, bound)?;
            }
            c.args.iter().try_for_each(|a| walk(a, bound))
        }
        Expr::List(l) => l.elements.iter().try_for_each(|a| walk(a, bound)),
        Expr::Map(m) => m.entries.iter().try_for_each(|en| match &en.expr {
            EntryExpr::MapEntry(me) => {
                walk(&me.key, bound)?;
                walk(&me.value, bound)
            }
            EntryExpr::StructField(f) => walk(&f.value, bound),
        }),
        Expr::Comprehension(c) => {
            walk(&c.iter_range, bound)?;
            walk(&c.accu_init, bound)?;
            let before = bound.len();
            bound.push(c.iter_var.clone());
            bound.extend(c.iter_var2.clone());
            bound.push(c.accu_var.clone());
            let r = [&c.loop_cond, &c.loop_step, &c.result]
                .into_iter()
                .try_for_each(|x| walk(x, bound));
            bound.truncate(before);
            r
        }
        Expr::Struct(_) => Err("message literals are not supported".to_owned()),
        Expr::Literal(_) | Expr::Unspecified => Ok(()),
    }
}

fn fields_of(root: &str) -> String {
    ATTRIBUTES
        .iter()
        .find(|(r, _)| *r == root)
        .map(|(_, f)| f.join(", "))
        .unwrap_or_default()
}

fn unknown(name: &str) -> String {
    let roots: Vec<&str> = ATTRIBUTES.iter().map(|(r, _)| *r).collect();
    format!(
        "no attribute `{name}`; skiff evaluates the fields of {}",
        roots.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_attributes_pass_and_others_are_named() {
        check("response.code >= 500").unwrap();
        check("request.headers['x-debug'] == '1' && connection.mtls").unwrap();
        check("[1, 2].exists(x, x == response.code)").unwrap();
        let e = check("response.duration > 10").unwrap_err();
        assert!(e.contains("`response.duration`"), "{e}");
        let e = check("filter_state['x'] == 'y'").unwrap_err();
        assert!(e.contains("`filter_state`"), "{e}");
        let e = check("response.code >=").unwrap_err();
        assert!(e.starts_with("not a CEL expression"), "{e}");
        assert!(reads_headers(&check("has(request.headers.foo)").unwrap()));
        assert!(!reads_headers(&check("response.code == 503").unwrap()));
        assert!(is_constant(&check("'fixed'").unwrap()));
        assert!(!is_constant(&check("request.host").unwrap()));
    }
}
