//! Mapping keys.

use serde::de::{self, Visitor};

use crate::yaml::Node;
use crate::yaml::de::DeError;

/// Deserializes a mapping key: always text, parsed as a number when the target wants one
/// (as Kubernetes does for `portLevelMtls: {8080: …}`).
pub(super) struct KeyDe<'a> {
    pub(super) node: &'a Node,
}

impl KeyDe<'_> {
    fn text(&self) -> Result<&str, DeError> {
        self.node.scalar_text().ok_or_else(|| {
            de::Error::custom(format_args!(
                "expected a plain key, found {}",
                self.node.describe()
            ))
        })
    }

    fn int<T: TryFrom<i128>>(&self) -> Result<T, DeError> {
        let text = self.text()?;
        text.parse::<i128>()
            .ok()
            .and_then(|i| T::try_from(i).ok())
            .ok_or_else(|| {
                de::Error::custom(format_args!("expected a number as key, found `{text}`"))
            })
    }
}

macro_rules! key_int_methods {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let v: $ty = self.int()?;
            visitor.$visit(v)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for KeyDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str(self.text()?)
    }

    key_int_methods! {
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool f32 f64 i128 u128 char str string bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}
