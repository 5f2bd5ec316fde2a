//! Protocol detection for ports whose protocol is not declared: the first bytes of a
//! connection say whether it is HTTP/1.x, HTTP/2 with prior knowledge, or something else
//! (which the proxy then carries as opaque TCP).

pub mod sni;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// What the first bytes of a connection look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// An HTTP/1.x request line starts here.
    Http1,
    /// The HTTP/2 connection preface (`PRI * HTTP/2.0`).
    Http2,
    /// Anything else: carry the bytes as they are.
    Tcp,
    /// Not enough bytes to tell yet.
    NeedMore,
}

/// Methods whose request line an HTTP/1.x client may start with.
const METHODS: [&[u8]; 9] = [
    b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT",
];
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Classifies the bytes a client sent first. Pure; never panics.
pub fn detect(buf: &[u8]) -> Detected {
    if buf.is_empty() {
        return Detected::NeedMore;
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() {
            Detected::Http2
        } else {
            Detected::NeedMore
        };
    }
    let mut could_be_more = false;
    for method in METHODS {
        // A method followed by one space.
        let want = method.len() + 1;
        let n = buf.len().min(want);
        let (head, space) = (&buf[..n.min(method.len())], buf.get(method.len()));
        if head != &method[..head.len()] {
            continue;
        }
        match space {
            Some(b' ') => return Detected::Http1,
            Some(_) => continue,
            None => could_be_more = true,
        }
    }
    if could_be_more {
        Detected::NeedMore
    } else {
        Detected::Tcp
    }
}

/// Reads from `io` until [`detect`] decides. Returns the verdict and the bytes read,
/// which the caller replays in front of the stream. End of stream before a verdict
/// means TCP.
pub async fn read<R: AsyncRead + Unpin>(io: &mut R) -> std::io::Result<(Detected, Bytes)> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        match detect(&buf) {
            Detected::NeedMore => {
                if io.read_buf(&mut buf).await? == 0 {
                    return Ok((Detected::Tcp, buf.freeze()));
                }
            }
            verdict => return Ok((verdict, buf.freeze())),
        }
    }
}

#[cfg(test)]
mod tests;
