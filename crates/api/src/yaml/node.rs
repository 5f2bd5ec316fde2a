//! The node tree: every node knows where it was written.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Span};

use crate::resource::Position;

/// A YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) pos: Position,
    pub(crate) value: Value,
}

/// The value of a node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A scalar with its text, whether it was plain (unquoted, so its type is inferred)
    /// and its core-schema tag (`str`, `int`, …) if one was written.
    Scalar {
        text: String,
        plain: bool,
        tag: Option<String>,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order, duplicates kept (they are reported when read).
    Map(Vec<(Node, Node)>),
}

/// What a scalar means under the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Resolved<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(&'a str),
}

impl Node {
    /// The core-schema meaning of a scalar node (`None` for collections).
    pub(crate) fn resolve(&self) -> Option<Resolved<'_>> {
        let Value::Scalar { text, plain, tag } = &self.value else {
            return None;
        };
        Some(match tag.as_deref() {
            Some("str") => Resolved::Str(text),
            Some("null") => Resolved::Null,
            Some("bool") => resolve_bool(text).map_or(Resolved::Str(text), Resolved::Bool),
            Some("int") => resolve_int(text).map_or(Resolved::Str(text), Resolved::Int),
            Some("float") => resolve_float(text)
                .or_else(|| resolve_int(text).map(|i| i as f64))
                .map_or(Resolved::Str(text), Resolved::Float),
            _ if !plain => Resolved::Str(text),
            _ => resolve_plain(text),
        })
    }

    /// The text of a scalar node.
    pub(crate) fn scalar_text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Looks up a key of a mapping node.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.scalar_text() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short description for "expected X, found Y" messages.
    pub(crate) fn describe(&self) -> String {
        match &self.value {
            Value::Seq(_) => "a list".to_owned(),
            Value::Map(_) => "a mapping".to_owned(),
            Value::Scalar { text, .. } => match self.resolve() {
                Some(Resolved::Null) => "nothing (null)".to_owned(),
                Some(Resolved::Bool(b)) => format!("the boolean {b}"),
                Some(Resolved::Int(_)) => format!("the number {text}"),
                Some(Resolved::Float(_)) => format!("the number {text}"),
                _ => format!("{text:?}"),
            },
        }
    }
}

fn resolve_plain(text: &str) -> Resolved<'_> {
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Resolved::Null;
    }
    if let Some(b) = resolve_bool(text) {
        return Resolved::Bool(b);
    }
    if let Some(i) = resolve_int(text) {
        return Resolved::Int(i);
    }
    if let Some(f) = resolve_float(text) {
        return Resolved::Float(f);
    }
    Resolved::Str(text)
}

fn resolve_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn resolve_int(text: &str) -> Option<i128> {
    let (neg, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let value = if let Some(hex) = digits.strip_prefix("0x") {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        i128::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        if oct.is_empty() || !oct.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return None;
        }
        i128::from_str_radix(oct, 8).ok()?
    } else {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()?
    };
    Some(if neg { -value } else { value })
}

fn resolve_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    // [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let ok_mantissa = match frac {
        Some(f) => digits(int) && digits(f) && !(int.is_empty() && f.is_empty()),
        None => !int.is_empty() && digits(int),
    };
    let ok_exponent = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    if ok_mantissa && ok_exponent && (frac.is_some() || exponent.is_some()) {
        text.parse().ok()
    } else {
        None
    }
}

/// One document of a YAML stream.
#[derive(Debug)]
pub(crate) struct Document {
    /// Index in the stream, from 0.
    pub(crate) index: usize,
    /// The root node; `None` for an empty document.
    pub(crate) root: Option<Node>,
    /// A syntax error that ended the document, with its position.
    pub(crate) error: Option<(Position, String)>,
}

fn position(span: &Span) -> Position {
    Position {
        line: u32::try_from(span.start.line()).unwrap_or(u32::MAX),
        column: u32::try_from(span.start.col() + 1).unwrap_or(u32::MAX),
    }
}

enum Frame {
    Seq(Position, Vec<Node>),
    Map(Position, Vec<(Node, Node)>, Option<Node>),
}

/// Parses every document of a YAML stream. A syntax error ends its document (reported
/// in [`Document::error`]); parsing resumes at the next `---`.
pub(crate) fn parse_documents(text: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut parser = Parser::new_from_str(text);
    // Anchored nodes, with their size in values and their depth (aliases copy them).
    let mut anchors: HashMap<usize, (Node, usize, usize)> = HashMap::new();
    let mut stack: Vec<(Frame, usize)> = Vec::new();
    let mut current: Option<Document> = None;
    // Values in the current document, aliases expanded: bounded, so that a few
    // nested aliases cannot make a small file take all memory.
    let mut size: usize = 0;
    let mut failure: Option<(Position, String)> = None;
    while let Some(next) = parser.next_event() {
        let (event, span) = match next {
            Ok(ev) => ev,
            Err(err) => {
                let marker = err.marker();
                let pos = Position {
                    line: u32::try_from(marker.line()).unwrap_or(u32::MAX),
                    column: u32::try_from(marker.col() + 1).unwrap_or(u32::MAX),
                };
                failure = Some((pos, format!("YAML syntax error: {}", err.info())));
                (Event::StreamEnd, Span::default())
            }
        };
        if let Some((pos, message)) = failure.take() {
            let doc = current.take().unwrap_or(Document {
                index: docs.len(),
                root: None,
                error: None,
            });
            docs.push(Document {
                root: None,
                error: Some((pos, message)),
                ..doc
            });
            stack.clear();
            anchors.clear();
            size = 0;
            match parser.proceed_next_document() {
                Ok(true) => continue,
                _ => break,
            }
        }
        let pos = position(&span);
        let (node, anchor) = match event {
            Event::StreamStart | Event::StreamEnd => continue,
            Event::DocumentStart(..) => {
                current = Some(Document {
                    index: docs.len(),
                    root: None,
                    error: None,
                });
                continue;
            }
            Event::DocumentEnd => {
                if let Some(doc) = current.take() {
                    docs.push(doc);
                }
                anchors.clear();
                size = 0;
                continue;
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some((n, n_size, n_depth)) => {
                    size = size.saturating_add(*n_size);
                    if size > MAX_VALUES {
                        failure = Some((pos, too_large()));
                        continue;
                    }
                    if stack.len() + n_depth > MAX_DEPTH {
                        failure = Some((pos, too_deep()));
                        continue;
                    }
                    (n.clone(), 0)
                }
                None => (
                    Node {
                        pos,
                        value: Value::Scalar {
                            text: String::new(),
                            plain: true,
                            tag: None,
                        },
                    },
                    0,
                ),
            },
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.and_then(|t| t.core_suffix().map(str::to_owned));
                (
                    Node {
                        pos,
                        value: Value::Scalar {
                            text: text.into_owned(),
                            plain: style == ScalarStyle::Plain,
                            tag,
                        },
                    },
                    anchor,
                )
            }
            Event::SequenceStart(_, anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    failure = Some((pos, too_deep()));
                    continue;
                }
                stack.push((Frame::Seq(pos, Vec::new()), anchor));
                continue;
            }
            Event::MappingStart(_, anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    failure = Some((pos, too_deep()));
                    continue;
                }
                stack.push((Frame::Map(pos, Vec::new(), None), anchor));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some((Frame::Seq(p, items), anchor)) => (
                    Node {
                        pos: p,
                        value: Value::Seq(items),
                    },
                    anchor,
                ),
                Some((Frame::Map(p, entries, _), anchor)) => (
                    match go_flow_scalar(text, &entries) {
                        Some(scalar) => scalar,
                        None => Node {
                            pos: p,
                            value: Value::Map(merge_keys(entries)),
                        },
                    },
                    anchor,
                ),
                None => continue,
            },
            _ => continue, // comments, anchor metadata
        };
        size += 1;
        if size > MAX_VALUES {
            failure = Some((node.pos, too_large()));
            continue;
        }
        if anchor != 0 {
            let (n, depth) = (count_values(&node), depth_of(&node));
            anchors.insert(anchor, (node.clone(), n, depth));
        }
        match stack.last_mut() {
            Some((Frame::Seq(_, items), _)) => items.push(node),
            Some((Frame::Map(_, entries, pending), _)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => entries.push((key, node)),
            },
            None => {
                if let Some(doc) = current.as_mut() {
                    doc.root = Some(node);
                }
            }
        }
    }
    if let Some((pos, message)) = failure {
        let doc = current.take().unwrap_or(Document {
            index: docs.len(),
            root: None,
            error: None,
        });
        docs.push(Document {
            root: None,
            error: Some((pos, message)),
            ..doc
        });
    }
    if let Some(doc) = current.take() {
        docs.push(doc);
    }
    docs
}

/// Kubernetes reads YAML with Go's parser, for which a `:` ends a plain scalar only when
/// a blank follows: in `[1.2.3.4, 2001:db8::]` the last item is the string `2001:db8::`,
/// where YAML 1.2 (and so our parser) sees a one-entry mapping `{"2001:db8:": null}`.
/// Such a mapping (a plain key written right before `:` and a flow indicator, no value)
/// is turned back into the scalar Go reads.
fn go_flow_scalar(text: &str, entries: &[(Node, Node)]) -> Option<Node> {
    let [(key, value)] = entries else { return None };
    let Value::Scalar {
        text: k,
        plain: true,
        tag: None,
    } = &key.value
    else {
        return None;
    };
    // The parser gives the missing value as `~`; the text below shows it was not written.
    if !matches!(value.value, Value::Scalar { .. }) || k.is_empty() {
        return None;
    }
    let line = text
        .lines()
        .nth(usize::try_from(key.pos.line).ok()?.checked_sub(1)?)?;
    let col = usize::try_from(key.pos.column).ok()?.checked_sub(1)?;
    let rest = line.chars().skip(col).collect::<String>();
    let after = rest.strip_prefix(k.as_str())?.strip_prefix(':')?;
    if !after.starts_with([',', ']', '}']) {
        return None;
    }
    Some(Node {
        pos: key.pos,
        value: Value::Scalar {
            text: format!("{k}:"),
            plain: true,
            tag: None,
        },
    })
}

/// At most this many values (scalars and collections) per document, aliases expanded.
const MAX_VALUES: usize = 1_000_000;
/// At most this many nested collections.
const MAX_DEPTH: usize = 128;

fn too_large() -> String {
    format!("document too large: more than {MAX_VALUES} values once aliases are expanded")
}

fn too_deep() -> String {
    format!("document nested too deeply: more than {MAX_DEPTH} levels")
}

fn count_values(node: &Node) -> usize {
    match &node.value {
        Value::Scalar { .. } => 1,
        Value::Seq(items) => 1 + items.iter().map(count_values).sum::<usize>(),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count_values(k) + count_values(v))
                .sum::<usize>()
        }
    }
}

/// Nesting depth: 0 for a scalar, 1 for a collection of scalars, …
fn depth_of(node: &Node) -> usize {
    match &node.value {
        Value::Scalar { .. } => 0,
        Value::Seq(items) => 1 + items.iter().map(depth_of).max().unwrap_or(0),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| depth_of(k).max(depth_of(v)))
                .max()
                .unwrap_or(0)
        }
    }
}

/// Expands YAML merge keys (`<<: *base`): entries written in the mapping win over
/// merged ones, earlier merge sources over later ones.
fn merge_keys(entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    let is_merge =
        |k: &Node| matches!(&k.value, Value::Scalar { text, plain: true, .. } if text == "<<");
    if !entries.iter().any(|(k, _)| is_merge(k)) {
        return entries;
    }
    let mut out: Vec<(Node, Node)> = Vec::new();
    let mut merged: Vec<(Node, Node)> = Vec::new();
    for (k, v) in entries {
        if !is_merge(&k) {
            out.push((k, v));
            continue;
        }
        let sources = match v.value {
            Value::Seq(items) => items,
            _ => vec![v],
        };
        for source in sources {
            if let Value::Map(src) = source.value {
                merged.extend(src);
            }
        }
    }
    for (k, v) in merged {
        let exists = out
            .iter()
            .any(|(ek, _)| ek.scalar_text().is_some() && ek.scalar_text() == k.scalar_text());
        if !exists {
            out.push((k, v));
        }
    }
    out
}

#[cfg(test)]
mod tests;
