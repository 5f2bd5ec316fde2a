//! skiff's checks of security policies: STRICT mutual TLS against plain-text clients
//! (SKF0002), ALLOW policies without a deny-all baseline (SKF0003), and a deny-all that
//! nothing opens (SKF0004).

use std::collections::{BTreeMap, BTreeSet};

use skiff_api::security::AuthorizationAction;
use skiff_api::{Kind, Resource, ResourceSet};

use super::{at, is_gateway, list};
use crate::Mesh;
use crate::analyze::{Message, codes};
use crate::config::MtlsMode;
use crate::registry::{Labels, labels_match};

/// SKF0002: STRICT mutual TLS on workloads while some workload without a sidecar (so
/// speaking plain text) is in the mesh: its calls are refused.
pub(super) fn strict_mtls_plaintext_clients(
    mesh: &Mesh,
    resources: &ResourceSet,
    out: &mut Vec<Message>,
) {
    let registry = mesh.registry();
    let clients: BTreeSet<String> = registry
        .workloads()
        .iter()
        .enumerate()
        .filter(|&(i, w)| !w.sidecar && !is_gateway(mesh, i) && w.resource.kind != "ServiceEntry")
        .map(|(_, w)| w.id())
        .collect();
    if clients.is_empty() {
        return;
    }
    // The policy that makes each workload STRICT, and the workloads it does it for.
    let mut strict: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for w in registry.workloads().iter().filter(|w| w.sidecar) {
        let decision = mesh.rules().policies().peer(&w.namespace, &w.labels);
        let deciders = std::iter::once(&decision.mode)
            .chain(decision.ports.values())
            .filter(|(mode, _)| *mode == MtlsMode::Strict)
            .filter_map(|(_, by)| by.clone());
        for by in deciders {
            strict.entry(by).or_default().insert(w.id());
        }
    }
    for (by, servers) in strict {
        let Some(r) = policy_resource(resources, Kind::PeerAuthentication, &by) else {
            continue;
        };
        out.push(at(
            &codes::STRICT_MTLS_PLAINTEXT_CLIENT,
            r,
            Some("spec.mtls.mode"),
            format!(
                "STRICT mutual TLS refuses plain-text connections to {}, and {} run(s) without \
                 a sidecar, so its calls to them are refused (connection reset)",
                list(&servers),
                list(&clients)
            ),
            "mesh the client (remove `sidecar.istio.io/inject: \"false\"`), or use mode \
             PERMISSIVE until every client has a sidecar (or a portLevelMtls exception for \
             the port it calls)"
                .to_string(),
        ));
    }
}

/// A policy named `namespace/name` (as the model keys them), or `name` alone.
fn policy_resource<'r>(resources: &'r ResourceSet, kind: Kind, key: &str) -> Option<&'r Resource> {
    let (ns, name) = key.split_once('/')?;
    resources.get(kind, ns, name)
}

struct Allow<'r> {
    resource: &'r Resource,
    selector: Option<Labels>,
    allows_nothing: bool,
}

/// SKF0003 and SKF0004: ALLOW policies that leave workloads open (no deny-all
/// baseline), and a deny-all that nothing else opens.
pub(super) fn authorization_baseline(mesh: &Mesh, resources: &ResourceSet, out: &mut Vec<Message>) {
    let root = &mesh.options().root_namespace;
    let allows: Vec<Allow<'_>> = resources
        .authorization_policies()
        .filter(|p| p.action.unwrap_or(AuthorizationAction::Allow) == AuthorizationAction::Allow)
        .filter(|p| p.target_ref.is_none() && p.target_refs.is_empty())
        .map(|p| Allow {
            resource: p.resource,
            selector: p
                .selector
                .as_ref()
                .map(|s| s.match_labels.clone())
                .filter(|l| !l.is_empty()),
            allows_nothing: p.rules.is_empty(),
        })
        .collect();
    if allows.is_empty() {
        return;
    }
    let applies = |a: &Allow<'_>, ns: &str, labels: &Labels| {
        (a.resource.namespace() == ns || a.resource.namespace() == root)
            && a.selector.as_ref().is_none_or(|s| labels_match(s, labels))
    };
    let registry = mesh.registry();
    let workloads: Vec<_> = registry
        .workloads()
        .iter()
        .enumerate()
        .filter(|&(i, w)| w.sidecar || is_gateway(mesh, i))
        .map(|(_, w)| w)
        .collect();
    // SKF0003, per namespace with ALLOW policies of its own.
    let namespaces: BTreeSet<&str> = allows.iter().map(|a| a.resource.namespace()).collect();
    for ns in namespaces {
        let first = allows
            .iter()
            .filter(|a| a.resource.namespace() == ns && !a.allows_nothing)
            .min_by_key(|a| a.resource.name());
        let Some(first) = first else { continue };
        let candidates: Vec<_> = if ns == root {
            workloads.iter().collect()
        } else {
            workloads.iter().filter(|w| w.namespace == ns).collect()
        };
        let open: BTreeSet<String> = candidates
            .iter()
            .filter(|w| !allows.iter().any(|a| applies(a, &w.namespace, &w.labels)))
            .map(|w| w.id())
            .collect();
        if open.is_empty() {
            continue;
        }
        out.push(at(
            &codes::ALLOW_WITHOUT_DENY_ALL_BASELINE,
            first.resource,
            None,
            format!(
                "namespace {ns} has ALLOW policies but no deny-all baseline: {} are selected \
                 by no ALLOW policy, so they accept every request (with no ALLOW policy, \
                 Istio allows)",
                list(&open)
            ),
            format!(
                "add an AuthorizationPolicy with `spec: {{}}` in namespace {ns} (allow nothing), \
                 then ALLOW what each workload needs"
            ),
        ));
    }
    // SKF0004: a deny-all and nothing that allows anything.
    for deny in allows.iter().filter(|a| a.allows_nothing) {
        let closed: BTreeSet<String> = workloads
            .iter()
            .filter(|w| applies(deny, &w.namespace, &w.labels))
            .filter(|w| {
                !allows
                    .iter()
                    .any(|a| !a.allows_nothing && applies(a, &w.namespace, &w.labels))
            })
            .map(|w| w.id())
            .collect();
        if closed.is_empty() {
            continue;
        }
        out.push(at(
            &codes::DENY_ALL_WITH_NOTHING_ALLOWED,
            deny.resource,
            None,
            format!(
                "this policy allows nothing, and no other ALLOW policy applies to {}: every \
                 request to them is denied (403 RBAC: access denied)",
                list(&closed)
            ),
            "add an ALLOW AuthorizationPolicy with rules for the callers each workload \
             should accept"
                .to_string(),
        ));
    }
}
