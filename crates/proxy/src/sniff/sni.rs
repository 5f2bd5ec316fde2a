//! The server name of a TLS ClientHello, read without terminating TLS: for routing
//! TLS connections by SNI (VirtualService `tls` routes, gateway `PASSTHROUGH` servers).
//!
//! Only the handshake framing is parsed (records, the ClientHello's fixed fields, the
//! extension list); nothing is decrypted and the bytes are passed on unchanged. The
//! ClientHello may span several records. Every length is checked, so no input panics.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The most bytes read while looking for the ClientHello (a ClientHello with a
/// post-quantum key share is about 1.8 KB; the largest legal one is 64 KiB + headers).
const MAX_HELLO: usize = 1 << 16;

/// What the first bytes of a connection say about its server name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A ClientHello naming this server (lower-case).
    Sni(String),
    /// A ClientHello without a server name.
    NoSni,
    /// Not a TLS ClientHello.
    NotTls,
    /// Not enough bytes to tell yet.
    NeedMore,
}

/// Reads the ClientHello at the start of `buf`. Pure; never panics.
pub fn parse(buf: &[u8]) -> Hello {
    // Reassemble the handshake bytes from as many records as are complete.
    let mut handshake = Vec::new();
    let mut at = 0;
    while let Some(header) = buf.get(at..at + 5) {
        if header[0] != 0x16 || header[1] != 0x03 {
            return Hello::NotTls;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let Some(body) = buf.get(at + 5..at + 5 + len) else {
            break;
        };
        handshake.extend_from_slice(body);
        at += 5 + len;
        if handshake_len(&handshake).is_some_and(|n| handshake.len() >= n) {
            break;
        }
    }
    if at == 0 {
        // Not even one whole record: can the first bytes still be TLS?
        return match buf {
            [] => Hello::NeedMore,
            [b, ..] if *b != 0x16 => Hello::NotTls,
            [_, v, ..] if *v != 0x03 => Hello::NotTls,
            _ => Hello::NeedMore,
        };
    }
    if handshake.first().is_some_and(|t| *t != 0x01) {
        return Hello::NotTls;
    }
    match handshake_len(&handshake) {
        Some(n) if handshake.len() >= n => client_hello(&handshake[4..n]),
        Some(n) if n > MAX_HELLO => Hello::NotTls,
        _ => Hello::NeedMore,
    }
}

/// The length of the handshake message (with its 4-byte header), once the header is in.
fn handshake_len(h: &[u8]) -> Option<usize> {
    let len = h.get(1..4)?;
    Some(4 + (usize::from(len[0]) << 16 | usize::from(len[1]) << 8 | usize::from(len[2])))
}

/// A cursor over length-prefixed fields.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

fn client_hello(body: &[u8]) -> Hello {
    sni_of(body).unwrap_or(Hello::NotTls)
}

fn sni_of(body: &[u8]) -> Option<Hello> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    if r.0.is_empty() {
        return Some(Hello::NoSni); // no extensions at all
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind != 0 {
            continue;
        }
        // server_name: a list of (type, name); type 0 is a host name.
        let mut list = Reader(Reader(data).vec16()?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name = list.vec16()?;
            if name_type == 0 {
                let name = std::str::from_utf8(name).ok()?;
                return Some(Hello::Sni(name.trim_end_matches('.').to_ascii_lowercase()));
            }
        }
        return Some(Hello::NoSni);
    }
    Some(Hello::NoSni)
}

/// Reads from `io` until [`parse`] decides. Returns the verdict and the bytes read, which
/// the caller replays in front of the stream. End of stream first means not TLS.
pub async fn read<R: AsyncRead + Unpin>(io: &mut R) -> std::io::Result<(Hello, Bytes)> {
    let mut buf = BytesMut::with_capacity(2048);
    loop {
        match parse(&buf) {
            Hello::NeedMore if buf.len() <= MAX_HELLO + 5 * 8 => {
                if io.read_buf(&mut buf).await? == 0 {
                    return Ok((Hello::NotTls, buf.freeze()));
                }
            }
            Hello::NeedMore => return Ok((Hello::NotTls, buf.freeze())),
            verdict => return Ok((verdict, buf.freeze())),
        }
    }
}

#[cfg(test)]
mod tests;
