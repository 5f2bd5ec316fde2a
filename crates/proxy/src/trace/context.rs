//! Trace context in request headers: W3C `traceparent` / `tracestate` and B3, in its
//! multi-header (`x-b3-*`) and single-header (`b3`) forms.
//!
//! Reading costs three header lookups when a request carries none; writing happens only
//! for sampled requests. Each style that came in goes out again with this proxy's span
//! as the parent, as Envoy forwards them; a request that came with none goes out with
//! a `traceparent` (the OpenTelemetry tracer's style).

use http::{HeaderMap, HeaderName, HeaderValue};

pub(super) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
static B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
static B3_PARENT: HeaderName = HeaderName::from_static("x-b3-parentspanid");
static B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
static B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");
static B3: HeaderName = HeaderName::from_static("b3");

/// The trace context a request came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Incoming {
    pub(crate) trace_id: u128,
    /// The caller's span: the parent of this proxy's.
    pub(crate) span_id: u64,
    /// The caller's sampling decision, when it made one.
    pub(crate) sampled: Option<bool>,
    pub(crate) styles: Styles,
}

/// Which header styles a request carried (and gets back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Styles {
    pub(crate) w3c: bool,
    pub(crate) b3_multi: bool,
    pub(crate) b3_single: bool,
    /// The B3 trace id had 16 hex digits (64 bits): it goes out as it came.
    pub(crate) b3_short: bool,
}

/// Reads the request's trace context: `traceparent` first, then `x-b3-*`, then `b3`.
/// A malformed header counts as absent (a new trace starts), as Envoy does.
pub(crate) fn read(headers: &HeaderMap) -> Option<Incoming> {
    let w3c = headers
        .get(&TRACEPARENT)
        .and_then(|v| traceparent(v.as_bytes()));
    let multi = headers.get(&B3_TRACE_ID).and_then(|t| b3_multi(t, headers));
    let single = if multi.is_none() {
        headers.get(&B3).and_then(|v| b3_single(v.as_bytes()))
    } else {
        None
    };
    let b3 = multi.or(single);
    let mut found = w3c.or(b3)?;
    found.styles = Styles {
        w3c: w3c.is_some(),
        b3_multi: multi.is_some(),
        b3_single: single.is_some(),
        b3_short: b3.is_some_and(|b| b.styles.b3_short),
    };
    if found.sampled.is_none() {
        found.sampled = b3.and_then(|b| b.sampled);
    }
    Some(found)
}

fn hex_u128(s: &[u8]) -> Option<u128> {
    if s.is_empty() || s.len() > 32 || !s.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u128::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

fn hex_u64(s: &[u8]) -> Option<u64> {
    if s.len() != 16 || !s.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>` (W3C Trace Context level 1;
/// a later version may append fields after the flags).
fn traceparent(v: &[u8]) -> Option<Incoming> {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    if &v[..2] == b"ff" || (&v[..2] == b"00" && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    if v[36..52].iter().any(u8::is_ascii_uppercase) || v[3..35].iter().any(u8::is_ascii_uppercase) {
        return None;
    }
    let trace_id = hex_u128(&v[3..35]).filter(|&t| t != 0)?;
    let span_id = hex_u64(&v[36..52]).filter(|&s| s != 0)?;
    let flags = u8::from_str_radix(std::str::from_utf8(&v[53..55]).ok()?, 16).ok()?;
    Some(Incoming {
        trace_id,
        span_id,
        sampled: Some(flags & 1 == 1),
        styles: Styles::default(),
    })
}

fn b3_trace_id(v: &[u8]) -> Option<(u128, bool)> {
    match v.len() {
        16 | 32 => Some((hex_u128(v).filter(|&t| t != 0)?, v.len() == 16)),
        _ => None,
    }
}

fn b3_sampled(v: &[u8]) -> Option<bool> {
    match v {
        b"1" | b"d" | b"true" => Some(true),
        b"0" | b"false" => Some(false),
        _ => None,
    }
}

fn b3_multi(trace: &HeaderValue, headers: &HeaderMap) -> Option<Incoming> {
    let (trace_id, short) = b3_trace_id(trace.as_bytes())?;
    let span_id = hex_u64(headers.get(&B3_SPAN_ID)?.as_bytes())?;
    let debug = headers.get(&B3_FLAGS).is_some_and(|f| f.as_bytes() == b"1");
    let sampled = headers
        .get(&B3_SAMPLED)
        .and_then(|s| b3_sampled(s.as_bytes()))
        .or(debug.then_some(true));
    Some(Incoming {
        trace_id,
        span_id,
        sampled,
        styles: Styles {
            b3_short: short,
            ..Styles::default()
        },
    })
}

/// `b3: <trace id>-<span id>[-<sampled>[-<parent span id>]]` (a lone `0`, a deny, is
/// no context to continue).
fn b3_single(v: &[u8]) -> Option<Incoming> {
    let mut parts = v.split(|&b| b == b'-');
    let (trace_id, short) = b3_trace_id(parts.next()?)?;
    let span_id = hex_u64(parts.next()?)?;
    let sampled = match parts.next() {
        None => None,
        Some(s) => Some(b3_sampled(s)?),
    };
    Some(Incoming {
        trace_id,
        span_id,
        sampled,
        styles: Styles {
            b3_short: short,
            ..Styles::default()
        },
    })
}

fn hex<const N: usize>(out: &mut Vec<u8>, v: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..N).rev() {
        out.push(HEX[((v >> (i * 4)) & 0xf) as usize]);
    }
}

fn value(bytes: Vec<u8>) -> HeaderValue {
    // Hex digits and dashes only: always a valid header value.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(bytes))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `traceparent` of a sampled span.
pub(crate) fn traceparent_value(trace_id: u128, span_id: u64) -> HeaderValue {
    let mut v = Vec::with_capacity(55);
    v.extend_from_slice(b"00-");
    hex::<32>(&mut v, trace_id);
    v.push(b'-');
    hex::<16>(&mut v, u128::from(span_id));
    v.extend_from_slice(b"-01");
    value(v)
}

fn b3_trace(v: &mut Vec<u8>, trace_id: u128, short: bool) {
    if short {
        hex::<16>(v, trace_id);
    } else {
        hex::<32>(v, trace_id);
    }
}

/// Writes this proxy's span (`span_id`, child of `parent`) into the headers, in the
/// styles the request came with (`traceparent` when it came with none). `tracestate`
/// is forwarded as it came.
pub(crate) fn inject(
    headers: &mut HeaderMap,
    trace_id: u128,
    span_id: u64,
    parent: Option<u64>,
    styles: Styles,
) {
    let none = !styles.w3c && !styles.b3_multi && !styles.b3_single;
    if styles.w3c || none {
        headers.insert(TRACEPARENT.clone(), traceparent_value(trace_id, span_id));
    }
    if styles.b3_multi {
        let mut t = Vec::with_capacity(32);
        b3_trace(&mut t, trace_id, styles.b3_short);
        headers.insert(B3_TRACE_ID.clone(), value(t));
        let mut s = Vec::with_capacity(16);
        hex::<16>(&mut s, u128::from(span_id));
        headers.insert(B3_SPAN_ID.clone(), value(s));
        match parent {
            Some(p) => {
                let mut s = Vec::with_capacity(16);
                hex::<16>(&mut s, u128::from(p));
                headers.insert(B3_PARENT.clone(), value(s));
            }
            None => {
                headers.remove(&B3_PARENT);
            }
        }
        headers.insert(B3_SAMPLED.clone(), HeaderValue::from_static("1"));
    }
    if styles.b3_single {
        let mut v = Vec::with_capacity(68);
        b3_trace(&mut v, trace_id, styles.b3_short);
        v.push(b'-');
        hex::<16>(&mut v, u128::from(span_id));
        v.extend_from_slice(b"-1");
        if let Some(p) = parent {
            v.push(b'-');
            hex::<16>(&mut v, u128::from(p));
        }
        headers.insert(B3.clone(), value(v));
    }
}
