//! The components of a DestinationRule traffic policy a cluster takes (load balancer,
//! connection pool, outlier detection), converted from the API with Istio's defaults,
//! and merged across levels as Istio's cluster builder merges them
//! (`MergeSubsetTrafficPolicy` in `pilot/pkg/networking/core`): a component the
//! subset sets replaces the rule's whole; a port-level entry for the cluster's port
//! replaces every component of its level, so what it leaves out falls back to the
//! defaults, not to the level above.

use std::time::Duration;

use skiff_api::networking::{
    ConnectionPoolSettings, H2UpgradePolicy, LoadBalancerSettings, LocalityLoadBalancerSetting,
    OutlierDetection as ApiOutlier, SimpleLb,
};

use crate::config::{
    ConnectionPool, ConsistentHash, DEFAULT_MAGLEV_TABLE_SIZE, DEFAULT_RING_SIZE, HashAlgorithm,
    HashCookie, HashKey, LbPolicy, OutlierDetection, TcpKeepalive, Warmup,
};

/// `loadBalancer`, as far as skiff runs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LbSettings {
    /// `simple`, when set to something skiff implements.
    pub simple: Option<LbPolicy>,
    /// `consistentHash`.
    pub consistent_hash: Option<ConsistentHash>,
    /// `warmup` or `warmupDurationSecs`.
    pub warmup: Option<Warmup>,
    /// `localityLbSetting`, as written (the compiler applies it per client).
    pub locality: Option<LocalityLoadBalancerSetting>,
}

/// `connectionPool`: the connect timeout and the limits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolSettings {
    /// `tcp.connectTimeout`.
    pub connect_timeout: Option<Duration>,
    /// Everything else.
    pub limits: ConnectionPool,
}

/// The components of one level of a traffic policy (top level, port level, subset):
/// `None` where the level does not set the component.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterPolicy {
    /// `loadBalancer`.
    pub load_balancer: Option<LbSettings>,
    /// `connectionPool`.
    pub connection_pool: Option<PoolSettings>,
    /// `outlierDetection`.
    pub outlier_detection: Option<OutlierDetection>,
}

impl ClusterPolicy {
    /// `self` with each component `over` sets replacing its own (Istio's subset merge).
    pub fn overlay(mut self, over: &ClusterPolicy) -> ClusterPolicy {
        if over.load_balancer.is_some() {
            self.load_balancer.clone_from(&over.load_balancer);
        }
        if over.connection_pool.is_some() {
            self.connection_pool.clone_from(&over.connection_pool);
        }
        if over.outlier_detection.is_some() {
            self.outlier_detection.clone_from(&over.outlier_detection);
        }
        self
    }

    /// `loadBalancer.simple`, if set.
    pub fn lb(&self) -> Option<LbPolicy> {
        self.load_balancer.as_ref().and_then(|l| l.simple)
    }

    /// `connectionPool.tcp.connectTimeout`, if set.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connection_pool
            .as_ref()
            .and_then(|p| p.connect_timeout)
    }
}

/// One level's components from the API.
pub(super) fn convert(
    lb: Option<&LoadBalancerSettings>,
    pool: Option<&ConnectionPoolSettings>,
    outlier: Option<&ApiOutlier>,
) -> ClusterPolicy {
    ClusterPolicy {
        load_balancer: lb.map(load_balancer),
        connection_pool: pool.map(connection_pool),
        outlier_detection: outlier.map(outlier_detection),
    }
}

fn load_balancer(lb: &LoadBalancerSettings) -> LbSettings {
    let simple = match lb.simple {
        None | Some(SimpleLb::Unspecified) => None,
        Some(SimpleLb::RoundRobin) => Some(LbPolicy::RoundRobin),
        Some(SimpleLb::LeastRequest | SimpleLb::LeastConn) => Some(LbPolicy::LeastRequest),
        Some(SimpleLb::Random) => Some(LbPolicy::Random),
        Some(SimpleLb::Passthrough) => Some(LbPolicy::Passthrough),
    };
    let consistent_hash = lb.consistent_hash.as_ref().and_then(|ch| {
        let key = if let Some(h) = &ch.http_header_name {
            HashKey::Header(h.to_ascii_lowercase())
        } else if let Some(c) = &ch.http_cookie {
            HashKey::Cookie(HashCookie {
                name: c.name.clone(),
                path: c.path.clone(),
                ttl: c.ttl.as_ref().map(|d| d.value()),
            })
        } else if ch.use_source_ip == Some(true) {
            HashKey::SourceIp
        } else if let Some(q) = &ch.http_query_parameter_name {
            HashKey::QueryParameter(q.clone())
        } else {
            // Validation reports a hash with nothing to hash.
            return None;
        };
        // Istio: Maglev when asked for, else a ring hash; sizes of 0 take Envoy's.
        let algorithm = match &ch.maglev {
            Some(m) => HashAlgorithm::Maglev {
                table_size: m
                    .table_size
                    .filter(|n| *n > 0)
                    .unwrap_or(DEFAULT_MAGLEV_TABLE_SIZE),
            },
            None => HashAlgorithm::RingHash {
                minimum_ring_size: ch
                    .ring_hash
                    .as_ref()
                    .and_then(|r| r.minimum_ring_size)
                    .or(ch.minimum_ring_size)
                    .filter(|n| *n > 0)
                    .unwrap_or(DEFAULT_RING_SIZE),
            },
        };
        Some(ConsistentHash { key, algorithm })
    });
    // Istio: `warmup` wins over the older `warmupDurationSecs`; Envoy's defaults (10 %,
    // aggression 1) for what is unset.
    let warmup = match (&lb.warmup, &lb.warmup_duration_secs) {
        (Some(w), _) => Some(Warmup {
            window: w.duration.value(),
            minimum_percent: w.minimum_percent.map_or(10, |p| p.clamp(0.0, 100.0) as u32),
            aggression_milli: w
                .aggression
                .filter(|a| *a > 0.0)
                .map_or(1000, |a| (a * 1000.0).min(u32::MAX as f64) as u32),
        }),
        (None, Some(d)) => Some(Warmup {
            window: d.value(),
            minimum_percent: 10,
            aggression_milli: 1000,
        }),
        (None, None) => None,
    }
    .filter(|w| !w.window.is_zero());
    LbSettings {
        simple,
        consistent_hash,
        warmup,
        locality: lb.locality_lb_setting.clone(),
    }
}

/// A limit Istio sets only when positive (else Envoy's 2³²−1: unlimited).
fn limit(v: Option<i32>) -> Option<u32> {
    v.filter(|n| *n > 0).and_then(|n| u32::try_from(n).ok())
}

fn connection_pool(p: &ConnectionPoolSettings) -> PoolSettings {
    let tcp = p.tcp.as_ref();
    let http = p.http.as_ref();
    PoolSettings {
        connect_timeout: tcp
            .and_then(|t| t.connect_timeout.as_ref())
            .map(|d| d.value()),
        limits: ConnectionPool {
            max_connections: limit(tcp.and_then(|t| t.max_connections)),
            max_pending_requests: limit(http.and_then(|h| h.http1_max_pending_requests)),
            max_requests: limit(http.and_then(|h| h.http2_max_requests)),
            max_retries: limit(http.and_then(|h| h.max_retries)),
            max_requests_per_connection: limit(http.and_then(|h| h.max_requests_per_connection)),
            // Istio: `http.idleTimeout`, else `tcp.idleTimeout`; `0s` turns it off.
            idle_timeout: http
                .and_then(|h| h.idle_timeout.as_ref())
                .or_else(|| tcp.and_then(|t| t.idle_timeout.as_ref()))
                .map(|d| d.value())
                .filter(|d| !d.is_zero()),
            tcp_idle_timeout: tcp.and_then(|t| t.idle_timeout.as_ref()).map(|d| d.value()),
            max_connection_duration: tcp
                .and_then(|t| t.max_connection_duration.as_ref())
                .map(|d| d.value())
                .filter(|d| !d.is_zero()),
            tcp_keepalive: tcp
                .and_then(|t| t.tcp_keepalive.as_ref())
                .map(|k| TcpKeepalive {
                    probes: k.probes.filter(|n| *n > 0),
                    time: k.time.as_ref().map(|d| d.value()),
                    interval: k.interval.as_ref().map(|d| d.value()),
                }),
            h2_upgrade: http.and_then(|h| h.h2_upgrade_policy) == Some(H2UpgradePolicy::Upgrade),
            use_client_protocol: http.and_then(|h| h.use_client_protocol) == Some(true),
            max_concurrent_streams: limit(http.and_then(|h| h.max_concurrent_streams)),
        },
    }
}

/// Envoy's defaults where Istio passes nothing (`applyOutlierDetection` in Istio's
/// cluster builder sets a field only when the user did).
fn outlier_detection(o: &ApiOutlier) -> OutlierDetection {
    let secs = Duration::from_secs;
    let base = o
        .base_ejection_time
        .as_ref()
        .map(|d| d.value())
        .filter(|d| !d.is_zero())
        .unwrap_or(secs(30));
    let split = o.split_external_local_origin_errors == Some(true);
    // The deprecated `consecutiveErrors` counts gateway errors only, as Istio read it
    // (istio/api#617); the newer fields, when set, take precedence.
    let (default_5xx, default_gateway) = match o.consecutive_errors {
        Some(n) if n > 0 => (0, n as u32),
        _ => (5, 0),
    };
    OutlierDetection {
        consecutive_5xx: o.consecutive_5xx_errors.unwrap_or(default_5xx),
        consecutive_gateway: o.consecutive_gateway_errors.unwrap_or(default_gateway),
        consecutive_local_origin: match (split, o.consecutive_local_origin_failures) {
            (false, _) => 0,
            (true, Some(n)) if n > 0 => n,
            (true, _) => 5,
        },
        split_local_origin: split,
        interval: o
            .interval
            .as_ref()
            .map(|d| d.value())
            .filter(|d| !d.is_zero())
            .unwrap_or(secs(10)),
        base_ejection_time: base,
        max_ejection_time: base.max(secs(300)),
        max_ejection_percent: o
            .max_ejection_percent
            .filter(|n| *n > 0)
            .map_or(10, |n| n.min(100) as u32),
        min_health_percent: o.min_health_percent.map_or(0, |n| n.clamp(0, 100) as u32),
    }
}

#[cfg(test)]
mod tests;
