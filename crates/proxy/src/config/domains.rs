//! Finding a virtual host by the request's authority: exact names first, then the longest
//! wildcard suffix (`*.example.com`), then `*`, as Envoy orders them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The domains of one route table, ready for lookup.
#[derive(Debug, Default)]
pub struct DomainIndex {
    exact: HashMap<Box<str>, usize, BuildHasherDefault<FastHasher>>,
    /// Suffixes with their leading dot (`.example.com`), longest first.
    wildcards: Vec<(Box<str>, usize)>,
    any: Option<usize>,
}

/// Collects domains, rejecting duplicates.
#[derive(Debug, Default)]
pub(crate) struct DomainIndexBuilder {
    index: DomainIndex,
}

impl DomainIndex {
    pub(crate) fn builder() -> DomainIndexBuilder {
        DomainIndexBuilder::default()
    }

    /// The virtual host for an authority (`host`, `host:port`, any case).
    pub fn find(&self, authority: &str) -> Option<usize> {
        let mut buf = [0u8; 256];
        let authority = if authority.bytes().any(|b| b.is_ascii_uppercase()) {
            if authority.len() > buf.len() {
                return self.any;
            }
            let buf = &mut buf[..authority.len()];
            buf.copy_from_slice(authority.as_bytes());
            buf.make_ascii_lowercase();
            // Lower-casing ASCII letters keeps the bytes valid UTF-8.
            match std::str::from_utf8(buf) {
                Ok(s) => return self.find_lower(s),
                Err(_) => return self.any,
            }
        } else {
            authority
        };
        self.find_lower(authority)
    }

    fn find_lower(&self, authority: &str) -> Option<usize> {
        if let Some(&i) = self.exact.get(authority) {
            return Some(i);
        }
        let host = strip_port(authority);
        if host.len() != authority.len()
            && let Some(&i) = self.exact.get(host)
        {
            return Some(i);
        }
        for (suffix, i) in &self.wildcards {
            if host.len() > suffix.len() && host.ends_with(&**suffix) {
                return Some(*i);
            }
        }
        self.any
    }
}

impl DomainIndexBuilder {
    /// Adds one domain of virtual host `vhost`.
    pub(crate) fn add(&mut self, domain: &str, vhost: usize) -> Result<(), String> {
        let d = domain.trim().to_ascii_lowercase();
        if d.is_empty() {
            return Err("empty domain".to_owned());
        }
        let host = strip_port(&d);
        let duplicate = if host == "*" {
            self.index
                .any
                .replace(vhost)
                .is_some_and(|old| old != vhost)
        } else if let Some(suffix) = host.strip_prefix('*') {
            if !suffix.starts_with('.') || suffix.contains('*') {
                return Err(format!(
                    "domain {domain:?}: only a leading `*.` wildcard is supported"
                ));
            }
            match self.index.wildcards.iter().find(|(s, _)| **s == *suffix) {
                Some((_, old)) => *old != vhost,
                None => {
                    self.index.wildcards.push((suffix.into(), vhost));
                    false
                }
            }
        } else {
            if d.contains('*') {
                return Err(format!("domain {domain:?}: `*` must lead the name"));
            }
            self.index
                .exact
                .insert(d.clone().into_boxed_str(), vhost)
                .is_some_and(|old| old != vhost)
        };
        if duplicate {
            return Err(format!(
                "domain {domain:?} is claimed by more than one virtual host"
            ));
        }
        Ok(())
    }

    pub(crate) fn build(mut self) -> DomainIndex {
        // Longest suffix first; ties keep config order.
        self.index
            .wildcards
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        self.index
    }
}

/// `host:port` → `host`; `[::1]:80` → `[::1]`; anything else unchanged.
pub(crate) fn strip_port(authority: &str) -> &str {
    let bytes = authority.as_bytes();
    if bytes.first() == Some(&b'[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.rfind(':') {
        Some(i) if authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &authority[..i],
        _ => authority,
    }
}

/// A small multiplicative hasher for short, trusted keys (the domain names of the
/// config; lookups never insert). SipHash's flooding resistance buys nothing here.
#[derive(Default)]
pub(crate) struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}
