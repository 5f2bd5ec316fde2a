//! The HTTP/1.1 → HTTP/2 upgrade of cleartext connections (`Upgrade: h2c`, RFC 7540
//! section 3.2).
//!
//! The client sends an ordinary HTTP/1.1 request with `Upgrade: h2c` and
//! `HTTP2-Settings`; the server answers `101 Switching Protocols` and then the
//! *response to that same request* as stream 1 of an HTTP/2 connection. hyper's HTTP/2
//! server cannot adopt a request it did not read as HTTP/2, so the upgrade hands it one:
//! after the 101, the client's connection preface and first SETTINGS frame are read,
//! and a HEADERS frame carrying the upgraded request (as stream 1, ending the stream) is
//! placed right after them in what the HTTP/2 server reads. From then on the
//! connection is a plain HTTP/2 connection of this listener, routed like any other.
//! The values of `HTTP2-Settings` are not decoded: the SETTINGS frame every client sends
//! after the preface carries its settings and is read before the server sends anything
//! on a stream.
//!
//! Only requests without a body upgrade (GET, HEAD, … — what clients such as curl send
//! with `--http2`); one with a body is answered over HTTP/1.1, which the RFC allows
//! ("a server MAY ignore the upgrade"). So is one whose headers do not fit one frame.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::conn::Conn;
use crate::forward::RespBody;

/// The client connection preface (RFC 9113 section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The smallest SETTINGS_MAX_FRAME_SIZE a peer may announce, and the default.
const MAX_FRAME: usize = 16_384;
/// How long the client has to send its preface after the 101.
const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);

const FRAME_HEADERS: u8 = 0x1;
const FRAME_SETTINGS: u8 = 0x4;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;

/// Whether an HTTP/1.1 request asks for the h2c upgrade and can be given it: `Upgrade`
/// names `h2c`, `Connection` names both `upgrade` and `http2-settings`, there is one
/// `HTTP2-Settings` header, and the request has no body.
pub(crate) fn wanted(req: &Request<Incoming>) -> bool {
    let h = req.headers();
    // The common case, one lookup: no upgrade asked.
    if req.version() != http::Version::HTTP_11 || !h.contains_key(header::UPGRADE) {
        return false;
    }
    let names = |name: header::HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let no_body = !h.contains_key(header::TRANSFER_ENCODING)
        && h.get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0");
    names(header::UPGRADE, "h2c")
        && names(header::CONNECTION, "upgrade")
        && names(header::CONNECTION, "http2-settings")
        && h.get_all("http2-settings").iter().count() == 1
        && no_body
}

/// Answers an h2c upgrade request with 101 and serves the connection as HTTP/2, the
/// request itself as its stream 1. `None` when the request cannot be carried over
/// (headers larger than a frame): it is then answered over HTTP/1.1.
pub(crate) fn upgrade(conn: &Arc<Conn>, req: &mut Request<Incoming>) -> Option<Response<RespBody>> {
    let frame = headers_frame(req)?;
    let on_upgrade = hyper::upgrade::on(&mut *req);
    let conn = conn.clone();
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(e) => {
                tracing::debug!(error = %e, "h2c upgrade failed");
                return;
            }
        };
        let (mut reader, writer) = tokio::io::split(io);
        let head = match tokio::time::timeout(PREFACE_TIMEOUT, client_start(&mut reader)).await {
            Ok(Ok(head)) => head,
            Ok(Err(e)) => {
                tracing::debug!(peer = %conn.peer, error = %e, "bad HTTP/2 start after h2c upgrade");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %conn.peer, "no HTTP/2 preface after h2c upgrade");
                return;
            }
        };
        let mut start = head;
        start.extend_from_slice(&frame);
        let reader = std::io::Cursor::new(start).chain(reader);
        super::serve(conn, tokio::io::join(reader, writer)).await;
    });
    let mut resp = Response::new(RespBody::full(Bytes::new(), None));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
    Some(resp)
}

/// Reads the client's preface and its first frame, which must be SETTINGS; returns
/// their bytes as read.
async fn client_start<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut head = vec![0u8; PREFACE.len() + 9];
    r.read_exact(&mut head).await?;
    if &head[..PREFACE.len()] != PREFACE {
        return Err(bad("not the HTTP/2 connection preface"));
    }
    let frame = &head[PREFACE.len()..];
    if frame[3] != FRAME_SETTINGS {
        return Err(bad("the first HTTP/2 frame is not SETTINGS"));
    }
    let len = usize::from(frame[0]) << 16 | usize::from(frame[1]) << 8 | usize::from(frame[2]);
    if len > MAX_FRAME {
        return Err(bad("SETTINGS frame too large"));
    }
    let at = head.len();
    head.resize(at + len, 0);
    r.read_exact(&mut head[at..]).await?;
    Ok(head)
}

/// The upgraded request as an HTTP/2 HEADERS frame on stream 1 that also ends the
/// stream. Header fields are HPACK literals without indexing, so the frame needs no
/// shared compression state. Connection-specific fields (RFC 9113 section 8.2.2) are
/// left out. `None` if the block does not fit one frame or has no usable target.
fn headers_frame<B>(req: &Request<B>) -> Option<Bytes> {
    let uri = req.uri();
    let authority = uri
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or_else(|| req.headers().get(header::HOST).map(HeaderValue::as_bytes))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if !path.starts_with('/') {
        return None;
    }
    let connection_tokens: Vec<String> = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();

    let mut block = BytesMut::with_capacity(256);
    literal(&mut block, b":method", req.method().as_str().as_bytes());
    literal(&mut block, b":scheme", b"http");
    literal(&mut block, b":authority", authority);
    literal(&mut block, b":path", path.as_bytes());
    for (name, value) in req.headers() {
        let n = name.as_str();
        let connection_specific = matches!(
            n,
            "connection"
                | "upgrade"
                | "http2-settings"
                | "keep-alive"
                | "proxy-connection"
                | "transfer-encoding"
                | "host"
        ) || (n == "te"
            && !value.as_bytes().eq_ignore_ascii_case(b"trailers"))
            || connection_tokens.iter().any(|t| t == n);
        if !connection_specific {
            literal(&mut block, n.as_bytes(), value.as_bytes());
        }
    }
    if block.len() > MAX_FRAME {
        return None;
    }
    let mut frame = BytesMut::with_capacity(9 + block.len());
    frame.put_uint(block.len() as u64, 3);
    frame.put_u8(FRAME_HEADERS);
    frame.put_u8(FLAG_END_STREAM | FLAG_END_HEADERS);
    frame.put_u32(1);
    frame.extend_from_slice(&block);
    Some(frame.freeze())
}

/// A "literal header field without indexing — new name" (RFC 7541 section 6.2.2),
/// strings without Huffman coding.
fn literal(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_u8(0);
    string(out, name);
    string(out, value);
}

fn string(out: &mut BytesMut, s: &[u8]) {
    integer(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 section 5.1).
fn integer(out: &mut BytesMut, flags: u8, n: u32, value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.put_u8(flags | value as u8);
        return;
    }
    out.put_u8(flags | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.put_u8((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.put_u8(rest as u8);
}

/// The fuzz check of the upgrade's hand-written HTTP/2 (`fuzz/fuzz_targets/h2c.rs`; the
/// seeds are replayed by this module's tests). HPACK's encoder is not public in the
/// `h2` crate, so the frame is written here and checked against `h2`'s decoder: the
/// bytes are read as a client start (preface and SETTINGS), which must never be taken
/// for more than was given, and as a request (`METHOD PATH` then `name: value` lines)
/// whose HEADERS frame an HTTP/2 server must read back as the same request.
#[cfg(any(test, fuzzing))]
pub(crate) fn fuzz_check(data: &[u8]) {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
    }
    RT.with(|rt| {
        rt.block_on(async {
            if let Ok(head) = client_start(&mut &data[..]).await {
                assert!(data.starts_with(&head), "client start reads past its input");
                assert!(head.starts_with(PREFACE));
            }
            if let Some(req) = fuzz_request(data)
                && let Some(frame) = headers_frame(&req)
            {
                read_back(&req, frame).await;
            }
        })
    });
}

/// A request from fuzz bytes: the first line `METHOD PATH`, then `name: value` lines;
/// lines `http` would refuse are left out.
#[cfg(any(test, fuzzing))]
fn fuzz_request(data: &[u8]) -> Option<Request<()>> {
    let mut lines = data.split(|&b| b == b'\n');
    let first = lines.next()?;
    let mut words = first.splitn(2, |&b| b == b' ');
    let method = http::Method::from_bytes(words.next()?).ok()?;
    let path = http::uri::PathAndQuery::try_from(words.next().unwrap_or(b"/")).ok()?;
    let mut req = Request::builder()
        .method(method)
        .uri(http::Uri::from(path))
        .body(())
        .ok()?;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        req.headers_mut().append(name, value);
    }
    Some(req)
}

/// Serves `frame` (after a client preface and an empty SETTINGS) to an `h2` server and
/// checks the request it reads equals `req` less its connection-specific fields.
#[cfg(any(test, fuzzing))]
async fn read_back(req: &Request<()>, frame: Bytes) {
    use tokio::io::AsyncWriteExt;
    let (client, server) = tokio::io::duplex(1 << 20);
    let (_client_read, mut client_write) = tokio::io::split(client);
    let mut start = PREFACE.to_vec();
    start.extend_from_slice(&[0, 0, 0, FRAME_SETTINGS, 0, 0, 0, 0, 0]);
    start.extend_from_slice(&frame);
    // A second request, on stream 3, that h2 takes whatever became of the first: so a
    // refused first stream shows as this one, without waiting for what never comes.
    let sentinel = Request::get("/sentinel")
        .header(header::HOST, "sentinel")
        .body(())
        .expect("a request");
    let mut second = headers_frame(&sentinel).expect("fits a frame").to_vec();
    second[8] = 3;
    start.extend_from_slice(&second);
    client_write.write_all(&start).await.expect("in memory");

    let authority = req.headers().get(header::HOST).expect("the frame has one");
    let authority_ok = http::uri::Authority::try_from(authority.as_bytes()).is_ok();
    let mut conn = h2::server::handshake(server)
        .await
        .expect("a server handshake");
    let got = match conn.accept().await {
        Some(Ok((got, _respond)))
            if got.uri().path() != "/sentinel" || req.uri().path() == "/sentinel" =>
        {
            got
        }
        // h2 refuses (with a stream reset) an `:authority` that is not an authority;
        // anything else must be read back.
        other => {
            assert!(
                !authority_ok,
                "h2 did not read the upgraded request back: {:?}",
                other.map(|r| r.map(|_| ()))
            );
            return;
        }
    };
    assert_eq!(got.method(), req.method());
    assert_eq!(
        got.uri().authority().map(|a| a.as_str().as_bytes()),
        Some(authority.as_bytes())
    );
    assert_eq!(
        got.uri().path_and_query().map(|p| p.as_str()),
        req.uri().path_and_query().map(|p| p.as_str())
    );
    let mut want = req.headers().clone();
    let tokens: Vec<String> = want
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    for name in [
        "connection",
        "upgrade",
        "http2-settings",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "host",
    ] {
        want.remove(name);
    }
    for t in &tokens {
        if let Ok(name) = header::HeaderName::from_bytes(t.as_bytes()) {
            want.remove(name);
        }
    }
    if want
        .get_all(header::TE)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        let keep: Vec<HeaderValue> = want
            .get_all(header::TE)
            .iter()
            .filter(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"))
            .cloned()
            .collect();
        want.remove(header::TE);
        for v in keep {
            want.append(header::TE, v);
        }
    }
    assert_eq!(
        got.headers(),
        &want,
        "h2 read other headers than were upgraded"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(n: u32, v: usize) -> Vec<u8> {
        let mut b = BytesMut::new();
        integer(&mut b, 0, n, v);
        b.to_vec()
    }

    #[test]
    fn the_h2c_fuzz_seeds_read_back_through_h2() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/h2c");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            fuzz_check(&std::fs::read(e.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n > 0, "{} is empty", dir.display());
    }

    #[test]
    fn an_upgraded_request_reads_back_with_its_headers() {
        // The check must be able to fail: a frame with a header left out is caught.
        let data = b"GET /a?b=c\nhost: example.com\nx-one: 1\nconnection: upgrade, x-drop\nx-drop: gone\nte: trailers";
        let req = fuzz_request(data).unwrap();
        let frame = headers_frame(&req).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(read_back(&req, frame));
        let mut more = data.to_vec();
        more.extend_from_slice(b"\nx-two: 2");
        let other = fuzz_request(&more).unwrap();
        let frame = headers_frame(&req).unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(read_back(&other, frame))
        }));
        assert!(caught.is_err(), "a missing header went unnoticed");
    }

    #[test]
    fn hpack_integers_as_in_rfc_7541_appendix_c1() {
        assert_eq!(int(5, 10), [10]);
        assert_eq!(int(5, 1337), [31, 154, 10]);
        assert_eq!(int(8, 42), [42]);
        assert_eq!(int(7, 127), [127, 0]);
    }

    #[test]
    fn a_literal_field_without_indexing() {
        // RFC 7541 appendix C.2.2: `:path: /sample/path`, but with a literal name.
        let mut b = BytesMut::new();
        literal(&mut b, b":path", b"/sample/path");
        let mut want = vec![0x00, 5];
        want.extend_from_slice(b":path");
        want.push(12);
        want.extend_from_slice(b"/sample/path");
        assert_eq!(b.to_vec(), want);
    }
}
