//! Resource types of the protocol, their encoding and their versions.
//!
//! There is one resource type: the compiled configuration of one proxy, sent as
//! several resources: the proxy's own part, named by the proxy id, and the pieces of
//! the part it shares with the proxies that see the mesh alike, named by what they
//! hold (`port/80`, `vhost/80/<host>:80`, `cluster/<name>`, `endpoints/<cluster>`,
//! `mesh`; see [`SharedPiece`]). Their bodies are the JSON encodings of
//! [`ProxyConfig`] (its shared fields empty) and of [`SharedPiece`]: easy to dump,
//! diff and debug. A protobuf body can come later under a new type URL.

use bytes::Bytes;
use skiff_model::config::{ProxyConfig, SharedPiece};

use crate::XdsError;

/// Type URL of the per-proxy configuration resource.
pub const PROXY_CONFIG_TYPE_URL: &str = "type.skiff.dev/skiff.config.v1.ProxyConfig";

/// Encodes a piece of a shared part as a resource body (JSON).
pub fn encode_piece(piece: &SharedPiece) -> Bytes {
    Bytes::from(serde_json::to_vec(piece).expect("SharedPiece serializes to JSON"))
}

/// Decodes the body of a piece's resource.
pub fn decode_piece(name: &str, body: &[u8]) -> Result<SharedPiece, XdsError> {
    serde_json::from_slice(body).map_err(|source| XdsError::Decode {
        name: name.to_owned(),
        type_url: PROXY_CONFIG_TYPE_URL.to_owned(),
        source,
    })
}

/// What one piece adds to a [`PieceDigest`]: a hash of its name and version.
pub fn piece_hash(name: &str, version: &str) -> u64 {
    fnv(fnv(fnv(OFFSET, name.as_bytes()), &[0]), version.as_bytes())
}

/// A digest of a set of pieces, each by name and version, that changes when any of
/// them does and can be kept up to date one piece at a time: the exclusive or of
/// their [`piece_hash`]es.
pub type PieceDigest = u64;

/// The version of a whole config: a hash of its own part's version and of the
/// [`PieceDigest`] of its pieces. The control plane and the proxy both compute it,
/// from what they send and what they hold.
pub fn config_version(own_version: &str, pieces: PieceDigest) -> String {
    let hash = fnv(fnv(OFFSET, own_version.as_bytes()), &pieces.to_le_bytes());
    format!("{hash:016x}")
}

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(hash, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// Encodes a proxy's configuration as a resource body (JSON).
pub fn encode_proxy_config(config: &ProxyConfig) -> Bytes {
    // Serializing plain data structs with string map keys cannot fail.
    Bytes::from(serde_json::to_vec(config).expect("ProxyConfig serializes to JSON"))
}

/// Decodes a resource body into a proxy's configuration.
pub fn decode_proxy_config(name: &str, body: &[u8]) -> Result<ProxyConfig, XdsError> {
    serde_json::from_slice(body).map_err(|source| XdsError::Decode {
        name: name.to_owned(),
        type_url: PROXY_CONFIG_TYPE_URL.to_owned(),
        source,
    })
}

/// The version of a resource body: 16 hex digits of its 64-bit FNV-1a hash.
///
/// Identical bodies always get identical versions, in every process and on every
/// platform, so a proxy that reconnects to a restarted control plane can say which
/// config it runs.
pub fn version_of(body: &[u8]) -> String {
    format!("{:016x}", fnv(OFFSET, body))
}

#[cfg(test)]
mod tests;
