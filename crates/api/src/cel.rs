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
    ("response", &["code", "code_details", "grpc_status", "size"]),
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
    let program = compile(source)?;
    let mut walk = Walk::default();
    walk.expr(program.expression())
        .map_err(|e| format!("{CANNOT_EVALUATE}: {e}"))?;
    Ok(program)
}

/// Checks a metric tag's value (`tagOverrides[].value`) as [`check`] does, with what
/// Istio's stats filter adds to the attributes: `filter_state`, and a bare name,
/// which reads the filter state `wasm.<name>` (a Wasm plugin's output, such as
/// attribute-gen's `istio_operationId`). skiff keeps no filter state (it runs no Wasm
/// plugins), so those evaluate to nothing and the tag shows `unknown`, as Istio shows a
/// value it cannot find: returned as a note to warn about, not an error.
pub fn check_tag(source: &str) -> Result<(::cel::Program, Option<String>), String> {
    let program = compile(source)?;
    let mut walk = Walk {
        tag: true,
        ..Walk::default()
    };
    walk.expr(program.expression())
        .map_err(|e| format!("{CANNOT_EVALUATE}: {e}"))?;
    let note = (!walk.filter_state.is_empty()).then(|| {
        format!(
            "reads filter state ({}), which Envoy filters and Wasm plugins set; skiff keeps \
             none, so this tag is `unknown`",
            walk.filter_state.join(", ")
        )
    });
    Ok((program, note))
}

fn compile(source: &str) -> Result<::cel::Program, String> {
    ::cel::Program::compile(source).map_err(|e| {
        format!(
            "not a CEL expression: {}",
            e.to_string().replace('\n', "; ")
        )
    })
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

/// The walk of an expression: the names its comprehensions bind, and, for a tag value,
/// the filter state it reads.
#[derive(Default)]
struct Walk {
    bound: Vec<String>,
    /// A tag value: `filter_state` and bare names (filter state `wasm.<name>`) allowed.
    tag: bool,
    filter_state: Vec<String>,
}

impl Walk {
    fn is_bound(&self, name: &str) -> bool {
        self.bound.iter().any(|b| b == name)
    }

    fn expr(&mut self, e: &IdedExpr) -> Result<(), String> {
        match &e.expr {
            Expr::Ident(name) => {
                if self.is_bound(name) {
                    return Ok(());
                }
                if self.tag && name == "node" {
                    return Err(
                        "`node` (the proxy's Envoy node, which Istio's stats filter adds) is \
                         not implemented"
                            .to_owned(),
                    );
                }
                if self.tag && name == FILTER_STATE {
                    self.filter_state.push(format!("`{FILTER_STATE}`"));
                    return Ok(());
                }
                if ATTRIBUTES.iter().any(|(root, _)| root == name) {
                    return Err(format!(
                        "`{name}` alone is not an attribute; name one of its fields: {}",
                        fields_of(name)
                    ));
                }
                if self.tag {
                    self.filter_state.push(format!("`wasm.{name}`"));
                    return Ok(());
                }
                Err(unknown(name))
            }
            Expr::Select(s) => {
                if let Expr::Ident(root) = &s.operand.expr
                    && !self.is_bound(root)
                    && ATTRIBUTES.iter().any(|(r, _)| r == root)
                {
                    let (_, fields) = ATTRIBUTES
                        .iter()
                        .find(|(r, _)| r == root)
                        .expect("found above");
                    if !fields.contains(&s.field.as_str()) {
                        return Err(format!(
                            "no attribute `{root}.{}`; {root} has: {}",
                            s.field,
                            fields_of(root)
                        ));
                    }
                    return Ok(());
                }
                self.expr(&s.operand)
            }
            Expr::Call(c) => {
                if let Some(t) = &c.target {
                    self.expr(t)?;
                }
                c.args.iter().try_for_each(|a| self.expr(a))
            }
            Expr::List(l) => l.elements.iter().try_for_each(|a| self.expr(a)),
            Expr::Map(m) => m.entries.iter().try_for_each(|en| match &en.expr {
                EntryExpr::MapEntry(me) => {
                    self.expr(&me.key)?;
                    self.expr(&me.value)
                }
                EntryExpr::StructField(f) => self.expr(&f.value),
            }),
            Expr::Comprehension(c) => {
                self.expr(&c.iter_range)?;
                self.expr(&c.accu_init)?;
                let before = self.bound.len();
                self.bound.push(c.iter_var.clone());
                self.bound.extend(c.iter_var2.clone());
                self.bound.push(c.accu_var.clone());
                let r = [&c.loop_cond, &c.loop_step, &c.result]
                    .into_iter()
                    .try_for_each(|x| self.expr(x));
                self.bound.truncate(before);
                r
            }
            Expr::Struct(_) => Err("message literals are not supported".to_owned()),
            Expr::Literal(_) | Expr::Unspecified => Ok(()),
        }
    }
}

/// Envoy's attribute of the stream's filter state (objects by name).
const FILTER_STATE: &str = "filter_state";

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

    #[test]
    fn tag_values_may_read_filter_state_and_are_told_it_is_empty() {
        let (_, note) = check_tag("request.host").unwrap();
        assert_eq!(note, None);
        check_tag("string(response.code)").unwrap();
        check_tag("request.headers['x-foo']").unwrap();
        let (_, note) = check_tag("add").unwrap();
        assert!(note.unwrap().contains("`wasm.add`"));
        let (_, note) = check_tag("filter_state['wasm.x']").unwrap();
        assert!(note.unwrap().contains("`filter_state`"));
        let e = check_tag("request.nope").unwrap_err();
        assert!(e.contains("`request.nope`"), "{e}");
        let e = check_tag("request").unwrap_err();
        assert!(e.contains("alone"), "{e}");
        let e = check_tag("node.id").unwrap_err();
        assert!(e.contains("`node`"), "{e}");
        // The access-log filter has no such names.
        assert!(check("add").is_err());
    }
}
