//! A serde deserializer over [`Node`]s that knows the field path and position of
//! everything it reads, so every error names both.
//!
//! Two kinds of problems are found here. Fatal ones (wrong type, missing required
//! field, bad value) stop the resource and come back as a [`DeError`]. The others
//! (unknown fields, duplicate keys) are recorded in a [`Sink`] and reading goes on, so
//! one pass reports all of them.

use std::cell::RefCell;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use crate::diagnostic::Severity;
use crate::resource::Position;
use crate::yaml::{Node, Resolved, Value, join_key};

mod error;
mod key;

use error::unknown_field_message;
pub(crate) use error::{DeError, list, suggestion};
use key::KeyDe;

/// A problem found while reading that does not stop reading.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Issue {
    pub(crate) severity: Severity,
    pub(crate) path: String,
    pub(crate) pos: Position,
    pub(crate) message: String,
}

/// Collects [`Issue`]s during one deserialization.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    issues: RefCell<Vec<Issue>>,
}

impl Sink {
    fn push(&self, severity: Severity, path: String, pos: Position, message: String) {
        self.issues.borrow_mut().push(Issue {
            severity,
            path,
            pos,
            message,
        });
    }

    /// The issues recorded, in the order found.
    pub(crate) fn into_issues(self) -> Vec<Issue> {
        self.issues.into_inner()
    }
}

/// Deserializes `node` (found at `path`) into `T`.
pub(crate) fn from_node<T: DeserializeOwned>(
    node: &Node,
    path: &str,
    sink: &Sink,
) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        path: path.to_owned(),
        sink,
    })
    .map_err(|e| e.locate(path, node.pos))
}

struct NodeDe<'a> {
    node: &'a Node,
    path: String,
    sink: &'a Sink,
}

impl NodeDe<'_> {
    fn type_error(&self, expected: &str) -> DeError {
        let mut message = format!("expected {expected}, found {}", self.node.describe());
        if expected == "a string"
            && matches!(
                self.node.resolve(),
                Some(Resolved::Int(_) | Resolved::Float(_) | Resolved::Bool(_))
            )
        {
            message.push_str(" (put it in quotes to use it as text)");
        }
        if expected.starts_with("a list") && matches!(self.node.value, Value::Map(_)) {
            message.push_str(" (list items start with `- `)");
        }
        DeError::at(&self.path, self.node.pos, message)
    }

    fn int<T: TryFrom<i128>>(&self) -> Result<T, DeError> {
        match self.node.resolve() {
            Some(Resolved::Int(i)) => T::try_from(i).map_err(|_| {
                DeError::at(
                    &self.path,
                    self.node.pos,
                    format!("the number {i} is out of range here"),
                )
            }),
            _ => Err(self.type_error("an integer")),
        }
    }

    fn float(&self) -> Result<f64, DeError> {
        match self.node.resolve() {
            Some(Resolved::Int(i)) => Ok(i as f64),
            Some(Resolved::Float(f)) => Ok(f),
            _ => Err(self.type_error("a number")),
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.node.resolve(), Some(Resolved::Null))
    }
}

macro_rules! int_methods {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let v: $ty = self.int()?;
            visitor.$visit::<DeError>(v).map_err(|e| e.locate(&self.path, self.node.pos))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (path, pos) = (self.path.clone(), self.node.pos);
        let result = match &self.node.value {
            Value::Seq(items) => visitor.visit_seq(SeqDe::new(items, &self.path, self.sink)),
            Value::Map(entries) => {
                visitor.visit_map(MapDe::new(entries, &self.path, self.sink, None, ""))
            }
            Value::Scalar { .. } => match self.node.resolve() {
                Some(Resolved::Null) | None => visitor.visit_unit(),
                Some(Resolved::Bool(b)) => visitor.visit_bool(b),
                Some(Resolved::Int(i)) => match (u64::try_from(i), i64::try_from(i)) {
                    (Ok(u), _) => visitor.visit_u64(u),
                    (_, Ok(s)) => visitor.visit_i64(s),
                    _ => visitor.visit_f64(i as f64),
                },
                Some(Resolved::Float(f)) => visitor.visit_f64(f),
                Some(Resolved::Str(s)) => visitor.visit_str(s),
            },
        };
        result.map_err(|e| e.locate(&path, pos))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.resolve() {
            Some(Resolved::Bool(b)) => visitor.visit_bool(b),
            _ => Err(self.type_error("a boolean (true or false)")),
        }
    }

    int_methods! {
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_f32(self.float()? as f32)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_f64(self.float()?)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.resolve() {
            Some(Resolved::Str(s)) => visitor
                .visit_str::<DeError>(s)
                .map_err(|e| e.locate(&self.path, self.node.pos)),
            _ => Err(self.type_error("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.is_null() {
            visitor.visit_unit()
        } else {
            Err(self.type_error("nothing (null)"))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Seq(items) => visitor.visit_seq(SeqDe::new(items, &self.path, self.sink)),
            _ if self.is_null() => visitor.visit_seq(SeqDe::new(&[], &self.path, self.sink)),
            _ => return Err(self.type_error("a list")),
        };
        result.map_err(|e| e.locate(&self.path, self.node.pos))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Map(entries) => {
                visitor.visit_map(MapDe::new(entries, &self.path, self.sink, None, ""))
            }
            _ if self.is_null() => {
                visitor.visit_map(MapDe::new(&[], &self.path, self.sink, None, ""))
            }
            _ => return Err(self.type_error("a mapping")),
        };
        result.map_err(|e| e.locate(&self.path, self.node.pos))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Map(entries) => visitor.visit_map(MapDe::new(
                entries,
                &self.path,
                self.sink,
                Some(fields),
                name,
            )),
            _ if self.is_null() => {
                visitor.visit_map(MapDe::new(&[], &self.path, self.sink, Some(fields), name))
            }
            _ => {
                let mut e = self.type_error("a mapping");
                if !fields.is_empty() {
                    e.message
                        .push_str(&format!(" (with fields {})", list(fields)));
                }
                return Err(e);
            }
        };
        result.map_err(|e| e.locate(&self.path, self.node.pos))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.node.resolve() {
            Some(Resolved::Str(s)) => {
                let d: de::value::StrDeserializer<'_, DeError> = s.into_deserializer();
                visitor
                    .visit_enum(d)
                    .map_err(|e| e.locate(&self.path, self.node.pos))
            }
            _ => Err(self.type_error(&format!("one of {}", list(variants)))),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqDe<'a> {
    items: &'a [Node],
    index: usize,
    path: &'a str,
    sink: &'a Sink,
}

impl<'a> SeqDe<'a> {
    fn new(items: &'a [Node], path: &'a str, sink: &'a Sink) -> Self {
        SeqDe {
            items,
            index: 0,
            path,
            sink,
        }
    }
}

impl<'de> de::SeqAccess<'de> for SeqDe<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(item) = self.items.get(self.index) else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.path, self.index);
        self.index += 1;
        seed.deserialize(NodeDe {
            node: item,
            path: path.clone(),
            sink: self.sink,
        })
        .map(Some)
        .map_err(|e| e.locate(&path, item.pos))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.index)
    }
}

struct MapDe<'a> {
    /// Entries to hand to the visitor: known fields, first occurrence of each key.
    entries: Vec<&'a (Node, Node)>,
    index: usize,
    path: &'a str,
    sink: &'a Sink,
}

impl<'a> MapDe<'a> {
    fn new(
        entries: &'a [(Node, Node)],
        path: &'a str,
        sink: &'a Sink,
        fields: Option<&'static [&'static str]>,
        struct_name: &'static str,
    ) -> Self {
        let mut keep: Vec<&'a (Node, Node)> = Vec::with_capacity(entries.len());
        for entry in entries {
            let (key, _) = entry;
            let Some(text) = key.scalar_text() else {
                // Non-scalar keys reach the key deserializer, which reports them.
                keep.push(entry);
                continue;
            };
            let key_path = join_key(path, text);
            if let Some((first, _)) = keep.iter().find(|(k, _)| k.scalar_text() == Some(text)) {
                sink.push(
                    Severity::Error,
                    key_path,
                    key.pos,
                    format!(
                        "duplicate key `{text}` (already set at line {}, column {})",
                        first.pos.line, first.pos.column
                    ),
                );
                continue;
            }
            if let Some(fields) = fields
                && !fields.contains(&text)
            {
                match crate::mistakes::known_mistake(struct_name, text) {
                    Some(hint) => sink.push(Severity::Warning, key_path, key.pos, hint.to_owned()),
                    None => sink.push(
                        Severity::Error,
                        key_path,
                        key.pos,
                        unknown_field_message(text, fields),
                    ),
                }
                continue;
            }
            keep.push(entry);
        }
        MapDe {
            entries: keep,
            index: 0,
            path,
            sink,
        }
    }

    fn current_path(&self) -> (String, &'a (Node, Node)) {
        let entry = self.entries[self.index];
        let key = entry.0.scalar_text().unwrap_or("?");
        (join_key(self.path, key), entry)
    }
}

impl<'de> de::MapAccess<'de> for MapDe<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        if self.index >= self.entries.len() {
            return Ok(None);
        }
        let (path, (key, _)) = self.current_path();
        seed.deserialize(KeyDe { node: key })
            .map(Some)
            .map_err(|e| e.locate(&path, key.pos))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (path, (_, value)) = self.current_path();
        self.index += 1;
        seed.deserialize(NodeDe {
            node: value,
            path: path.clone(),
            sink: self.sink,
        })
        .map_err(|e| e.locate(&path, value.pos))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() - self.index)
    }
}
