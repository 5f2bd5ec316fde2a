//! A compiled retry policy (VirtualService `retries`).

use std::time::Duration;

use http::StatusCode;
use skiff_model::config::RetryPolicy;

/// When and how often to try again.
#[derive(Debug, Clone)]
pub(crate) struct RetryRt {
    pub(crate) attempts: u32,
    pub(crate) per_try_timeout: Option<Duration>,
    on_5xx: bool,
    on_gateway_error: bool,
    on_reset: bool,
    on_connect_failure: bool,
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
    Reset,
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
            on_5xx: false,
            on_gateway_error: false,
            on_reset: false,
            on_connect_failure: false,
            on_retriable_4xx: false,
            statuses: Vec::new(),
            grpc: Vec::new(),
        };
        for cond in p.retry_on.iter().flat_map(|c| c.split(',')) {
            match cond.trim() {
                "" => {}
                "5xx" => r.on_5xx = true,
                "gateway-error" => r.on_gateway_error = true,
                "reset"
                | "reset-before-request"
                | "refused-stream"
                | "http3-post-connect-failure" => r.on_reset = true,
                "connect-failure" => r.on_connect_failure = true,
                "retriable-4xx" => r.on_retriable_4xx = true,
                // The status codes themselves are listed beside it.
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

    /// Should a try that ended like this be tried again (budget permitting)?
    pub(crate) fn retriable(&self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::ConnectFailure => {
                self.on_connect_failure || self.on_5xx || self.on_gateway_error
            }
            Outcome::Reset => self.on_reset || self.on_5xx,
            Outcome::Timeout => self.on_5xx || self.on_gateway_error,
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

    /// Back-off before try `n` (1-based retry number): 25 ms doubling, with jitter, at
    /// most 250 ms, as Envoy's default.
    pub(crate) fn backoff(n: u32) -> Duration {
        let base = 25u32.saturating_mul(1 << n.min(4)).min(250);
        Duration::from_millis(u64::from(crate::upstream::random_below(base.max(1))))
    }
}
