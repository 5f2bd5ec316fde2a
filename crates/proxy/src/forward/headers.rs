//! Header handling a proxy owes both sides: hop-by-hop headers removed, Istio's
//! request headers added, the request target put in the form the upstream expects.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Version, request};

use crate::upstream::UpstreamProto;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Removes the headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// including those the `Connection` header names. `te: trailers` stays on requests
/// (gRPC needs it).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, request: bool) {
    // One pass over the names finds which hop-by-hop headers are there; only those
    // are looked up again (a response from a keep-alive server has just `connection`).
    let mut present = 0u8;
    for name in headers.keys() {
        present |= hop_by_hop_bit(name, request);
    }
    if present == 0 {
        return;
    }
    if present & CONNECTION_BIT != 0
        && let Some(conn) = headers.remove(header::CONNECTION)
        && let Ok(list) = conn.to_str()
    {
        for name in list.split(',') {
            let name = name.trim();
            // The common tokens name no header of their own, or one found above.
            if name.eq_ignore_ascii_case("keep-alive") || name.eq_ignore_ascii_case("close") {
                continue;
            }
            if !name.eq_ignore_ascii_case("te") || !request {
                headers.remove(name);
            }
        }
    }
    let mut remove = |bit: u8, name: &HeaderName| {
        if present & bit != 0 {
            headers.remove(name);
        }
    };
    remove(PROXY_CONNECTION_BIT, &PROXY_CONNECTION);
    remove(KEEP_ALIVE_BIT, &KEEP_ALIVE);
    remove(TRANSFER_ENCODING_BIT, &header::TRANSFER_ENCODING);
    remove(UPGRADE_BIT, &header::UPGRADE);
    if request {
        // The proxy answers `100-continue` itself (hyper does when the body is read).
        remove(EXPECT_BIT, &header::EXPECT);
        if present & TE_BIT != 0
            && headers
                .get(header::TE)
                .is_some_and(|te| !te.as_bytes().eq_ignore_ascii_case(b"trailers"))
        {
            headers.remove(header::TE);
        }
    } else {
        remove(TE_BIT, &header::TE);
    }
}

const CONNECTION_BIT: u8 = 1;
const TRANSFER_ENCODING_BIT: u8 = 1 << 1;
const UPGRADE_BIT: u8 = 1 << 2;
const TE_BIT: u8 = 1 << 3;
const EXPECT_BIT: u8 = 1 << 4;
const KEEP_ALIVE_BIT: u8 = 1 << 5;
const PROXY_CONNECTION_BIT: u8 = 1 << 6;

/// The bit of a hop-by-hop header, 0 for any other.
fn hop_by_hop_bit(n: &HeaderName, request: bool) -> u8 {
    if n == header::CONNECTION {
        CONNECTION_BIT
    } else if n == header::TRANSFER_ENCODING {
        TRANSFER_ENCODING_BIT
    } else if n == header::UPGRADE {
        UPGRADE_BIT
    } else if n == header::TE {
        TE_BIT
    } else if request && n == header::EXPECT {
        EXPECT_BIT
    } else if n == KEEP_ALIVE {
        KEEP_ALIVE_BIT
    } else if n == PROXY_CONNECTION {
        PROXY_CONNECTION_BIT
    } else {
        0
    }
}

/// The protocol an HTTP/1.1 message asks to switch to: its `Upgrade` header, when its
/// `Connection` header names `upgrade`.
pub(crate) fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers.get(header::UPGRADE)?;
    let asks = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    asks.then(|| upgrade.clone())
}

/// Puts back the two headers of an upgrade after the hop-by-hop ones were removed.
pub(crate) fn restore_upgrade(headers: &mut HeaderMap, upgrade: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, upgrade);
}

/// Adds `x-forwarded-proto` and `x-request-id` when the request has none, as Istio's
/// sidecars and gateways do. Returns the request id it goes with (a shared handle on
/// the header's bytes).
pub(crate) fn add_request_headers(headers: &mut HeaderMap) -> HeaderValue {
    // `entry`: one hash and probe each, where a lookup and an insert take two.
    headers
        .entry(X_FORWARDED_PROTO.clone())
        .or_insert_with(|| HeaderValue::from_static("http"));
    headers
        .entry(X_REQUEST_ID.clone())
        .or_insert_with(request_id)
        .clone()
}

/// The request's `x-request-id`, as it came.
pub(crate) fn request_id_of(headers: &HeaderMap) -> Option<HeaderValue> {
    headers.get(&X_REQUEST_ID).cloned()
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Appends the client's address to `x-forwarded-for`.
/// `x-forwarded-client-cert`: what this proxy says about the caller, or nothing; never
/// what the downstream claimed.
pub(crate) fn set_client_cert(headers: &mut HeaderMap, value: Option<HeaderValue>) {
    match value {
        Some(v) => {
            headers.insert(X_FORWARDED_CLIENT_CERT.clone(), v);
        }
        None => {
            headers.remove(&X_FORWARDED_CLIENT_CERT);
        }
    }
}

static X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

pub(crate) fn append_forwarded_for(headers: &mut HeaderMap, client: std::net::IpAddr) {
    let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.trim().is_empty() => format!("{existing}, {client}"),
        _ => client.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
}

/// A random (version 4) UUID.
pub(super) fn request_id() -> HeaderValue {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 36];
    let mut o = 0;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[o] = b'-';
            o += 1;
        }
        out[o] = HEX[usize::from(byte >> 4)];
        out[o + 1] = HEX[usize::from(byte & 0xf)];
        o += 2;
    }
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// The request's authority as a header value: the URI's (absolute form, HTTP/2) or the
/// `Host` header.
pub(crate) fn authority_value(parts: &request::Parts) -> Option<HeaderValue> {
    match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    }
}

/// Puts the request target in the upstream's form: origin form plus `Host` for
/// HTTP/1.1, absolute URI (giving `:authority`) and no `Host` for HTTP/2.
pub(crate) fn set_target(
    parts: &mut request::Parts,
    proto: UpstreamProto,
    authority: Option<HeaderValue>,
    path: Option<PathAndQuery>,
) {
    let path = path
        .or_else(|| parts.uri.path_and_query().cloned())
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    match proto {
        UpstreamProto::Http2 => {
            let auth = authority
                .as_ref()
                .and_then(|a| Authority::try_from(a.as_bytes()).ok());
            let mut p = http::uri::Parts::default();
            if let Some(a) = auth {
                p.scheme = Some(Scheme::HTTP);
                p.authority = Some(a);
            }
            p.path_and_query = Some(path);
            parts.uri = Uri::from_parts(p).unwrap_or_default();
            parts.headers.remove(header::HOST);
            parts.version = Version::HTTP_2;
        }
        _ => {
            parts.uri = Uri::from(path);
            if let Some(a) = authority {
                parts.headers.insert(header::HOST, a);
            }
            parts.version = Version::HTTP_11;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_responses_lose_their_connection_headers_only() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-trace"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-trace", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("content-type"));
        // Nothing hop-by-hop: nothing changes.
        let mut h = HeaderMap::new();
        h.insert("expect", HeaderValue::from_static("100-continue"));
        h.insert("host", HeaderValue::from_static("a"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2, "expect is hop-by-hop on requests only: {h:?}");
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.len(), 1, "{h:?}");
    }

    #[test]
    fn hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-foo"));
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("x-bar", HeaderValue::from_static("2"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("upgrade", HeaderValue::from_static("h2c"));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h.contains_key("x-bar") && h.contains_key("te"));
        let mut h = HeaderMap::new();
        h.insert("te", HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h, true);
        assert!(h.is_empty());
    }

    #[test]
    fn request_ids_are_uuids() {
        let a = request_id();
        let s = a.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert_ne!(a, request_id());
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("keep"));
        add_request_headers(&mut h);
        assert_eq!(h["x-request-id"], "keep");
        assert_eq!(h["x-forwarded-proto"], "http");
    }

    #[test]
    fn upgrades() {
        let mut h = HeaderMap::new();
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(upgrade_of(&h).is_none(), "Connection must name it");
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(upgrade_of(&h).unwrap(), "websocket");
        strip_hop_by_hop(&mut h, true);
        assert!(h.is_empty());
        restore_upgrade(&mut h, HeaderValue::from_static("websocket"));
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn forwarded_for() {
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, "10.0.0.1".parse().unwrap());
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
        append_forwarded_for(&mut h, "::1".parse().unwrap());
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, ::1");
    }

    #[test]
    fn targets() {
        let (mut p, _) = http::Request::get("http://svc:80/a?b")
            .body(())
            .unwrap()
            .into_parts();
        let a = authority_value(&p);
        set_target(&mut p, UpstreamProto::Http1, a.clone(), None);
        assert_eq!(p.uri, "/a?b");
        assert_eq!(p.headers["host"], "svc:80");
        set_target(&mut p, UpstreamProto::Http2, a, None);
        assert_eq!(p.uri, "http://svc:80/a?b");
        assert!(!p.headers.contains_key("host"));
    }
}
