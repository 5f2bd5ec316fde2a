//! Label selection over workloads, indexed so that selecting does not scan the mesh.

use std::collections::{BTreeMap, HashMap};

/// Labels, in stable order.
pub type Labels = BTreeMap<String, String>;

/// An index of workloads by namespace and by `(namespace, label, value)`.
#[derive(Debug, Clone, Default)]
pub(crate) struct LabelIndex {
    by_namespace: HashMap<String, Vec<usize>>,
    by_label: HashMap<(String, String, String), Vec<usize>>,
    all: Vec<usize>,
}

impl LabelIndex {
    /// Adds workload `id` of `namespace` with `labels`. Ids must be added in increasing
    /// order, so every list stays sorted.
    pub(crate) fn insert(&mut self, id: usize, namespace: &str, labels: &Labels) {
        self.all.push(id);
        self.by_namespace
            .entry(namespace.to_string())
            .or_default()
            .push(id);
        for (key, value) in labels {
            self.by_label
                .entry((namespace.to_string(), key.clone(), value.clone()))
                .or_default()
                .push(id);
        }
    }

    /// Workloads of `namespace` that carry every label of `selector`; every workload of
    /// the namespace when the selector is empty. Sorted by id.
    pub(crate) fn select<'l>(
        &self,
        namespace: &str,
        selector: &Labels,
        labels_of: impl Fn(usize) -> &'l Labels,
    ) -> Vec<usize> {
        self.select_from(Some(namespace), selector, labels_of)
    }

    /// Like [`LabelIndex::select`], across all namespaces.
    pub(crate) fn select_everywhere<'l>(
        &self,
        selector: &Labels,
        labels_of: impl Fn(usize) -> &'l Labels,
    ) -> Vec<usize> {
        self.select_from(None, selector, labels_of)
    }

    fn select_from<'l>(
        &self,
        namespace: Option<&str>,
        selector: &Labels,
        labels_of: impl Fn(usize) -> &'l Labels,
    ) -> Vec<usize> {
        let Some((key, value)) = selector.iter().next() else {
            return match namespace {
                Some(ns) => self.by_namespace.get(ns).cloned().unwrap_or_default(),
                None => self.all.clone(),
            };
        };
        let candidates: Vec<usize> = match namespace {
            Some(ns) => self
                .by_label
                .get(&(ns.to_string(), key.clone(), value.clone()))
                .cloned()
                .unwrap_or_default(),
            None => {
                // Across namespaces: gather the first label's lists of every namespace.
                let mut ids: Vec<usize> = self
                    .by_namespace
                    .keys()
                    .filter_map(|ns| self.by_label.get(&(ns.clone(), key.clone(), value.clone())))
                    .flatten()
                    .copied()
                    .collect();
                ids.sort_unstable();
                ids
            }
        };
        candidates
            .into_iter()
            .filter(|&id| matches(selector, labels_of(id)))
            .collect()
    }
}

/// True when `labels` carry every label of `selector` (an empty selector matches all).
pub fn matches(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// `k=v,k2=v2`, for messages.
pub fn display(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
