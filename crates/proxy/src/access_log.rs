//! The access log: one line per [`Record`] (HTTP request or TCP connection), in Envoy's
//! default shape, so the people and tools that read Istio's logs read these:
//!
//! ```text
//! [2024-05-01T12:00:00.123Z] "GET /path HTTP/1.1" 200 - 0 1234 5 "10.0.0.7:8080" "backend" default outbound|80||backend.prod.svc.cluster.local
//! ```
//!
//! Fields: start time, request line, status, response flag, bytes received, bytes sent,
//! duration in milliseconds, upstream host, authority, route, cluster; then, when a
//! request took more than one upstream try, `attempts=N`; then, only for
//! what the proxy refused or could not route, why in words (`"plaintext connection refused:
//! PeerAuthentication prod/default is STRICT"`). A line is
//! formatted into a per-thread buffer; lines reach stdout in batches, within 50 ms.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, Version};

use crate::record::{Record, RequestHead};

/// Where access-log lines go.
#[derive(Debug, Clone, Default)]
pub enum AccessLogTarget {
    /// No access log (for benchmarks).
    Off,
    /// One line per request on standard output.
    #[default]
    Stdout,
    /// Lines collected in memory, for tests and embedding.
    Memory(Arc<Mutex<Vec<String>>>),
}

mod batch;
mod filter;

pub(crate) use filter::activation;
pub(crate) mod istio;

/// How access-log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum AccessLogFormat {
    /// skiff's own line (below): Envoy's default fields, then the attempt count and
    /// the reason for what the proxy refused, in words.
    #[default]
    Skiff,
    /// Istio's default text format (`meshConfig.accessLogEncoding: TEXT`).
    Istio,
    /// Istio's default fields as one JSON object per line (`accessLogEncoding: JSON`).
    IstioJson,
}

/// The access log of one proxy.
#[derive(Debug)]
pub(crate) struct AccessLog {
    target: AccessLogTarget,
    format: AccessLogFormat,
    /// For [`AccessLogTarget::Stdout`].
    stdout: Option<Arc<batch::Batch>>,
    /// What the Telemetry API's `accessLogging` says, per side.
    rules: arc_swap::ArcSwap<filter::Rules>,
    /// `rules` change something (without, a request reads neither).
    ruled: AtomicBool,
    /// A filter reads request headers.
    all_headers: AtomicBool,
    /// The format in use: the flag's, or the mesh config's encoding when the flag is
    /// the default (an [`AccessLogFormat`] as a number).
    format_now: AtomicU8,
}

impl AccessLog {
    #[cfg(test)]
    pub(crate) fn new(target: AccessLogTarget) -> Arc<Self> {
        Self::with_format(target, AccessLogFormat::Skiff)
    }

    pub(crate) fn with_format(target: AccessLogTarget, format: AccessLogFormat) -> Arc<Self> {
        let stdout = matches!(target, AccessLogTarget::Stdout).then(batch::Batch::start);
        Arc::new(AccessLog {
            target,
            format,
            stdout,
            rules: arc_swap::ArcSwap::from_pointee(filter::Rules::default()),
            ruled: AtomicBool::new(false),
            all_headers: AtomicBool::new(false),
            format_now: AtomicU8::new(format as u8),
        })
    }

    /// Takes the Telemetry API's access-log settings from a config being applied (off
    /// the request path).
    /// The mesh config's access log (`accessLogFile`, `accessLogEncoding`), when the
    /// control plane read one, decides where no Telemetry does; a format given to the
    /// proxy explicitly (not `skiff`) stays.
    pub(crate) fn set_telemetry(
        &self,
        telemetry: &skiff_model::config::TelemetryConfig,
        mesh: Option<&skiff_model::config::MeshAccessLog>,
    ) {
        if !self.rules.load().made_from(telemetry, mesh) {
            let rules = filter::Rules::of(telemetry, mesh);
            let format = match (self.format, mesh) {
                (AccessLogFormat::Skiff, Some(m)) if m.json => AccessLogFormat::IstioJson,
                (AccessLogFormat::Skiff, Some(_)) => AccessLogFormat::Istio,
                (f, _) => f,
            };
            self.format_now.store(format as u8, Ordering::Relaxed);
            self.all_headers.store(rules.headers, Ordering::Relaxed);
            self.ruled.store(!rules.is_own(), Ordering::Relaxed);
            self.rules.store(Arc::new(rules));
        }
    }

    fn format(&self) -> AccessLogFormat {
        match self.format_now.load(Ordering::Relaxed) {
            x if x == AccessLogFormat::Istio as u8 => AccessLogFormat::Istio,
            x if x == AccessLogFormat::IstioJson as u8 => AccessLogFormat::IstioJson,
            _ => AccessLogFormat::Skiff,
        }
    }

    /// The format shows request headers the record keeps only for it.
    pub(crate) fn wants_headers(&self) -> bool {
        self.enabled() && self.format() != AccessLogFormat::Skiff
    }

    /// A filter expression reads request headers: the record keeps them all.
    pub(crate) fn wants_all_headers(&self) -> bool {
        self.enabled() && self.all_headers.load(Ordering::Relaxed)
    }

    pub(crate) fn enabled(&self) -> bool {
        !matches!(self.target, AccessLogTarget::Off)
    }

    /// Writes the line of a finished request or connection, when the log is on.
    pub(crate) fn write(&self, r: &Record) {
        let write = if self.ruled.load(Ordering::Relaxed) {
            self.rules.load().writes(r, self.enabled())
        } else {
            self.enabled()
        };
        if !write {
            return;
        }
        match (self.format(), &r.request) {
            (AccessLogFormat::Istio, head) => {
                self.emit(|buf| istio::text_line(buf, r, head.as_ref()))
            }
            (AccessLogFormat::IstioJson, head) => {
                self.emit(|buf| istio::json_line(buf, r, head.as_ref()))
            }
            (AccessLogFormat::Skiff, Some(head)) => self.emit(|buf| http_line(buf, r, head)),
            (AccessLogFormat::Skiff, None) => self.emit(|buf| tcp_line(buf, r)),
        }
    }

    /// Writes out buffered lines now (at drain, before the process exits).
    pub(crate) fn flush(&self) {
        if let Some(b) = &self.stdout {
            b.flush();
        }
    }

    fn emit(&self, fill: impl FnOnce(&mut Vec<u8>)) {
        thread_local! {
            static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
        }
        BUF.with(|b| {
            let mut buf = b.borrow_mut();
            buf.clear();
            fill(&mut buf);
            buf.push(b'\n');
            match &self.target {
                AccessLogTarget::Off => {}
                AccessLogTarget::Stdout => {
                    if let Some(b) = &self.stdout {
                        b.push(&buf);
                    }
                }
                AccessLogTarget::Memory(lines) => {
                    let line = String::from_utf8_lossy(&buf[..buf.len() - 1]).into_owned();
                    lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            }
        });
    }
}

/// `[start] "METHOD target VERSION" status flag in out duration "upstream" "authority" route cluster`
fn http_line(buf: &mut Vec<u8>, r: &Record, head: &RequestHead) {
    write_time(buf, r.start);
    let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = head.authority().unwrap_or("-");
    buf.extend_from_slice(b" \"");
    buf.extend_from_slice(head.method.as_str().as_bytes());
    buf.push(b' ');
    // CONNECT's request target is the authority.
    let target = if head.method == Method::CONNECT {
        authority
    } else {
        path
    };
    buf.extend_from_slice(target.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(version_str(head.version).as_bytes());
    buf.extend_from_slice(b"\" ");
    push_u64(buf, u64::from(r.status));
    tail(buf, r, authority);
}

/// `[start] "- - -" 0 flag in out duration "upstream" "-" route cluster`
fn tcp_line(buf: &mut Vec<u8>, r: &Record) {
    write_time(buf, r.start);
    buf.extend_from_slice(b" \"- - -\" 0");
    tail(buf, r, "-");
}

/// The fields after the status, alike for both kinds of line.
fn tail(buf: &mut Vec<u8>, r: &Record, authority: &str) {
    buf.push(b' ');
    buf.extend_from_slice(flags(r).as_bytes());
    buf.push(b' ');
    push_u64(buf, r.bytes_in());
    buf.push(b' ');
    push_u64(buf, r.bytes_out);
    buf.push(b' ');
    push_u64(buf, r.started.elapsed().as_millis() as u64);
    buf.extend_from_slice(b" \"");
    let upstream = r.upstream.as_ref().map_or("-", |u| &*u.display);
    buf.extend_from_slice(upstream.as_bytes());
    buf.extend_from_slice(b"\" \"");
    buf.extend_from_slice(authority.as_bytes());
    buf.extend_from_slice(b"\" ");
    buf.extend_from_slice(r.route.as_deref().unwrap_or("-").as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(r.cluster.as_deref().unwrap_or("-").as_bytes());
    if r.attempts > 1 {
        buf.extend_from_slice(b" attempts=");
        push_u64(buf, u64::from(r.attempts));
    }
    if let Some(details) = &r.details {
        buf.extend_from_slice(b" \"");
        buf.extend_from_slice(details.as_bytes());
        buf.push(b'"');
    }
}

/// Flags as Envoy joins them: the failure's own, then `URX` when retries ran out.
fn flags(r: &Record) -> std::borrow::Cow<'static, str> {
    match (r.flag, r.retries_exhausted) {
        (crate::ResponseFlag::None, true)
        | (crate::ResponseFlag::UpstreamRetryLimitExceeded, _) => "URX".into(),
        (flag, true) => format!("{},URX", flag.as_str()).into(),
        (flag, false) => flag.as_str().into(),
    }
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}

/// Decimal digits of `n`, without the formatting machinery.
fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// `[YYYY-MM-DDTHH:MM:SS.mmmZ]`, in UTC. The part up to the second is formatted once
/// per second per thread.
fn write_time(buf: &mut Vec<u8>, t: SystemTime) {
    thread_local! {
        static SECOND: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
    }
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let (y, mo, da) = civil_from_days((secs / 86_400) as i64);
            let s = secs % 86_400;
            cached.1.clear();
            let _ = write!(
                cached.1,
                "[{y:04}-{mo:02}-{da:02}T{:02}:{:02}:{:02}.",
                s / 3600,
                s / 60 % 60,
                s % 60
            );
            cached.0 = secs;
        }
        buf.extend_from_slice(&cached.1);
    });
    let ms = d.subsec_millis();
    buf.extend_from_slice(&[
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
        b']',
    ]);
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests;
