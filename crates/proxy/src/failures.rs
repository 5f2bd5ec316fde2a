//! The ring of recent failed requests, for `skiff explain`: a writer of the
//! [record](crate::record::Record), as the access log is.
//!
//! Only failures are copied: a request the proxy answered (or passed on) with status
//! 400 or above, or that carries a response flag other than `DI`. A successful request
//! costs one comparison. The ring has a fixed number of slots, allocated once; the
//! newest failure overwrites the oldest. The admin endpoint serves it as
//! `GET /failures` (newest last).

use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

use crate::ResponseFlag;
use crate::record::Record;

/// How many failures a proxy keeps.
pub(crate) const CAPACITY: usize = 256;

/// One failed request, as `/failures` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Failure {
    /// When the request started, RFC 3339.
    pub(crate) start: String,
    /// Milliseconds since the Unix epoch, to order failures across proxies.
    pub(crate) start_ms: u64,
    /// `x-request-id`, when the request had one (or this proxy gave it one).
    pub(crate) request_id: Option<String>,
    /// `outbound`, `inbound` or `gateway`.
    pub(crate) direction: &'static str,
    /// HTTP method (`None` for a TCP connection).
    pub(crate) method: Option<String>,
    /// The authority asked for.
    pub(crate) authority: Option<String>,
    /// The path asked for.
    pub(crate) path: Option<String>,
    /// The status sent downstream (0 when none was).
    pub(crate) status: u16,
    /// Envoy's response flags, as the access log writes them (`-` when none).
    pub(crate) flag: String,
    /// The route taken: `<namespace>/<virtualservice>/<rule>`, `default`, or the
    /// inbound port's name.
    pub(crate) route: Option<String>,
    /// The cluster chosen.
    pub(crate) cluster: Option<String>,
    /// The endpoint of the last try.
    pub(crate) upstream_host: Option<String>,
    /// Upstream tries made.
    pub(crate) attempts: u32,
    /// The retry policy's attempts were used up.
    pub(crate) retries_exhausted: bool,
    /// Why, in words, when the proxy said.
    pub(crate) details: Option<String>,
    /// The downstream's address.
    pub(crate) downstream: String,
    /// The downstream's SPIFFE id, over mutual TLS.
    pub(crate) peer: Option<String>,
}

/// The fixed-size ring.
#[derive(Debug)]
pub(crate) struct Failures {
    ring: Mutex<Ring>,
}

#[derive(Debug)]
struct Ring {
    slots: Vec<Option<Failure>>,
    /// The slot the next failure goes to.
    next: usize,
}

impl Default for Failures {
    fn default() -> Self {
        Failures::with_capacity(CAPACITY)
    }
}

impl Failures {
    /// A ring of `capacity` slots (at least one).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let slots = vec![None; capacity.max(1)];
        Failures {
            ring: Mutex::new(Ring { slots, next: 0 }),
        }
    }

    /// Whether a finished record is a failure the ring keeps.
    #[inline]
    pub(crate) fn is_failure(status: u16, flag: ResponseFlag) -> bool {
        status >= 400 || !matches!(flag, ResponseFlag::None | ResponseFlag::DelayInjected)
    }

    /// Copies the record in when it is a failure.
    #[inline]
    pub(crate) fn write(&self, record: &Record) {
        if Failures::is_failure(record.status, record.flag) {
            self.push(failure_of(record));
        }
    }

    #[cold]
    fn push(&self, failure: Failure) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let at = ring.next;
        ring.slots[at] = Some(failure);
        ring.next = (at + 1) % ring.slots.len();
    }

    /// The failures kept, oldest first.
    pub(crate) fn list(&self) -> Vec<Failure> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let (newer, older) = ring.slots.split_at(ring.next);
        older.iter().chain(newer).flatten().cloned().collect()
    }
}

#[cold]
fn failure_of(r: &Record) -> Failure {
    let start_ms = r
        .start
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    // Joined as the access log joins them: the failure's own, then `URX`.
    let flag = match (r.flag, r.retries_exhausted) {
        (ResponseFlag::None, true) | (ResponseFlag::UpstreamRetryLimitExceeded, _) => {
            "URX".to_owned()
        }
        (flag, true) => format!("{},URX", flag.as_str()),
        (flag, false) => flag.as_str().to_owned(),
    };
    let head = r.request.as_ref();
    Failure {
        start: time::OffsetDateTime::from(r.start)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        start_ms,
        request_id: r
            .request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        direction: r.conn.role.as_str(),
        method: head.map(|h| h.method.to_string()),
        authority: head.and_then(|h| h.authority()).map(str::to_owned),
        path: head.map(|h| h.uri.path().to_owned()),
        status: r.status,
        flag,
        route: r.route.as_deref().map(str::to_owned),
        cluster: r.cluster.as_deref().map(str::to_owned),
        upstream_host: r.upstream.as_ref().map(|u| u.display.to_string()),
        attempts: r.attempts,
        retries_exhausted: r.retries_exhausted,
        details: r.details.as_deref().map(str::to_owned),
        downstream: r.conn.peer.to_string(),
        peer: r.conn.peer_identity().map(str::to_owned),
    }
}

#[cfg(test)]
mod tests;
