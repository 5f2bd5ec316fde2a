use http::{HeaderMap, HeaderValue, StatusCode, Version, header};

use super::check;

fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(n.clone(), HeaderValue::from_static(v));
    }
    h
}

#[test]
fn http11_needs_exactly_one_host() {
    let none = headers(&[]);
    assert_eq!(
        check(Version::HTTP_11, false, &none, 100).map(|r| r.0),
        Some(StatusCode::BAD_REQUEST)
    );
    assert_eq!(
        check(Version::HTTP_10, false, &none, 100),
        None,
        "optional in 1.0"
    );
    let two = headers(&[(header::HOST, "a"), (header::HOST, "b")]);
    assert_eq!(
        check(Version::HTTP_11, false, &two, 100).map(|r| r.0),
        Some(StatusCode::BAD_REQUEST)
    );
    assert_eq!(
        check(Version::HTTP_11, true, &none, 100),
        None,
        "the absolute form names the authority"
    );
    assert!(check(Version::HTTP_11, true, &two, 100).is_some());
    let one = headers(&[(header::HOST, "a")]);
    assert_eq!(check(Version::HTTP_11, false, &one, 100), None);
}

#[test]
fn only_chunked_is_a_transfer_coding() {
    let gzip = headers(&[
        (header::HOST, "a"),
        (header::TRANSFER_ENCODING, "gzip, chunked"),
    ]);
    assert_eq!(
        check(Version::HTTP_11, false, &gzip, 100).map(|r| r.0),
        Some(StatusCode::NOT_IMPLEMENTED)
    );
    let split = headers(&[
        (header::HOST, "a"),
        (header::TRANSFER_ENCODING, "gzip"),
        (header::TRANSFER_ENCODING, "chunked"),
    ]);
    assert!(check(Version::HTTP_11, false, &split, 100).is_some());
    let chunked = headers(&[(header::HOST, "a"), (header::TRANSFER_ENCODING, "Chunked")]);
    assert_eq!(check(Version::HTTP_11, false, &chunked, 100), None);
}

#[test]
fn http2_header_count_is_bounded() {
    let three = headers(&[
        (header::ACCEPT, "a"),
        (header::USER_AGENT, "b"),
        (header::COOKIE, "c"),
    ]);
    assert_eq!(check(Version::HTTP_2, false, &three, 3), None);
    assert_eq!(
        check(Version::HTTP_2, false, &three, 2).map(|r| r.0),
        Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
    );
}
