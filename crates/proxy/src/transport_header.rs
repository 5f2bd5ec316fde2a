//! The skiff transport header: the first bytes a proxy writes on a connection to a peer
//! proxy's inbound listener, naming the application port the connection is for.
//!
//! With transparent capture the destination port travels in the TCP header itself; in
//! skiff's explicit (unprivileged) mode every connection between proxies lands on the
//! peer's single inbound port, so the calling proxy says which app port it wants.
//!
//! # Layout (version 1)
//!
//! All integers are big-endian.
//!
//! ```text
//!  offset  size  field
//!  0       4     magic      0xF0 'S' 'K' 'F'
//!  4       1     version    1
//!  5       1     flags      0 (no flag is defined; a reader rejects unknown bits)
//!  6       2     port       the app port on the destination workload, not 0
//!  8       2     ext_len    length of the extension area that follows, at most 1024
//!  10      n     extensions ext_len bytes of TLVs (type u8, length u8, value);
//!                           a reader skips types it does not know
//! ```
//!
//! # Extensions
//!
//! Types 1 to 7 carry the calling workload, as Istio's peer metadata exchange does, for
//! the `source_*` labels of the called proxy's metrics: 1 workload name, 2 namespace,
//! 3 `app`, 4 `version`, 5 canonical service, 6 canonical revision, 7 cluster (UTF-8,
//! each at most 255 bytes; a field the caller does not know is left out). The caller's
//! principal is not among them: it is what its certificate proves.
//!
//! The first byte, 0xF0, is not ASCII: no HTTP request, TLS record (0x16) or HTTP/2
//! preface (`PRI`) starts with it, so a listener can tell a header from a client that
//! skipped it. The parser is a pure function over a byte slice ([`parse`]), so it can be
//! fuzzed and property-tested without sockets.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::Error;

/// The four bytes every header starts with.
pub const MAGIC: [u8; 4] = [0xF0, b'S', b'K', b'F'];
/// The version this code writes.
pub const VERSION: u8 = 1;
/// Length of the fixed part of the header.
pub const FIXED_LEN: usize = 10;
/// The largest extension area a reader accepts.
pub const MAX_EXT_LEN: usize = 1024;

/// A decoded transport header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportHeader {
    /// The application port on the destination workload.
    pub target_port: u16,
}

/// The result of [`parse`] on a prefix of a connection's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header, and how many bytes it took (including its extensions).
    Complete(TransportHeader, usize),
    /// Valid so far; at least this many bytes in total are needed.
    Incomplete(usize),
}

impl TransportHeader {
    /// The header's bytes with an extension area (well-formed TLVs, at most
    /// [`MAX_EXT_LEN`] bytes; a longer one is left out).
    pub fn encode_with(&self, ext: &[u8]) -> Vec<u8> {
        let ext = if ext.len() <= MAX_EXT_LEN { ext } else { &[] };
        let mut out = Vec::with_capacity(FIXED_LEN + ext.len());
        out.extend_from_slice(&self.encode());
        out[8..10].copy_from_slice(&(ext.len() as u16).to_be_bytes());
        out.extend_from_slice(ext);
        out
    }

    /// The header's bytes, as written on the wire (no extensions).
    pub fn encode(&self) -> [u8; FIXED_LEN] {
        let port = self.target_port.to_be_bytes();
        [
            MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], VERSION, 0, port[0], port[1], 0, 0,
        ]
    }
}

/// Parses a header at the start of `buf`. Never panics, never reads past `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, Error> {
    // Check what is there before asking for more, so garbage fails fast.
    let magic_seen = buf.len().min(MAGIC.len());
    if buf[..magic_seen] != MAGIC[..magic_seen] {
        return Err(bad(
            "bad magic: the peer did not send a skiff transport header",
        ));
    }
    if buf.len() > 4 && buf[4] != VERSION {
        return Err(Error::TransportHeader(format!(
            "unsupported version {} (this proxy speaks {VERSION})",
            buf[4]
        )));
    }
    if buf.len() > 5 && buf[5] != 0 {
        return Err(Error::TransportHeader(format!(
            "unknown flags {:#04x}",
            buf[5]
        )));
    }
    if buf.len() < FIXED_LEN {
        return Ok(Parsed::Incomplete(FIXED_LEN));
    }
    let target_port = u16::from_be_bytes([buf[6], buf[7]]);
    if target_port == 0 {
        return Err(bad("target port 0"));
    }
    let ext_len = usize::from(u16::from_be_bytes([buf[8], buf[9]]));
    if ext_len > MAX_EXT_LEN {
        return Err(Error::TransportHeader(format!(
            "extension area of {ext_len} bytes is over the limit of {MAX_EXT_LEN}"
        )));
    }
    let total = FIXED_LEN + ext_len;
    if buf.len() < total {
        return Ok(Parsed::Incomplete(total));
    }
    check_extensions(&buf[FIXED_LEN..total])?;
    Ok(Parsed::Complete(TransportHeader { target_port }, total))
}

/// Extensions must be well-formed TLVs even though version 1 defines none: a sender
/// that writes them wrongly is found at once, not when a type gets a meaning.
fn check_extensions(mut ext: &[u8]) -> Result<(), Error> {
    while !ext.is_empty() {
        if ext.len() < 2 {
            return Err(bad("truncated extension"));
        }
        let len = usize::from(ext[1]);
        if ext.len() < 2 + len {
            return Err(bad("extension longer than the extension area"));
        }
        ext = &ext[2 + len..];
    }
    Ok(())
}

fn bad(reason: &str) -> Error {
    Error::TransportHeader(reason.to_owned())
}

/// Reads a header from the start of a connection. Returns it with the bytes read past
/// it (the start of the application's stream), which the caller must replay.
pub async fn read<R: AsyncRead + Unpin>(io: &mut R) -> Result<(TransportHeader, Bytes), Error> {
    read_with_extensions(io).await.map(|(h, _, rest)| (h, rest))
}

/// [`read`], also returning the header's extension area.
pub async fn read_with_extensions<R: AsyncRead + Unpin>(
    io: &mut R,
) -> Result<(TransportHeader, Bytes, Bytes), Error> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        match parse(&buf)? {
            Parsed::Complete(header, used) => {
                let mut head = buf.split_to(used);
                let ext = head.split_off(FIXED_LEN).freeze();
                return Ok((header, ext, buf.freeze()));
            }
            Parsed::Incomplete(_) => {
                if io.read_buf(&mut buf).await? == 0 {
                    return Err(bad("connection closed inside the header"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
