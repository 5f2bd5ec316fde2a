//! RFC 3339 timestamps, as Kubernetes writes `metadata.creationTimestamp`.
//!
//! Istio breaks ties between policies of one scope by their creation time (the oldest
//! wins), so the value must compare as an instant: `2024-01-01T01:00:00+01:00` and
//! `2024-01-01T00:00:00Z` are equal. The original text is kept for messages.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// An instant written as RFC 3339 text (`2024-01-01T00:00:00Z`,
/// `2024-01-01T00:00:00.5+02:00`). Ordered and compared by the instant it names.
#[derive(Debug, Clone)]
pub struct Timestamp {
    text: String,
    /// Seconds since 1970-01-01T00:00:00Z.
    seconds: i64,
    /// Nanoseconds within the second.
    nanos: u32,
}

/// Why a timestamp could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {text:?}: {reason}; expected RFC 3339, like 2024-01-01T00:00:00Z")]
pub struct TimestampError {
    /// The text that was given.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Timestamp {
    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; `t`, `z` and a space for `T`
    /// are accepted as RFC 3339 allows.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let fail = |reason| TimestampError {
            text: text.to_owned(),
            reason,
        };
        let b = text.as_bytes();
        if b.len() < 20 {
            return Err(fail("too short"));
        }
        let num = |from: usize, len: usize| -> Result<i64, TimestampError> {
            let part = b.get(from..from + len).ok_or_else(|| fail("too short"))?;
            if !part.iter().all(u8::is_ascii_digit) {
                return Err(fail("expected digits"));
            }
            Ok(part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
        };
        let sep = |at: usize, allowed: &[u8]| -> Result<(), TimestampError> {
            if allowed.contains(&b[at]) {
                Ok(())
            } else {
                Err(fail("misplaced separator"))
            }
        };
        let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
        sep(4, b"-")?;
        sep(7, b"-")?;
        sep(10, b"Tt ")?;
        let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
        sep(13, b":")?;
        sep(16, b":")?;
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(fail("no such date"));
        }
        // 60 is a leap second; it counts as the last second of the minute.
        if hour > 23 || minute > 59 || second > 60 {
            return Err(fail("no such time of day"));
        }
        let mut at = 19;
        let mut nanos: u32 = 0;
        if b[at] == b'.' {
            at += 1;
            let digits = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return Err(fail("expected digits after the decimal point"));
            }
            let mut scale = 100_000_000;
            for d in &b[at..at + digits] {
                nanos += u32::from(d - b'0') * scale;
                scale /= 10;
            }
            at += digits;
        }
        let offset_seconds = match b.get(at) {
            Some(b'Z' | b'z') if at + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) if at + 6 == b.len() => {
                sep(at + 3, b":")?;
                let (h, m) = (num(at + 1, 2)?, num(at + 4, 2)?);
                if h > 23 || m > 59 {
                    return Err(fail("no such UTC offset"));
                }
                let off = h * 3600 + m * 60;
                if *sign == b'+' { off } else { -off }
            }
            _ => return Err(fail("expected Z or a UTC offset like +02:00 at the end")),
        };
        let seconds =
            days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second.min(59)
                - offset_seconds;
        Ok(Timestamp {
            text: text.to_owned(),
            seconds,
            nanos,
        })
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Seconds since the Unix epoch (negative before 1970), and nanoseconds.
    pub fn unix(&self) -> (i64, u32) {
        (self.seconds, self.nanos)
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the usual era-based method).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

impl PartialEq for Timestamp {
    fn eq(&self, other: &Self) -> bool {
        self.unix() == other.unix()
    }
}

impl Eq for Timestamp {}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timestamp {
    fn cmp(&self, other: &Self) -> Ordering {
        self.unix().cmp(&other.unix())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp like \"2024-01-01T00:00:00Z\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests;
