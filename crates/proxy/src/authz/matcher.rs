//! The value matchers of AuthorizationPolicy fields, compiled once per snapshot.
//!
//! Istio's string forms: `abc` exact, `abc*` prefix, `*abc` suffix, `*` any present
//! value. Paths add templates of whole segments, `{*}` (one segment) and a last `{**}`
//! (the rest). Addresses are single IPs or CIDR blocks.

use std::net::IpAddr;

/// One compiled value of a string field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StrMatch {
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
    /// `*`: any value, as long as there is one.
    Present,
    /// A path template, by segments (`/a/{*}/b/{**}`).
    Template(Box<[Segment]>),
}

/// A segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Literal(Box<str>),
    /// `{*}`: exactly one segment.
    One,
    /// `{**}`: the rest, one segment or more (last only).
    Rest,
}

impl StrMatch {
    /// Istio's string forms (no templates).
    pub(crate) fn new(v: &str) -> StrMatch {
        if v == "*" {
            StrMatch::Present
        } else if let Some(p) = v.strip_suffix('*') {
            StrMatch::Prefix(p.into())
        } else if let Some(s) = v.strip_prefix('*') {
            StrMatch::Suffix(s.into())
        } else {
            StrMatch::Exact(v.into())
        }
    }

    /// A `paths` value: a template when it has `{*}` or `{**}` segments.
    pub(crate) fn path(v: &str) -> StrMatch {
        if !v.contains('{') {
            return StrMatch::new(v);
        }
        let segments = v
            .trim_start_matches('/')
            .split('/')
            .map(|s| match s {
                "{*}" => Segment::One,
                "{**}" => Segment::Rest,
                s => Segment::Literal(s.into()),
            })
            .collect();
        StrMatch::Template(segments)
    }

    /// Lower-cased copy, for values compared ignoring ASCII case (hosts).
    pub(crate) fn lowercase(v: &str) -> StrMatch {
        StrMatch::new(&v.to_ascii_lowercase())
    }

    pub(crate) fn matches(&self, v: &str) -> bool {
        match self {
            StrMatch::Exact(e) => **e == *v,
            StrMatch::Prefix(p) => v.starts_with(&**p),
            StrMatch::Suffix(s) => v.ends_with(&**s),
            StrMatch::Present => true,
            StrMatch::Template(segments) => template_matches(segments, v),
        }
    }
}

impl std::fmt::Display for StrMatch {
    /// The value as a policy writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StrMatch::Exact(e) => f.write_str(e),
            StrMatch::Prefix(p) => write!(f, "{p}*"),
            StrMatch::Suffix(s) => write!(f, "*{s}"),
            StrMatch::Present => f.write_str("*"),
            StrMatch::Template(segments) => {
                for s in segments.iter() {
                    match s {
                        Segment::Literal(l) => write!(f, "/{l}")?,
                        Segment::One => f.write_str("/{*}")?,
                        Segment::Rest => f.write_str("/{**}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

impl std::fmt::Display for IpBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let full = if self.net.is_ipv4() { 32 } else { 128 };
        if self.prefix == full {
            write!(f, "{}", self.net)
        } else {
            write!(f, "{}/{}", self.net, self.prefix)
        }
    }
}

fn template_matches(segments: &[Segment], path: &str) -> bool {
    let Some(path) = path.strip_prefix('/') else {
        return false;
    };
    let mut parts = path.split('/');
    for (i, seg) in segments.iter().enumerate() {
        match seg {
            Segment::Rest => {
                // The rest: at least one non-empty segment; `{**}` is last.
                let rest: Vec<&str> = parts.collect();
                return i + 1 == segments.len()
                    && !rest.is_empty()
                    && rest.iter().all(|p| !p.is_empty());
            }
            Segment::One => match parts.next() {
                Some(p) if !p.is_empty() => {}
                _ => return false,
            },
            Segment::Literal(l) => {
                if parts.next() != Some(&**l) {
                    return false;
                }
            }
        }
    }
    parts.next().is_none()
}

/// An address or a CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpBlock {
    net: IpAddr,
    prefix: u8,
}

impl IpBlock {
    /// `10.0.0.1`, `10.0.0.0/8`, `2001:db8::/32`.
    pub(crate) fn parse(v: &str) -> Result<IpBlock, String> {
        let (addr, prefix) = match v.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (v, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{v:?} is not an IP address or CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{v:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(IpBlock { net, prefix })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer on an IPv6 socket still matches IPv4 blocks.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_string_forms() {
        assert!(StrMatch::new("GET").matches("GET"));
        assert!(!StrMatch::new("GET").matches("GETX"));
        assert!(StrMatch::new("/api/*").matches("/api/v1"));
        assert!(!StrMatch::new("/api/*").matches("/apx"));
        assert!(StrMatch::new("*.local").matches("a.b.local"));
        assert!(StrMatch::new("*").matches("anything"));
    }

    #[test]
    fn path_templates() {
        let one = StrMatch::path("/users/{*}/profile");
        assert!(one.matches("/users/alice/profile"));
        assert!(!one.matches("/users/profile"));
        assert!(!one.matches("/users/a/b/profile"));
        assert!(!one.matches("/users//profile"));
        let rest = StrMatch::path("/files/{**}");
        assert!(rest.matches("/files/a"));
        assert!(rest.matches("/files/a/b/c.txt"));
        assert!(!rest.matches("/files/"));
        assert!(!rest.matches("/files"));
        assert!(!rest.matches("/other/a"));
    }

    #[test]
    fn ip_blocks() {
        let b = IpBlock::parse("10.1.0.0/16").unwrap();
        assert!(b.contains("10.1.2.3".parse().unwrap()));
        assert!(!b.contains("10.2.0.1".parse().unwrap()));
        assert!(b.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = IpBlock::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(
            IpBlock::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        let v6 = IpBlock::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(IpBlock::parse("10.0.0.0/33").is_err());
        assert!(IpBlock::parse("nope").is_err());
    }
}
