//! Checks across resources.

use crate::diagnostic::{Diagnostic, Severity};
use crate::resource::{Resource, ResourceSet};

/// The same kind, namespace and name defined twice: as `kubectl apply` does with the
/// files in order, the later definition replaces the earlier one. The earlier one gets a
/// warning saying where it was replaced.
pub(super) fn validate(set: ResourceSet) -> (ResourceSet, Vec<Diagnostic>) {
    // The set is sorted by kind, namespace, name, then file and document: duplicates
    // are neighbours, the later definition last.
    let resources = set.into_vec();
    let mut kept: Vec<Resource> = Vec::with_capacity(resources.len());
    let mut diagnostics = Vec::new();
    for r in resources {
        if let Some(prev) = kept.last()
            && (prev.kind(), prev.namespace(), prev.name()) == (r.kind(), r.namespace(), r.name())
        {
            diagnostics.push(Diagnostic::for_field(
                Severity::Warning,
                prev,
                "metadata.name",
                format!(
                    "{} is defined again at {}; the later definition replaces this one (as kubectl apply would)",
                    prev.display_name(),
                    r.origin
                ),
            ));
            kept.pop();
        }
        kept.push(r);
    }
    (ResourceSet::new(kept), diagnostics)
}
