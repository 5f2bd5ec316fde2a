//! PeerAuthentication: which mutual TLS mode a workload's inbound traffic must use.
//!
//! Istio's rules (`pilot/pkg/model/authentication.go`, `ComposePeerAuthentication` in
//! `pilot/pkg/security/authn/policy_applier.go`):
//! - three scopes: the mesh (root namespace, no selector), the namespace (no selector),
//!   the workload (a selector, in the workload's namespace). A policy with a selector in
//!   the root namespace applies to no workload, not even those of the root namespace.
//! - within a scope the oldest policy wins: `creationTimestamp`, then name, then
//!   namespace (an unset time counts as older than any, as Go's zero time). Later
//!   namespace or mesh policies are dropped altogether.
//! - the narrowest scope whose mode is not UNSET decides (mesh UNSET is PERMISSIVE, no
//!   policy at all is PERMISSIVE).
//! - `portLevelMtls` counts only in the workload policy, keyed by the workload (target)
//!   port; an UNSET port takes the workload's resolved mode.

use std::collections::BTreeMap;

use skiff_api::security::MtlsMode as ApiMode;
use skiff_api::types::Timestamp;

use crate::config::{MtlsMode, MtlsPolicy};
use crate::registry::{Labels, labels_match};

/// A PeerAuthentication: its scope and modes (`None` is UNSET: inherit).
#[derive(Debug, Clone)]
pub(super) struct PeerAuthn {
    pub(super) key: String,
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) created: Option<Timestamp>,
    pub(super) selector: Option<Labels>,
    pub(super) mode: Option<MtlsMode>,
    pub(super) ports: BTreeMap<u16, Option<MtlsMode>>,
}

impl PeerAuthn {
    /// Istio's order among policies: oldest first, then by name, then namespace.
    pub(super) fn age(&self) -> (Option<&Timestamp>, &str, &str) {
        (self.created.as_ref(), &self.name, &self.namespace)
    }
}

pub(super) fn mode(m: Option<ApiMode>) -> Option<MtlsMode> {
    match m? {
        ApiMode::Unset => None,
        ApiMode::Disable => Some(MtlsMode::Disable),
        ApiMode::Permissive => Some(MtlsMode::Permissive),
        ApiMode::Strict => Some(MtlsMode::Strict),
    }
}

/// The effective PeerAuthentication of one workload, with the policy that decided each
/// mode (`None`: Istio's default, PERMISSIVE).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerDecision {
    /// Mode of every port without its own, and who set it.
    pub mode: (MtlsMode, Option<String>),
    /// `portLevelMtls` of the workload policy, resolved, by workload port.
    pub ports: BTreeMap<u16, (MtlsMode, Option<String>)>,
    /// The policies in play, narrowest first: workload, namespace, mesh.
    chain: Vec<String>,
}

impl PeerDecision {
    /// The mode for a workload (target) port, and who set it.
    pub fn for_port(&self, port: u16) -> (MtlsMode, Option<&str>) {
        let (mode, from) = self.ports.get(&port).unwrap_or(&self.mode);
        (*mode, from.as_deref())
    }

    /// The contract's summary: mode, port modes, and the deciding policies.
    pub(super) fn to_policy(&self) -> MtlsPolicy {
        MtlsPolicy {
            mode: self.mode.0,
            ports: self.ports.iter().map(|(p, (m, _))| (*p, *m)).collect(),
            from: self.chain.clone(),
        }
    }
}

/// Resolves the mode of a workload of `namespace` with `labels`. `policies` are in age
/// order, with at most one namespace-wide policy per namespace and none with a selector
/// in the root namespace (see `PolicyIndex::build`).
pub(super) fn resolve(
    policies: &[PeerAuthn],
    root: &str,
    namespace: &str,
    labels: &Labels,
) -> PeerDecision {
    let mesh = policies
        .iter()
        .find(|p| p.namespace == root && p.selector.is_none());
    let (namespace_wide, workload) = if namespace == root {
        (None, None)
    } else {
        let in_ns = || policies.iter().filter(|p| p.namespace == namespace);
        (
            in_ns().find(|p| p.selector.is_none()),
            in_ns().find(|p| p.selector.as_ref().is_some_and(|s| labels_match(s, labels))),
        )
    };
    let mut out = PeerDecision {
        mode: (MtlsMode::Permissive, None),
        ..PeerDecision::default()
    };
    // Widest first, so a narrower explicit mode overrides.
    for p in [mesh, namespace_wide, workload].into_iter().flatten() {
        if let Some(m) = p.mode {
            out.mode = (m, Some(p.key.clone()));
        }
    }
    if let Some(w) = workload {
        for (port, m) in &w.ports {
            let decided = match m {
                Some(m) => (*m, Some(w.key.clone())),
                None => out.mode.clone(),
            };
            out.ports.insert(*port, decided);
        }
    }
    // `from`: narrowest first, down to the policy that set the overall mode; the
    // workload policy also when only its ports count.
    let chain = [workload, namespace_wide, mesh];
    let mut from: Vec<String> = Vec::new();
    for p in chain.into_iter().flatten() {
        let decided = out.mode.1.as_deref() == Some(p.key.as_str());
        let ports = workload.is_some_and(|w| w.key == p.key && !w.ports.is_empty());
        if out.mode.1.is_some() || ports {
            from.push(p.key.clone());
        }
        if decided {
            break;
        }
    }
    out.chain = from;
    out
}

/// The mode Istio's client side assumes for a whole namespace when it decides auto
/// mutual TLS (`GetNamespaceMutualTLSMode`): the namespace-wide policy, else the mesh's,
/// else PERMISSIVE; UNSET inherits.
pub(super) fn namespace_mode(policies: &[PeerAuthn], root: &str, namespace: &str) -> MtlsMode {
    let wide = |ns: &str| {
        policies
            .iter()
            .find(|p| p.namespace == ns && p.selector.is_none())
            .and_then(|p| p.mode)
    };
    let own = if namespace == root {
        None
    } else {
        wide(namespace)
    };
    own.or_else(|| wide(root)).unwrap_or(MtlsMode::Permissive)
}
