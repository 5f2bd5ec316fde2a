//! What the record keeps of a gRPC call: its status (`grpc_response_status`).
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

#[cfg(test)]
mod tests {
    use super::*;

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
