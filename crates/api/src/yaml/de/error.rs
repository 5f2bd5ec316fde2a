//! The fatal error of a deserialization, and the wording of its messages.

use std::fmt;

use serde::de;

use crate::resource::Position;

/// A fatal deserialization error, with the path and position of the value at fault.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeError {
    pub(crate) message: String,
    pub(crate) path: Option<String>,
    pub(crate) pos: Option<Position>,
}

impl DeError {
    pub(super) fn at(path: &str, pos: Position, message: String) -> Self {
        DeError {
            message,
            path: Some(path.to_owned()),
            pos: Some(pos),
        }
    }

    /// Gives the error a place, unless a deeper level already did.
    pub(super) fn locate(mut self, path: &str, pos: Position) -> Self {
        if self.pos.is_none() {
            self.path = Some(path.to_owned());
            self.pos = Some(pos);
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            path: None,
            pos: None,
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        de::Error::custom(format_args!("expected {exp}, found {unexp}"))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        de::Error::custom(format_args!("invalid value {unexp}, expected {exp}"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        de::Error::custom(format_args!(
            "unknown value `{variant}`{}, expected one of {}",
            suggestion(variant, expected),
            list(expected)
        ))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        de::Error::custom(unknown_field_message(field, expected))
    }

    fn missing_field(field: &'static str) -> Self {
        de::Error::custom(format_args!("missing required field `{field}`"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        de::Error::custom(format_args!("duplicate key `{field}`"))
    }
}

/// `` `a`, `b` or `c` ``.
pub(crate) fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.split_last() {
        None => "nothing".to_owned(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

pub(crate) fn unknown_field_message(field: &str, expected: &[&str]) -> String {
    if expected.is_empty() {
        return format!("unknown field `{field}`: no fields are allowed here");
    }
    format!(
        "unknown field `{field}`{}, expected one of {}",
        suggestion(field, expected),
        list(expected)
    )
}

/// ` (did you mean `x`?)` when a candidate is close to `given`.
pub(crate) fn suggestion(given: &str, candidates: &[&str]) -> String {
    let lower = given.to_ascii_lowercase();
    let best = candidates
        .iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, c)) => format!(" (did you mean `{c}`?)"),
        None => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
