//! What a discovery client sends is untrusted: node ids, metadata, versions and NACK
//! texts are bounded and made printable before they reach a log line, the sync table or
//! `proxy-status`.

use std::borrow::Cow;

use crate::proto::DiscoveryRequest;

/// Longest `node.id` accepted (a workload name of up to 253 characters, a dot and a
/// namespace of up to 63, with room to spare).
pub(crate) const MAX_NODE_ID: usize = 320;
/// Most `node.metadata` entries accepted.
pub(crate) const MAX_METADATA_ENTRIES: usize = 64;
/// Longest metadata key or value accepted.
pub(crate) const MAX_METADATA_VALUE: usize = 1024;
/// Longest NACK text kept (longer ones are cut).
pub(crate) const MAX_ERROR_DETAIL: usize = 4096;
/// Longest version, nonce, type URL or resource name shown back (longer ones are cut).
pub(crate) const MAX_SHOWN: usize = 256;
/// Largest discovery request decoded; a larger one ends the stream with
/// `RESOURCE_EXHAUSTED`. A proxy's requests are a few hundred bytes.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// `s` with every control character (newlines and terminal escapes included) written as
/// an escape (`\u{1b}`), cut to about `max` bytes with a note of how much was cut.
/// Borrowed when there is nothing to change, which is the usual case.
pub fn printable(s: &str, max: usize) -> Cow<'_, str> {
    let clean = !s.chars().any(char::is_control);
    if clean && s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len().min(max) + 32);
    for (i, c) in s.char_indices() {
        if out.len() >= max {
            out.push_str(&format!("… ({} more bytes)", s.len() - i));
            break;
        }
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Refuses a first request whose node is out of bounds; the message never repeats the
/// offending text in full.
pub(crate) fn check_node(first: &DiscoveryRequest) -> Result<(), String> {
    let Some(node) = &first.node else {
        return Ok(());
    };
    if node.id.len() > MAX_NODE_ID {
        return Err(format!(
            "node.id is {} bytes long; at most {MAX_NODE_ID} are accepted",
            node.id.len()
        ));
    }
    if node.id.chars().any(char::is_control) {
        return Err(format!(
            "node.id {} has control characters",
            printable(&node.id, MAX_SHOWN)
        ));
    }
    if node.metadata.len() > MAX_METADATA_ENTRIES {
        return Err(format!(
            "node.metadata has {} entries; at most {MAX_METADATA_ENTRIES} are accepted",
            node.metadata.len()
        ));
    }
    if let Some((k, v)) = node
        .metadata
        .iter()
        .find(|(k, v)| k.len() > MAX_METADATA_VALUE || v.len() > MAX_METADATA_VALUE)
    {
        return Err(format!(
            "node.metadata entry {} is {} bytes long; keys and values are at most \
             {MAX_METADATA_VALUE} bytes",
            printable(k, 64),
            k.len() + v.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
