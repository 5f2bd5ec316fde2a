//! Resources as loaded: kind, metadata, typed spec and where each came from; and the
//! set of them with accessors per kind.

mod kind;
mod set;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::kube::{CronJobSpec, DeploymentSpec, JobSpec, NamespaceSpec, PodSpec, ServiceSpec};
use crate::meta::ObjectMeta;
use crate::networking::{
    DestinationRule, Gateway, ServiceEntry, Sidecar, VirtualService, WorkloadEntry, WorkloadGroup,
};
use crate::security::{AuthorizationPolicy, PeerAuthentication, RequestAuthentication};
use crate::telemetry::Telemetry;

pub use kind::Kind;
pub use set::{Entry, ResourceSet};

/// A line and column in a file, both counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Position {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1 (in characters).
    pub column: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Where each field of a document was written: field path (`spec.http[0].route`) →
/// position of its value, and of its key when it has one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPositions {
    pub(crate) map: HashMap<String, FieldPosition>,
}

/// The position of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPosition {
    /// Where the key was written (`None` for list items and the document root).
    pub key: Option<Position>,
    /// Where the value starts.
    pub value: Position,
}

impl FieldPositions {
    /// The position of exactly this field path, when it was written.
    pub fn get(&self, path: &str) -> Option<FieldPosition> {
        self.map.get(path).copied()
    }

    /// The position of a field path, or of its nearest parent that was written.
    pub fn lookup(&self, path: &str) -> Option<FieldPosition> {
        let mut p = path;
        loop {
            if let Some(pos) = self.map.get(p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// Whether this exact path was written in the document.
    pub fn contains(&self, path: &str) -> bool {
        self.map.contains_key(path)
    }

    /// Number of fields recorded.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Where a resource came from.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The file, as it was named to the loader.
    pub file: Arc<Path>,
    /// Index of the document in the file, from 0.
    pub document: usize,
    /// Where the resource starts (its first line of content).
    pub position: Position,
    /// Positions of the document's fields, for messages about them.
    pub fields: Arc<FieldPositions>,
}

impl Origin {
    /// An origin for resources built in code (no file).
    pub fn synthetic(name: &str) -> Self {
        Origin {
            file: Arc::from(Path::new(name)),
            document: 0,
            position: Position { line: 1, column: 1 },
            fields: Arc::default(),
        }
    }
}

impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        self.file == other.file
            && self.document == other.document
            && self.position == other.position
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.position)
    }
}

/// The typed spec of a resource, one variant per kind skiff reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)] // reason: specs are built once and read in place
pub enum Spec {
    /// networking.istio.io VirtualService.
    VirtualService(VirtualService),
    /// networking.istio.io DestinationRule.
    DestinationRule(DestinationRule),
    /// networking.istio.io Gateway.
    Gateway(Gateway),
    /// networking.istio.io ServiceEntry.
    ServiceEntry(ServiceEntry),
    /// networking.istio.io WorkloadEntry.
    WorkloadEntry(WorkloadEntry),
    /// networking.istio.io WorkloadGroup.
    WorkloadGroup(WorkloadGroup),
    /// networking.istio.io Sidecar.
    Sidecar(Sidecar),
    /// security.istio.io PeerAuthentication.
    PeerAuthentication(PeerAuthentication),
    /// security.istio.io AuthorizationPolicy.
    AuthorizationPolicy(AuthorizationPolicy),
    /// security.istio.io RequestAuthentication.
    RequestAuthentication(RequestAuthentication),
    /// telemetry.istio.io Telemetry.
    Telemetry(Telemetry),
    /// v1 Namespace.
    Namespace(NamespaceSpec),
    /// v1 Service.
    Service(ServiceSpec),
    /// v1 Pod.
    Pod(PodSpec),
    /// apps/v1 Deployment.
    Deployment(DeploymentSpec),
    /// batch/v1 Job.
    Job(JobSpec),
    /// batch/v1 CronJob.
    CronJob(CronJobSpec),
}

impl Spec {
    /// The kind of this spec.
    pub fn kind(&self) -> Kind {
        match self {
            Spec::VirtualService(_) => Kind::VirtualService,
            Spec::DestinationRule(_) => Kind::DestinationRule,
            Spec::Gateway(_) => Kind::Gateway,
            Spec::ServiceEntry(_) => Kind::ServiceEntry,
            Spec::WorkloadEntry(_) => Kind::WorkloadEntry,
            Spec::WorkloadGroup(_) => Kind::WorkloadGroup,
            Spec::Sidecar(_) => Kind::Sidecar,
            Spec::PeerAuthentication(_) => Kind::PeerAuthentication,
            Spec::AuthorizationPolicy(_) => Kind::AuthorizationPolicy,
            Spec::RequestAuthentication(_) => Kind::RequestAuthentication,
            Spec::Telemetry(_) => Kind::Telemetry,
            Spec::Namespace(_) => Kind::Namespace,
            Spec::Service(_) => Kind::Service,
            Spec::Pod(_) => Kind::Pod,
            Spec::Deployment(_) => Kind::Deployment,
            Spec::Job(_) => Kind::Job,
            Spec::CronJob(_) => Kind::CronJob,
        }
    }
}

/// One loaded resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// `apiVersion` as written, e.g. `networking.istio.io/v1beta1`.
    pub api_version: String,
    /// Metadata (name, namespace, labels, annotations).
    pub metadata: ObjectMeta,
    /// The typed spec.
    pub spec: Spec,
    /// Where it was written.
    pub origin: Origin,
}

impl Resource {
    /// The kind.
    pub fn kind(&self) -> Kind {
        self.spec.kind()
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// `metadata.namespace` (`default` when not written).
    pub fn namespace(&self) -> &str {
        &self.metadata.namespace
    }

    /// `Kind namespace/name` (`Kind name` for cluster-scoped kinds), as messages name
    /// a resource.
    pub fn display_name(&self) -> String {
        display_name(self.kind(), self.namespace(), self.name())
    }
}

/// How messages name a resource: `Kind namespace/name`, or `Kind name` for
/// cluster-scoped kinds.
pub fn display_name(kind: Kind, namespace: &str, name: &str) -> String {
    let name = if name.is_empty() { "<unnamed>" } else { name };
    if kind.is_namespaced() {
        format!("{kind} {namespace}/{name}")
    } else {
        format!("{kind} {name}")
    }
}
