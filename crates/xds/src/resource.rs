//! Resource types of the protocol, their encoding and their versions.
//!
//! Today there is one resource type: the compiled configuration of one proxy, sent as
//! two resources: the proxy's own part, named by the proxy id, and the part it shares
//! with the proxies that see the mesh alike, named [`SHARED_RESOURCE`]. Their bodies
//! are the JSON encodings of [`ProxyConfig`] (its shared fields empty) and
//! [`SharedConfig`]: easy to dump, diff and debug. A protobuf body can come later
//! under a new type URL.

use bytes::Bytes;
use skiff_model::config::{ProxyConfig, SharedConfig};

use crate::XdsError;

/// Type URL of the per-proxy configuration resource.
pub const PROXY_CONFIG_TYPE_URL: &str = "type.skiff.dev/skiff.config.v1.ProxyConfig";

/// The name of the shared part's resource.
pub const SHARED_RESOURCE: &str = "shared";

/// Encodes the shared part of configurations as a resource body (JSON).
pub fn encode_shared_config(config: &SharedConfig) -> Bytes {
    Bytes::from(serde_json::to_vec(config).expect("SharedConfig serializes to JSON"))
}

/// Decodes the body of the shared resource.
pub fn decode_shared_config(body: &[u8]) -> Result<SharedConfig, XdsError> {
    serde_json::from_slice(body).map_err(|source| XdsError::Decode {
        name: SHARED_RESOURCE.to_owned(),
        type_url: PROXY_CONFIG_TYPE_URL.to_owned(),
        source,
    })
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
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = body
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests;
