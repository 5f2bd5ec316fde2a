//! What the record keeps of a gRPC call: its status (`grpc_response_status`) and how
//! many messages passed each way (`istio_request_messages_total`,
//! `istio_response_messages_total`).
//!
//! The status follows Envoy's `Grpc::Common::getGrpcStatus`, which Istio's stats
//! filter calls: the response trailers' `grpc-status`, else the response headers' (a
//! trailers-only response), else the HTTP status mapped as gRPC maps it
//! (`httpToGrpcStatus`), else none (no response was sent: the label is empty).

/// The highest status gRPC defines (`UNAUTHENTICATED`).
const MAX_CODE: u8 = 16;

/// A `grpc-status` that is not one of gRPC's codes 0–16: Envoy's `InvalidCode`, which
/// the label shows as `-1`.
pub(crate) const INVALID: u8 = u8::MAX;

/// The code of a number as `grpc-status` carries it: 0–16, or [`INVALID`].
pub(crate) fn code(n: u64) -> u8 {
    u8::try_from(n)
        .ok()
        .filter(|c| *c <= MAX_CODE)
        .unwrap_or(INVALID)
}

/// The code of a `grpc-status` value, read as Envoy reads it (a decimal number; spaces
/// around it and a leading `+` allowed): 0–16, or [`INVALID`]. `None` for an empty
/// value, which Envoy takes for no status at all.
pub(crate) fn status_of(value: &http::HeaderValue) -> Option<u8> {
    let v = value.as_bytes().trim_ascii();
    if v.is_empty() {
        return None;
    }
    let digits = v.strip_prefix(b"+").unwrap_or(v);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Some(INVALID);
    }
    // All digits: a value too long for a u64 is invalid as well.
    Some(
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u64>().ok())
            .map_or(INVALID, code),
    )
}

/// The `grpc-status` of a header or trailer block, when it has one.
pub(crate) fn status_in(headers: &http::HeaderMap) -> Option<u8> {
    headers.get("grpc-status").and_then(status_of)
}

/// gRPC's mapping of an HTTP status to a gRPC status, for a response without one.
pub(crate) fn from_http(status: u16) -> u8 {
    match status {
        400 => 13,                   // INTERNAL
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 => 12,                   // UNIMPLEMENTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        _ => 2,                      // UNKNOWN
    }
}

/// The label text of a code: `"0"`–`"16"`, `"-1"` for an invalid one, `""` for none.
pub(crate) fn label(code: Option<u8>) -> &'static str {
    const TEXT: [&str; MAX_CODE as usize + 1] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    match code {
        None => "",
        Some(c) => TEXT.get(usize::from(c)).copied().unwrap_or("-1"),
    }
}

/// Counts gRPC's length-prefixed messages (a flag byte, a 4-byte big-endian length,
/// the message) as body frames pass, reading only the prefixes: a message's bytes are
/// skipped, never copied. A message is counted when its prefix begins, as Envoy's
/// frame inspector counts.
#[derive(Debug, Default, Clone)]
pub(crate) struct Frames {
    /// Bytes of the current prefix seen (0–4).
    prefix: u8,
    /// The length being read from the prefix.
    len: u32,
    /// Bytes of the current message still to pass.
    left: u64,
    /// Messages begun.
    pub(crate) messages: u64,
}

impl Frames {
    /// Reads one body frame's bytes.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.left > 0 {
                let n = data
                    .len()
                    .min(usize::try_from(self.left).unwrap_or(usize::MAX));
                data = &data[n..];
                self.left -= n as u64;
                continue;
            }
            if self.prefix == 0 {
                self.messages += 1;
                self.len = 0;
            } else {
                self.len = self.len << 8 | u32::from(data[0]);
            }
            data = &data[1..];
            self.prefix += 1;
            if self.prefix == 5 {
                self.prefix = 0;
                self.left = u64::from(self.len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, len));
        m
    }

    #[test]
    fn messages_are_counted_across_any_split_of_the_frames() {
        let mut body = Vec::new();
        for len in [3, 0, 300, 1, 70_000] {
            body.extend(message(len));
        }
        for chunk in [1, 2, 4, 5, 6, 7, 1000, body.len()] {
            let mut f = Frames::default();
            for part in body.chunks(chunk) {
                f.feed(part);
            }
            assert_eq!(f.messages, 5, "chunks of {chunk}");
            assert_eq!((f.prefix, f.left), (0, 0), "ends on a message boundary");
        }
        // A message cut short is counted once it began.
        let mut f = Frames::default();
        f.feed(&message(10)[..7]);
        assert_eq!(f.messages, 1);
    }

    #[test]
    fn statuses_are_grpc_codes_invalid_or_nothing() {
        let v = |s: &'static str| http::HeaderValue::from_static(s);
        assert_eq!(status_of(&v("0")), Some(0));
        assert_eq!(status_of(&v("14")), Some(14));
        assert_eq!(status_of(&v("16")), Some(16));
        assert_eq!(status_of(&v(" 07 ")), Some(7), "Envoy's number parsing");
        assert_eq!(status_of(&v("+3")), Some(3));
        for bad in [
            "17",
            "-1",
            "abc",
            "100",
            "1 4",
            "+",
            "99999999999999999999999",
        ] {
            assert_eq!(status_of(&v(bad)), Some(INVALID), "{bad:?}");
        }
        assert_eq!(status_of(&v("")), None, "an empty value is no status");
        assert_eq!(code(300), INVALID);
        assert_eq!(label(Some(0)), "0");
        assert_eq!(label(Some(16)), "16");
        assert_eq!(label(Some(INVALID)), "-1");
        assert_eq!(label(None), "");
        assert_eq!(from_http(503), 14);
        assert_eq!(from_http(200), 2);
        assert_eq!(from_http(404), 12);
    }
}
