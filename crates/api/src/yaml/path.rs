//! Field paths (`spec.http[0].route[1].weight`) and the index from path to position.

use crate::resource::{FieldPosition, FieldPositions};
use crate::yaml::{Node, Value};

/// Appends a mapping key to a path: `.key`, or `["key"]` when the key holds characters
/// that would make the path ambiguous (dots, slashes, spaces, …).
pub(crate) fn join_key(path: &str, key: &str) -> String {
    let simple = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match (path.is_empty(), simple) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{key:?}]"),
    }
}

/// Records the position of every field and list item under `node`, with `path` as
/// the path of `node` itself.
pub(crate) fn index_positions(node: &Node, path: &str) -> FieldPositions {
    let mut index = FieldPositions::default();
    index.map.insert(
        path.to_owned(),
        FieldPosition {
            key: None,
            value: node.pos,
        },
    );
    walk(node, path, &mut index);
    index
}

fn walk(node: &Node, path: &str, index: &mut FieldPositions) {
    match &node.value {
        Value::Scalar { .. } => {}
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                index.map.insert(
                    p.clone(),
                    FieldPosition {
                        key: None,
                        value: item.pos,
                    },
                );
                walk(item, &p, index);
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries {
                let Some(key) = k.scalar_text() else { continue };
                let p = join_key(path, key);
                // The first occurrence wins; duplicates are reported separately.
                index.map.entry(p.clone()).or_insert(FieldPosition {
                    key: Some(k.pos),
                    value: v.pos,
                });
                walk(v, &p, index);
            }
        }
    }
}
