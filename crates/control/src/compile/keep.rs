//! Keeping the last good version of a resource whose new version has errors.
//!
//! In a cluster, Istio's validating admission webhook refuses an invalid object: the
//! object keeps its previous version, and every other object is applied as usual. A
//! directory has no webhook, so skiff does the same on every reload: a resource whose
//! new version has errors is left out and its last good version (from the previous
//! reload) keeps serving, while every other change applies. When a document cannot be
//! read far enough to say which resource it is (a YAML syntax error, a missing
//! `kind`), every resource its file held before that is not defined anywhere now
//! keeps its last good version.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use skiff_api::{Kind, Loaded, Resource, ResourceSet};

/// What the warning about a resource kept at its last good version says after the
/// resource's name (tools that list such resources look for it).
pub const KEPT_NOTE: &str =
    "its new version has errors and is left out; its last good version keeps serving";

/// The resources in service after the previous reload, and the rule above.
#[derive(Debug, Default)]
pub struct LastGood {
    serving: Mutex<Vec<Resource>>,
}

/// What a reload serves: the valid resources of the new load, plus the last good
/// version of each resource whose new version was refused.
#[derive(Debug, Clone, Default)]
pub struct Merged {
    /// The resources to serve.
    pub resources: ResourceSet,
    /// The resources serving their last good version (that version, with where it
    /// was written).
    pub kept: Vec<Resource>,
}

impl LastGood {
    /// An empty history: the first reload serves only what is valid in it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges a new load with the last good versions, remembers the result for the
    /// next reload and returns it.
    pub fn merge(&self, loaded: &Loaded) -> Merged {
        let mut serving = self.serving.lock().unwrap_or_else(|e| e.into_inner());
        let merged = Self::merge_over(loaded, serving.iter());
        *serving = merged.resources.iter().cloned().collect();
        merged
    }

    /// [`LastGood::merge`] over the resources `serving` now, kept by the caller (a
    /// store of the resources in force): nothing is remembered here.
    pub fn merge_over<'a>(
        loaded: &Loaded,
        serving: impl IntoIterator<Item = &'a Resource>,
    ) -> Merged {
        let mut refused: BTreeSet<&str> = BTreeSet::new();
        let mut unreadable: BTreeSet<&Path> = BTreeSet::new();
        for d in loaded.diagnostics.iter().filter(|d| d.is_error()) {
            match &d.resource {
                Some(name) => {
                    refused.insert(name);
                }
                None => {
                    unreadable.insert(&d.file);
                }
            }
        }
        let present: BTreeSet<(Kind, &str, &str)> = loaded
            .resources
            .iter()
            .map(|r| (r.kind(), r.namespace(), r.name()))
            .collect();
        let mut resources: Vec<Resource> = loaded.resources.iter().cloned().collect();
        let mut kept = Vec::new();
        if !refused.is_empty() || !unreadable.is_empty() {
            for old in serving {
                if present.contains(&(old.kind(), old.namespace(), old.name())) {
                    continue;
                }
                let name = old.display_name();
                if refused.contains(name.as_str()) || unreadable.contains(&*old.origin.file) {
                    kept.push(old.clone());
                    resources.push(old.clone());
                }
            }
        }
        Merged {
            resources: ResourceSet::new(resources),
            kept,
        }
    }
}

#[cfg(test)]
mod tests;
