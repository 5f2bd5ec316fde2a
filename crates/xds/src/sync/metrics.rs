//! What the push server measures, under Istio's names where Istio has the figure
//! (`pilot/pkg/xds/monitoring.go`) and under `skiff_` where it does not.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Istio's buckets for `pilot_proxy_convergence_time`, in seconds.
const CONVERGENCE_BUCKETS: [f64; 8] = [0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];
/// Istio's buckets for `pilot_xds_push_time`, in seconds.
const PUSH_TIME_BUCKETS: [f64; 8] = [0.01, 0.1, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];
/// Istio's buckets for `pilot_proxy_queue_time`, in seconds.
const QUEUE_TIME_BUCKETS: [f64; 8] = [0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];
/// Istio's buckets for `pilot_xds_config_size_bytes`: 10 kB, 1 MB, 4 MB (gRPC's default
/// message limit), 10 MB, 40 MB.
const CONFIG_SIZE_BUCKETS: [f64; 6] = [1.0, 1e4, 1e6, 4e6, 1e7, 4e7];
/// Buckets of `skiff_config_propagation_seconds`: finer under a second, where a mesh
/// that works well lands.
const PROPAGATION_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How many distinct proxy versions `pilot_xds` labels; more are counted as `other`,
/// so a proxy reporting odd versions cannot grow the series without bound.
const MAX_VERSIONS: usize = 16;

/// `type="ProxyConfig"`, as Istio labels its pushes `type="cds"`, `"eds"`, ….
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct TypeLabel {
    r#type: &'static str,
}

/// skiff's one resource type.
pub(super) const PROXY_CONFIG: TypeLabel = TypeLabel {
    r#type: "ProxyConfig",
};
/// A push that could not be handed to the stream, as Istio counts `cds_senderr`.
pub(super) const PROXY_CONFIG_SEND_ERROR: TypeLabel = TypeLabel {
    r#type: "ProxyConfig_senderr",
};

/// `type="…"` of `pilot_push_triggers`: why a push happened, Istio's trigger reasons
/// `endpoint` (only endpoints changed) and `config` (anything else).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct TriggerLabel {
    r#type: &'static str,
}

/// Why a new snapshot was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Only endpoints changed (WorkloadEntries, Pods, Deployments).
    Endpoint,
    /// Services, routes, policies or anything else changed.
    Config,
}

impl Trigger {
    pub(super) fn label(self) -> TriggerLabel {
        TriggerLabel {
            r#type: match self {
                Trigger::Endpoint => "endpoint",
                Trigger::Config => "config",
            },
        }
    }
}

/// `version="…"` of `pilot_xds`: the skiff version the proxy reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct VersionLabel {
    version: String,
}

/// Why a config change did not reach every affected proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ReasonLabel {
    reason: Incomplete,
}

/// Why a change's propagation did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Incomplete {
    /// An affected proxy rejected the version that carries the change.
    Nack,
    /// An affected proxy's stream ended before it acknowledged.
    Disconnect,
    /// Too many newer changes were waiting: the oldest one stopped being followed.
    Expired,
}

impl Incomplete {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Incomplete::Nack => "nack",
            Incomplete::Disconnect => "disconnect",
            Incomplete::Expired => "expired",
        }
    }
}

impl EncodeLabelValue for Incomplete {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// The series; clones of the handles share their values.
#[derive(Debug)]
pub(super) struct Metrics {
    pub(super) connected: Family<VersionLabel, Gauge>,
    pub(super) pushes: Family<TypeLabel, Counter>,
    pub(super) rejects: Family<TypeLabel, Counter>,
    pub(super) push_time: Family<TypeLabel, Histogram, fn() -> Histogram>,
    pub(super) config_size: Family<TypeLabel, Histogram, fn() -> Histogram>,
    pub(super) convergence: Histogram,
    pub(super) queue_time: Histogram,
    pub(super) propagation: Histogram,
    pub(super) incomplete: Family<ReasonLabel, Counter>,
    pub(super) triggers: Family<TriggerLabel, Counter>,
    /// The versions `pilot_xds` labels so far (at most [`MAX_VERSIONS`]).
    versions: Mutex<BTreeSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            connected: Family::default(),
            pushes: Family::default(),
            rejects: Family::default(),
            push_time: Family::new_with_constructor(|| Histogram::new(PUSH_TIME_BUCKETS)),
            config_size: Family::new_with_constructor(|| Histogram::new(CONFIG_SIZE_BUCKETS)),
            convergence: Histogram::new(CONVERGENCE_BUCKETS),
            queue_time: Histogram::new(QUEUE_TIME_BUCKETS),
            propagation: Histogram::new(PROPAGATION_BUCKETS),
            incomplete: Family::default(),
            triggers: Family::default(),
            versions: Mutex::default(),
        }
    }
}

impl Metrics {
    /// The `pilot_xds` series of a proxy that reports `version`.
    pub(super) fn connected_series(&self, version: Option<&str>) -> VersionLabel {
        let version = version.unwrap_or_default();
        let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        let labeled = versions.contains(version)
            || (versions.len() < MAX_VERSIONS && versions.insert(version.to_owned()));
        VersionLabel {
            version: if labeled {
                version.to_owned()
            } else {
                "other".to_owned()
            },
        }
    }

    pub(super) fn incomplete(&self, reason: Incomplete) {
        self.incomplete.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "pilot_xds",
            "Number of endpoints connected to this pilot using XDS, by the version the proxy reports",
            self.connected.clone(),
        );
        registry.register(
            "pilot_xds_pushes",
            "Pushes of configuration to proxies by resource type; <type>_senderr counts pushes the stream could not take",
            self.pushes.clone(),
        );
        registry.register(
            "pilot_total_xds_rejects",
            "Configurations proxies rejected (NACKs), by resource type",
            self.rejects.clone(),
        );
        registry.register(
            "pilot_xds_push_time",
            "Time in seconds to push a configuration to a proxy, by resource type",
            self.push_time.clone(),
        );
        registry.register_with_unit(
            "pilot_xds_config_size",
            "Sizes of the configurations pushed to proxies, by resource type",
            Unit::Bytes,
            self.config_size.clone(),
        );
        registry.register(
            "pilot_proxy_convergence_time",
            "Delay in seconds between config change and a proxy receiving all required configuration",
            self.convergence.clone(),
        );
        registry.register(
            "pilot_push_triggers",
            "Total number of times a push was triggered, labeled by reason for the push",
            self.triggers.clone(),
        );
        registry.register(
            "pilot_proxy_queue_time",
            "Time in seconds, a proxy is in the push queue before being dequeued",
            self.queue_time.clone(),
        );
        registry.register_with_unit(
            "skiff_config_propagation",
            "Delay in seconds between the config source seeing a change and the last proxy it affects acknowledging the version that carries it",
            Unit::Seconds,
            self.propagation.clone(),
        );
        registry.register(
            "skiff_config_propagation_incomplete",
            "Config changes that did not reach every proxy they affect: a proxy rejected it (nack), disconnected before acknowledging (disconnect), or newer changes pushed it out of the window followed (expired)",
            self.incomplete.clone(),
        );
    }
}
