//! What RFC 9112 requires of a request head that hyper lets through, checked before any
//! phase: HTTP/1.1 needs exactly one `Host` (none when the target is absolute); `chunked` is the only transfer coding the
//! proxy understands; and an HTTP/2 request may carry no more headers than the limit
//! (hyper counts them for HTTP/1 only). No allocation: the checks read the parsed
//! headers in place.

use http::{HeaderMap, StatusCode, Version, header};

/// Why a request head is refused: the status, and the reason for the body and record.
pub(super) type Refusal = (StatusCode, &'static str);

/// Checks a request head; `None` when it may go on.
///
/// A request in absolute form (`GET http://host/ HTTP/1.1`, as apps with an HTTP proxy
/// set send) names its authority in the target; like Envoy, the proxy then takes it
/// from there and does not insist on `Host`.
pub(super) fn check(
    version: Version,
    absolute: bool,
    headers: &HeaderMap,
    max_headers: usize,
) -> Option<Refusal> {
    if version == Version::HTTP_2 || version == Version::HTTP_3 {
        // HTTP/2 has :authority instead of Host, and no transfer codings.
        return (headers.len() > max_headers).then_some((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many request headers",
        ));
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::HTTP_11 && !absolute => {
            return Some((
                StatusCode::BAD_REQUEST,
                "missing Host header: HTTP/1.1 requires one",
            ));
        }
        (Some(_), Some(_)) => {
            return Some((StatusCode::BAD_REQUEST, "more than one Host header"));
        }
        _ => {}
    }
    for coding in headers.get_all(header::TRANSFER_ENCODING) {
        // hyper has already insisted that the last coding is `chunked`; any other
        // coding before it would be dropped on the way, so it is refused (RFC 9112
        // section 6.1: 501 for a coding the server does not understand).
        if !coding
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked")
        {
            return Some((
                StatusCode::NOT_IMPLEMENTED,
                "transfer coding not implemented: only chunked is",
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests;
