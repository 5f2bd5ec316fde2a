//! YAML with positions: a small node tree built from the parser's events, a serde
//! deserializer over it that knows the field path and position of everything it reads,
//! and the path → position index used for messages found after deserialization.

mod de;
mod node;
mod path;

pub(crate) use de::{DeError, Sink, from_node, suggestion};
pub(crate) use node::{Document, Node, Resolved, Value, parse_documents};
pub(crate) use path::{index_positions, join_key};

/// `` `A`, `B` or `C` `` (for messages listing kinds).
pub(crate) fn list_kinds(items: &[&str]) -> String {
    de::list(items)
}
