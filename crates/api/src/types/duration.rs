//! Istio durations.
//!
//! Istio reads its YAML through Go's protobuf JSON decoder, which parses
//! `google.protobuf.Duration` with Go's `time.ParseDuration`. So the accepted text is a
//! sequence of decimal numbers, each with an optional fraction and a unit (`ns`, `us`,
//! `µs`, `ms`, `s`, `m`, `h`): `30s`, `1.5s`, `100ms`, `1h30m`, `5m`. The bare `0` is
//! also accepted. The original text is kept so messages can quote what the user wrote.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A duration as written in a resource, with its parsed value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Duration {
    text: String,
    value: std::time::Duration,
}

/// Why a duration string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {reason}")]
pub struct DurationError {
    /// The text that was given.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Duration {
    /// Parses Go duration syntax (`1h30m`, `1.5s`, `100ms`). Negative durations are
    /// rejected: no Istio field accepts them.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let fail = |reason: &str| DurationError {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let mut rest = text;
        if let Some(r) = rest.strip_prefix('+') {
            rest = r;
        } else if rest.starts_with('-') {
            return Err(fail("durations cannot be negative"));
        }
        if rest == "0" {
            return Ok(Duration {
                text: text.to_owned(),
                value: std::time::Duration::ZERO,
            });
        }
        if rest.is_empty() {
            return Err(fail(
                "expected a number followed by a unit, like 30s or 100ms",
            ));
        }
        let mut total_nanos: u128 = 0;
        while !rest.is_empty() {
            let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (int_part, after) = rest.split_at(int_len);
            let (frac_part, after) = match after.strip_prefix('.') {
                Some(a) => {
                    let n = a.bytes().take_while(u8::is_ascii_digit).count();
                    a.split_at(n)
                }
                None => ("", after),
            };
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(fail(
                    "expected a number followed by a unit, like 30s or 100ms",
                ));
            }
            let unit_len = after
                .char_indices()
                .find(|(_, c)| c.is_ascii_digit() || *c == '.')
                .map_or(after.len(), |(i, _)| i);
            let (unit, after) = after.split_at(unit_len);
            let unit_nanos: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "" => return Err(fail("missing unit (use h, m, s, ms, us or ns)")),
                _ => {
                    return Err(fail(&format!(
                        "unknown unit {unit:?} (use h, m, s, ms, us or ns)"
                    )));
                }
            };
            let int: u128 = if int_part.is_empty() {
                0
            } else {
                int_part.parse().map_err(|_| fail("number too large"))?
            };
            let mut nanos = int
                .checked_mul(unit_nanos)
                .ok_or_else(|| fail("duration too large"))?;
            // Fraction: digits beyond nanosecond precision are dropped, as Go does.
            let mut scale = unit_nanos;
            for digit in frac_part.bytes().take(30) {
                scale /= 10;
                nanos += u128::from(digit - b'0') * scale;
            }
            total_nanos = total_nanos
                .checked_add(nanos)
                .ok_or_else(|| fail("duration too large"))?;
            rest = after;
        }
        // Go's limit: durations are int64 nanoseconds (about 290 years).
        if total_nanos > i64::MAX as u128 {
            return Err(fail("duration too large"));
        }
        let value = std::time::Duration::new(
            (total_nanos / 1_000_000_000) as u64,
            (total_nanos % 1_000_000_000) as u32,
        );
        Ok(Duration {
            text: text.to_owned(),
            value,
        })
    }

    /// The text as written, e.g. `1m30s`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed value.
    pub fn value(&self) -> std::time::Duration {
        self.value
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Duration::parse(s)
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string like \"30s\" or \"100ms\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}
