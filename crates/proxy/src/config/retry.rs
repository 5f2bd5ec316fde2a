//! A compiled retry policy (VirtualService `retries`), with Envoy's semantics for each
//! `retryOn` condition and its jittered exponential back-off.

use std::time::Duration;

use http::StatusCode;
use skiff_model::config::RetryPolicy;

/// Envoy's default back-off base interval.
pub(crate) const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);

/// When and how often to try again.
#[derive(Debug, Clone)]
pub(crate) struct RetryRt {
    pub(crate) attempts: u32,
    pub(crate) per_try_timeout: Option<Duration>,
    /// Back-off base interval; the longest wait is ten times it.
    pub(crate) backoff: Duration,
    on_5xx: bool,
    on_gateway_error: bool,
    on_reset: bool,
    on_connect_failure: bool,
    on_refused_stream: bool,
    on_retriable_4xx: bool,
    /// `retriable-status-codes` and bare status codes in `retryOn`.
    statuses: Vec<u16>,
    /// gRPC status names (`cancelled`, `unavailable`, …) as their numeric codes.
    grpc: Vec<u8>,
}

/// What happened on one try, as far as the retry policy cares.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    ConnectFailure,
    /// The upstream reset the stream or closed the connection; `refused` when it was an
    /// HTTP/2 `REFUSED_STREAM`.
    Reset {
        refused: bool,
    },
    /// The per-try timeout expired (Envoy treats it as a reset).
    Timeout,
    Response {
        status: StatusCode,
        grpc_status: Option<u8>,
    },
}

impl RetryRt {
    pub(crate) fn compile(route: &str, p: &RetryPolicy, warnings: &mut Vec<String>) -> RetryRt {
        let mut r = RetryRt {
            attempts: p.attempts,
            per_try_timeout: p.per_try_timeout.filter(|t| !t.is_zero()),
            backoff: p
                .backoff
                .filter(|b| !b.is_zero())
                .unwrap_or(DEFAULT_BACKOFF),
            on_5xx: false,
            on_gateway_error: false,
            on_reset: false,
            on_connect_failure: false,
            on_refused_stream: false,
            on_retriable_4xx: false,
            statuses: Vec::new(),
            grpc: Vec::new(),
        };
        for cond in p.retry_on.iter().flat_map(|c| c.split(',')) {
            match cond.trim() {
                "" => {}
                "5xx" => r.on_5xx = true,
                "gateway-error" => r.on_gateway_error = true,
                "reset" | "reset-before-request" | "http3-post-connect-failure" => {
                    r.on_reset = true
                }
                "refused-stream" => r.on_refused_stream = true,
                "connect-failure" => r.on_connect_failure = true,
                "retriable-4xx" => r.on_retriable_4xx = true,
                // The status codes themselves are listed beside it (istiod puts them
                // in `retriable_status_codes` and adds this condition).
                "retriable-status-codes" => {}
                "cancelled" => r.grpc.push(1),
                "deadline-exceeded" => r.grpc.push(4),
                "resource-exhausted" => r.grpc.push(8),
                "internal" => r.grpc.push(13),
                "unavailable" => r.grpc.push(14),
                other => match other.parse::<u16>() {
                    Ok(code) if (100..600).contains(&code) => r.statuses.push(code),
                    _ => warnings.push(format!(
                        "route {route}: retry condition {other:?} is not implemented and is ignored"
                    )),
                },
            }
        }
        r
    }

    /// Should a try that ended like this be tried again (budget permitting)? As
    /// Envoy's retry state: `5xx`, `gateway-error` and `reset` take every reset and
    /// connection failure; `connect-failure` and `refused-stream` only their own.
    pub(crate) fn retriable(&self, outcome: Outcome) -> bool {
        let any_reset = self.on_reset || self.on_5xx || self.on_gateway_error;
        match outcome {
            Outcome::ConnectFailure => any_reset || self.on_connect_failure,
            Outcome::Reset { refused } => any_reset || (refused && self.on_refused_stream),
            Outcome::Timeout => any_reset,
            Outcome::Response {
                status,
                grpc_status,
            } => {
                let code = status.as_u16();
                (self.on_5xx && status.is_server_error())
                    || (self.on_gateway_error && matches!(code, 502..=504))
                    || (self.on_retriable_4xx && code == 409)
                    || self.statuses.contains(&code)
                    || grpc_status.is_some_and(|g| self.grpc.contains(&g))
            }
        }
    }

    /// Back-off before retry `n` (1-based), Envoy's fully jittered exponential
    /// strategy: a random wait below `(2^n - 1) × base`, at most ten times the base.
    pub(crate) fn backoff(&self, n: u32) -> Duration {
        backoff_with(self.backoff, n, crate::upstream::random_below)
    }
}

/// [`RetryRt::backoff`] with the random source given: `random_below(k)` is uniform in
/// `0..k`. Computed in microseconds so a sub-millisecond base still jitters.
pub(crate) fn backoff_with(base: Duration, n: u32, random_below: impl Fn(u32) -> u32) -> Duration {
    let base_us = u64::try_from(base.as_micros()).unwrap_or(u64::MAX).max(1);
    let max_us = base_us.saturating_mul(10);
    let multiplier = (1u64 << n.clamp(1, 30)) - 1;
    let ceiling = base_us.saturating_mul(multiplier).min(u64::from(u32::MAX));
    let wait = u64::from(random_below(u32::try_from(ceiling).unwrap_or(u32::MAX)));
    Duration::from_micros(wait.min(max_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_envoys_jittered_exponential() {
        let base = Duration::from_millis(25);
        // The largest draw shows each ceiling: 25, 75, 175 ms, then capped at 250 ms.
        let top = |k: u32| k - 1;
        assert_eq!(backoff_with(base, 1, top), Duration::from_micros(24_999));
        assert_eq!(backoff_with(base, 2, top), Duration::from_micros(74_999));
        assert_eq!(backoff_with(base, 3, top), Duration::from_micros(174_999));
        assert_eq!(backoff_with(base, 4, top), Duration::from_millis(250));
        assert_eq!(backoff_with(base, 9, top), Duration::from_millis(250));
        assert_eq!(backoff_with(base, 2, |_| 0), Duration::ZERO);
        // Real draws stay below their ceiling.
        let p = RetryRt::compile(
            "r",
            &RetryPolicy {
                attempts: 3,
                per_try_timeout: None,
                retry_on: vec!["5xx".into()],
                backoff: None,
            },
            &mut Vec::new(),
        );
        for n in 1..6 {
            for _ in 0..200 {
                assert!(p.backoff(n) <= Duration::from_millis(250));
            }
        }
        for _ in 0..200 {
            assert!(p.backoff(1) < Duration::from_millis(25));
        }
    }

    #[test]
    fn conditions_follow_envoy() {
        let p = |on: &str| {
            RetryRt::compile(
                "r",
                &RetryPolicy {
                    attempts: 1,
                    per_try_timeout: None,
                    retry_on: vec![on.into()],
                    backoff: None,
                },
                &mut Vec::new(),
            )
        };
        let resp = |s: u16, g: Option<u8>| Outcome::Response {
            status: StatusCode::from_u16(s).unwrap(),
            grpc_status: g,
        };
        let cf = p("connect-failure");
        assert!(cf.retriable(Outcome::ConnectFailure));
        assert!(!cf.retriable(resp(503, None)));
        assert!(!cf.retriable(Outcome::Reset { refused: false }));
        let rs = p("refused-stream");
        assert!(rs.retriable(Outcome::Reset { refused: true }));
        assert!(!rs.retriable(Outcome::Reset { refused: false }));
        assert!(!rs.retriable(Outcome::ConnectFailure));
        let five = p("5xx");
        for o in [
            Outcome::ConnectFailure,
            Outcome::Timeout,
            Outcome::Reset { refused: false },
            resp(500, None),
            resp(503, None),
        ] {
            assert!(five.retriable(o), "{o:?}");
        }
        assert!(!five.retriable(resp(409, None)));
        let gw = p("gateway-error");
        assert!(gw.retriable(resp(504, None)) && !gw.retriable(resp(500, None)));
        assert!(p("retriable-4xx").retriable(resp(409, None)));
        let codes = p("retriable-status-codes,418");
        assert!(codes.retriable(resp(418, None)) && !codes.retriable(resp(503, None)));
        let grpc = p("cancelled,deadline-exceeded,internal,resource-exhausted,unavailable");
        for g in [1, 4, 8, 13, 14] {
            assert!(grpc.retriable(resp(200, Some(g))), "grpc {g}");
        }
        assert!(!grpc.retriable(resp(200, Some(2))));
        assert!(!grpc.retriable(resp(200, None)));
    }
}
