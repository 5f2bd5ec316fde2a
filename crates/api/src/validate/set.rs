//! Checks across resources.

use std::collections::HashMap;

use crate::diagnostic::{Diagnostic, Severity};
use crate::resource::{Kind, ResourceSet};

/// The same kind, namespace and name twice: both are rejected (which one was meant is
/// not knowable).
pub(super) fn validate(set: ResourceSet) -> (ResourceSet, Vec<Diagnostic>) {
    let mut count: HashMap<(Kind, &str, &str), usize> = HashMap::new();
    for r in &set {
        *count
            .entry((r.kind(), r.namespace(), r.name()))
            .or_default() += 1;
    }
    let duplicated: Vec<(Kind, String, String)> = count
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((k, ns, n), _)| (k, ns.to_owned(), n.to_owned()))
        .collect();
    if duplicated.is_empty() {
        return (set, Vec::new());
    }
    let mut diagnostics = Vec::new();
    let mut kept = Vec::new();
    let resources = set.into_vec();
    for r in &resources {
        let key = (r.kind(), r.namespace().to_owned(), r.name().to_owned());
        if !duplicated.contains(&key) {
            continue;
        }
        let others: Vec<String> = resources
            .iter()
            .filter(|o| {
                (o.kind(), o.namespace(), o.name()) == (key.0, key.1.as_str(), key.2.as_str())
                    && o.origin != r.origin
            })
            .map(|o| o.origin.to_string())
            .collect();
        diagnostics.push(Diagnostic::for_field(
            Severity::Error,
            r,
            "metadata.name",
            format!(
                "{} is defined more than once (also at {}); rename one of them",
                r.display_name(),
                others.join(", ")
            ),
        ));
    }
    for r in resources {
        let key = (r.kind(), r.namespace().to_owned(), r.name().to_owned());
        if !duplicated.contains(&key) {
            kept.push(r);
        }
    }
    (ResourceSet::new(kept), diagnostics)
}
