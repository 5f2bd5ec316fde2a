//! Who is at either end of a request, as Istio's standard metrics name them: the
//! workload (from this proxy's node, the compiled endpoints, or the caller's transport
//! header) and the destination service.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What Istio reports for a label it does not know.
pub(crate) const UNKNOWN: &str = "unknown";

/// Istio's default cluster id (`CLUSTER_ID`), which local mode reports as well.
pub(crate) const DEFAULT_CLUSTER: &str = "Kubernetes";

/// A unique id per value made, so a cache can key on it without holding the value.
fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One workload, as the `source_*` or `destination_*` labels show it.
#[derive(Debug)]
pub(crate) struct Workload {
    pub(crate) id: u64,
    pub(crate) name: Arc<str>,
    pub(crate) namespace: Arc<str>,
    /// Its SPIFFE id, when a mutual TLS handshake proved it; else `unknown`.
    pub(crate) principal: Arc<str>,
    pub(crate) app: Arc<str>,
    pub(crate) version: Arc<str>,
    pub(crate) canonical_service: Arc<str>,
    pub(crate) canonical_revision: Arc<str>,
    pub(crate) cluster: Arc<str>,
}

/// The fields of a [`Workload`] that travel in the transport header (the principal
/// comes from the connection's certificate instead), in TLV type order from 1.
pub(crate) const EXCHANGED: usize = 7;

impl Workload {
    /// A workload nothing is known of: every label `unknown`.
    pub(crate) fn unknown() -> Arc<Workload> {
        let u: Arc<str> = UNKNOWN.into();
        Arc::new(Workload {
            id: next_id(),
            name: u.clone(),
            namespace: u.clone(),
            principal: u.clone(),
            app: u.clone(),
            version: u.clone(),
            canonical_service: u.clone(),
            canonical_revision: u.clone(),
            cluster: u,
        })
    }

    /// A workload known by name, namespace and labels, as Istio derives its labels:
    /// `app` and `version` from the labels of those names (else `unknown`); the canonical
    /// service from `service.istio.io/canonical-name`, `app.kubernetes.io/name`, `app`,
    /// else the workload name; the canonical revision from
    /// `service.istio.io/canonical-revision`, `app.kubernetes.io/version`, `version`,
    /// else `latest`.
    pub(crate) fn from_labels(
        name: &str,
        namespace: &str,
        principal: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> Arc<Workload> {
        let get = |k: &str| labels.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let first = |keys: &[&str]| keys.iter().find_map(|k| get(k));
        let canonical_service = first(&[
            "service.istio.io/canonical-name",
            "app.kubernetes.io/name",
            "app",
        ])
        .unwrap_or(name);
        let canonical_revision = first(&[
            "service.istio.io/canonical-revision",
            "app.kubernetes.io/version",
            "version",
        ])
        .unwrap_or("latest");
        Workload::from_fields(
            [
                name,
                namespace,
                get("app").unwrap_or(UNKNOWN),
                get("version").unwrap_or(UNKNOWN),
                canonical_service,
                canonical_revision,
                DEFAULT_CLUSTER,
            ],
            principal,
        )
    }

    /// A workload from the exchanged fields ([`Workload::exchanged`]'s order); empty
    /// fields are `unknown`.
    pub(crate) fn from_fields(fields: [&str; EXCHANGED], principal: Option<&str>) -> Arc<Workload> {
        let v = |s: &str| -> Arc<str> {
            if s.is_empty() {
                UNKNOWN.into()
            } else {
                s.into()
            }
        };
        Arc::new(Workload {
            id: next_id(),
            name: v(fields[0]),
            namespace: v(fields[1]),
            principal: v(principal.unwrap_or("")),
            app: v(fields[2]),
            version: v(fields[3]),
            canonical_service: v(fields[4]),
            canonical_revision: v(fields[5]),
            cluster: v(fields[6]),
        })
    }

    /// The same workload with another principal (this proxy's own, on a connection
    /// that proved it).
    pub(crate) fn with_principal(&self, principal: Option<&str>) -> Arc<Workload> {
        Workload::from_fields(self.exchanged(), principal)
    }

    /// The fields sent to peer proxies, in TLV type order (1 = name … 7 = cluster).
    pub(crate) fn exchanged(&self) -> [&str; EXCHANGED] {
        [
            &self.name,
            &self.namespace,
            &self.app,
            &self.version,
            &self.canonical_service,
            &self.canonical_revision,
            &self.cluster,
        ]
    }

    /// The transport-header extension area that carries this workload to a peer proxy:
    /// one TLV per field (type 1–7), fields over 255 bytes left out.
    pub(crate) fn encode_exchange(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, value) in self.exchanged().iter().enumerate() {
            let room = crate::transport_header::MAX_EXT_LEN - out.len();
            if value.len() > 255 || value.len() + 2 > room || *value == UNKNOWN {
                continue;
            }
            out.push(i as u8 + 1);
            out.push(value.len() as u8);
            out.extend_from_slice(value.as_bytes());
        }
        out
    }
}

/// The destination service of a request: `destination_service` (its host),
/// `destination_service_name` and `destination_service_namespace`.
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) id: u64,
    pub(crate) host: Arc<str>,
    pub(crate) name: Arc<str>,
    pub(crate) namespace: Arc<str>,
}

impl Service {
    /// The service of a host: a Kubernetes-style FQDN (`name.namespace.svc.…`) gives
    /// its name and namespace; any other host (a ServiceEntry's, or a cluster like
    /// `PassthroughCluster`) is its own name, in namespace `unknown`.
    pub(crate) fn from_host(host: &str) -> Arc<Service> {
        let host = host.strip_suffix('.').unwrap_or(host);
        let mut parts = host.splitn(4, '.');
        let (name, namespace) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(ns), Some("svc")) => (n, ns),
            _ => (host, UNKNOWN),
        };
        fn or_unknown(s: &str) -> &str {
            if s.is_empty() { UNKNOWN } else { s }
        }
        Arc::new(Service {
            id: next_id(),
            host: or_unknown(host).into(),
            name: or_unknown(name).into(),
            namespace: namespace.into(),
        })
    }

    /// The service of a cluster name: `outbound|<port>|<subset>|<host>` gives its host,
    /// any other name (`inbound|…`, `PassthroughCluster`) stands for itself.
    pub(crate) fn from_cluster(cluster: &str) -> Arc<Service> {
        match cluster
            .strip_prefix("outbound|")
            .and_then(|r| r.rsplit('|').next())
        {
            Some(host) => Service::from_host(host),
            None => Service::from_host(cluster),
        }
    }

    /// `unknown` for all three labels.
    pub(crate) fn unknown() -> Arc<Service> {
        Service::from_host(UNKNOWN)
    }
}

/// Decodes the peer workload of a transport header's extension area (see
/// [`Workload::encode_exchange`]); `None` when it carries none of the fields.
pub(crate) fn decode_exchange(ext: &[u8], principal: Option<&str>) -> Option<Arc<Workload>> {
    let mut fields = [""; EXCHANGED];
    let mut any = false;
    let mut rest = ext;
    while rest.len() >= 2 {
        let (t, len) = (usize::from(rest[0]), usize::from(rest[1]));
        let Some(value) = rest.get(2..2 + len) else {
            break;
        };
        if (1..=EXCHANGED).contains(&t)
            && let Ok(s) = std::str::from_utf8(value)
        {
            fields[t - 1] = s;
            any = true;
        }
        rest = &rest[2 + len..];
    }
    any.then(|| Workload::from_fields(fields, principal))
}
