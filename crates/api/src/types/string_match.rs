//! Istio's `StringMatch` and the header-match variant that also allows `{}`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Istio's `StringMatch`: exactly one of `exact`, `prefix` or `regex`.
///
/// Regular expressions use RE2 syntax (Envoy's `safe_regex`) and must match the whole
/// value. skiff checks and runs them with the `regex` crate, whose syntax is very close
/// to RE2 (both refuse look-around and back-references).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    /// The value equals this string.
    Exact(String),
    /// The value starts with this string.
    Prefix(String),
    /// The whole value matches this RE2 regular expression.
    Regex(String),
}

impl StringMatch {
    /// Whether `value` satisfies this condition. A regex that does not compile matches
    /// nothing (validation reports it; see [`StringMatch::compile_regex`]).
    ///
    /// This compiles a regex on every call: for hot paths, compile once with
    /// [`StringMatch::compile_regex`].
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(s) => value == s,
            StringMatch::Prefix(s) => value.starts_with(s.as_str()),
            StringMatch::Regex(_) => self
                .compile_regex()
                .and_then(Result::ok)
                .is_some_and(|re| re.is_match(value)),
        }
    }

    /// For a `regex` match: the regex anchored at both ends, compiled. `None` for the
    /// other match types.
    pub fn compile_regex(&self) -> Option<Result<regex::Regex, regex::Error>> {
        match self {
            StringMatch::Regex(re) => Some(regex::Regex::new(&format!("^(?:{re})$"))),
            _ => None,
        }
    }

    /// The match type as Istio spells it: `exact`, `prefix` or `regex`.
    pub fn kind(&self) -> &'static str {
        match self {
            StringMatch::Exact(_) => "exact",
            StringMatch::Prefix(_) => "prefix",
            StringMatch::Regex(_) => "regex",
        }
    }

    /// The string given (the literal, the prefix or the pattern).
    pub fn value(&self) -> &str {
        match self {
            StringMatch::Exact(s) | StringMatch::Prefix(s) | StringMatch::Regex(s) => s,
        }
    }
}

impl fmt::Display for StringMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}", self.kind(), self.value())
    }
}

/// The fields of a `StringMatch` before the one-of rule is checked.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawStringMatch {
    exact: Option<String>,
    prefix: Option<String>,
    regex: Option<String>,
}

impl RawStringMatch {
    /// `Ok(None)` when empty, an error message when more than one field is set.
    fn into_match(self) -> Result<Option<StringMatch>, String> {
        let set: Vec<StringMatch> = [
            self.exact.map(StringMatch::Exact),
            self.prefix.map(StringMatch::Prefix),
            self.regex.map(StringMatch::Regex),
        ]
        .into_iter()
        .flatten()
        .collect();
        match set.len() {
            0 => Ok(None),
            1 => Ok(set.into_iter().next()),
            _ => Err(format!(
                "set only one of `exact`, `prefix` or `regex`, found {}",
                set.iter()
                    .map(|m| format!("`{}`", m.kind()))
                    .collect::<Vec<_>>()
                    .join(" and ")
            )),
        }
    }
}

impl<'de> Deserialize<'de> for StringMatch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        RawStringMatch::deserialize(d)?
            .into_match()
            .map_err(D::Error::custom)?
            .ok_or_else(|| D::Error::custom("set one of `exact`, `prefix` or `regex`"))
    }
}

/// The condition on one header (or query parameter) in an `HTTPMatchRequest`: a
/// [`StringMatch`], or `{}` which Istio reads as "the header is present, any value".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeaderMatch {
    /// `{}`: the header is present (for `withoutHeaders`: absent).
    Present,
    /// A condition on the value.
    Value(StringMatch),
}

impl HeaderMatch {
    /// The string condition, if any.
    pub fn string_match(&self) -> Option<&StringMatch> {
        match self {
            HeaderMatch::Present => None,
            HeaderMatch::Value(m) => Some(m),
        }
    }
}

impl Serialize for HeaderMatch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            HeaderMatch::Present => s.serialize_map(Some(0))?.end(),
            HeaderMatch::Value(m) => m.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for HeaderMatch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        Ok(RawStringMatch::deserialize(d)?
            .into_match()
            .map_err(D::Error::custom)?
            .map_or(HeaderMatch::Present, HeaderMatch::Value))
    }
}
