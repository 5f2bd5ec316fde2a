//! Istio's selector analyzers for Sidecars (`sidecar.SelectorAnalyzer`: IST0101,
//! IST0110, IST0111) and Telemetries (`telemetry.SelectorAnalyzer`: IST0101, IST0159;
//! `telemetry.DefaultSelectorAnalyzer`: IST0160). A workload should be selected by at
//! most one of each, and a namespace have at most one without selector.

use std::collections::BTreeMap;

use skiff_api::{Resource, ResourceSet};

use super::{CodeInfo, Message, codes};
use crate::Mesh;
use crate::diagnostic::resource_ref;
use crate::registry::{Labels, display_labels, labels_match};

struct Kind {
    selector_analyzer: &'static str,
    default_analyzer: &'static str,
    conflicting: &'static CodeInfo,
    multiple_defaults: &'static CodeInfo,
}

pub(super) fn run(mesh: &Mesh, resources: &ResourceSet, out: &mut Vec<Message>) {
    let sidecars: Vec<(&Resource, Option<Labels>)> = resources
        .sidecars()
        .map(|s| {
            let labels = s.workload_selector.as_ref().map(|w| w.labels.clone());
            (s.resource, labels.filter(|l| !l.is_empty()))
        })
        .collect();
    check(
        mesh,
        &sidecars,
        &Kind {
            selector_analyzer: "sidecar.SelectorAnalyzer",
            default_analyzer: "sidecar.SelectorAnalyzer",
            conflicting: &codes::CONFLICTING_SIDECAR_WORKLOAD_SELECTORS,
            multiple_defaults: &codes::MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS,
        },
        out,
    );
    let telemetries: Vec<(&Resource, Option<Labels>)> = resources
        .telemetries()
        .filter(|t| t.target_ref.is_none() && t.target_refs.is_empty())
        .map(|t| {
            let labels = t.selector.as_ref().map(|s| s.match_labels.clone());
            (t.resource, labels.filter(|l| !l.is_empty()))
        })
        .collect();
    check(
        mesh,
        &telemetries,
        &Kind {
            selector_analyzer: "telemetry.SelectorAnalyzer",
            default_analyzer: "telemetry.DefaultSelectorAnalyzer",
            conflicting: &codes::CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS,
            multiple_defaults: &codes::MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS,
        },
        out,
    );
}

fn message(
    info: &CodeInfo,
    r: &Resource,
    args: &[String],
    fix: String,
    analyzer: &'static str,
) -> Message {
    let mut m = Message::new(
        info,
        Some(resource_ref(r)),
        codes::fill(info.template.unwrap_or_default(), args),
    );
    m.fix = Some(fix);
    m.analyzer = Some(analyzer);
    m
}

fn check(
    mesh: &Mesh,
    policies: &[(&Resource, Option<Labels>)],
    kind: &Kind,
    out: &mut Vec<Message>,
) {
    let workloads = mesh.registry().workloads();
    // Workload → the policies with a selector that select it.
    let mut selected: BTreeMap<usize, Vec<&Resource>> = BTreeMap::new();
    let mut defaults: BTreeMap<&str, Vec<&Resource>> = BTreeMap::new();
    for (r, selector) in policies {
        let Some(selector) = selector else {
            defaults.entry(r.namespace()).or_default().push(r);
            continue;
        };
        let mut found = false;
        for (i, w) in workloads.iter().enumerate() {
            if w.namespace == r.namespace() && labels_match(selector, &w.labels) {
                found = true;
                selected.entry(i).or_default().push(r);
            }
        }
        if !found {
            out.push(message(
                &codes::REFERENCED_RESOURCE_NOT_FOUND,
                r,
                &["selector".into(), display_labels(selector)],
                format!(
                    "no workload in namespace {} has labels {}: this {} applies to nothing",
                    r.namespace(),
                    display_labels(selector),
                    r.kind()
                ),
                kind.selector_analyzer,
            ));
        }
    }
    let names = |list: &[&Resource]| {
        let mut n: Vec<&str> = list.iter().map(|r| r.name()).collect();
        n.sort_unstable();
        format!("[{}]", n.join(" "))
    };
    let mut reported = std::collections::BTreeSet::new();
    for (w, list) in &selected {
        if list.len() < 2 {
            continue;
        }
        let w = &workloads[*w];
        for r in list {
            if !reported.insert((r.namespace(), r.name())) {
                continue;
            }
            out.push(message(
                kind.conflicting,
                r,
                &[names(list), w.namespace.clone(), w.name.clone()],
                format!(
                    "only one {} applies to workload {}: make their selectors select \
                     different workloads, or merge them",
                    r.kind(),
                    w.id()
                ),
                kind.selector_analyzer,
            ));
        }
    }
    for (ns, list) in &defaults {
        if list.len() < 2 {
            continue;
        }
        for r in list {
            out.push(message(
                kind.multiple_defaults,
                r,
                &[names(list), ns.to_string()],
                format!(
                    "only one {} without selector applies in namespace {ns}: merge them into one",
                    r.kind()
                ),
                kind.default_analyzer,
            ));
        }
    }
}
