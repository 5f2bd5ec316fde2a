//! Configuration as a stream of resource events, and the store that applies them.
//!
//! A configuration source reports what changed as events: a resource applied (added
//! or updated) or deleted. The shape is that of a Kubernetes watch (kube-rs's
//! `watcher::Event`: `Apply`, `Delete`, and a relist that is a batch of applies
//! followed by the deletion of what it did not mention); the directory source makes
//! the same events by comparing what it read with the store ([`ResourceStore::diff`]).
//! The store holds the resources in force; a batch with no events changes nothing,
//! so re-reading an unchanged directory compiles and pushes nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::resource::{Kind, Resource, ResourceSet};

/// Names a resource in a store: kind, namespace, name, and where it was declared (a
/// directory may declare one name twice, which is reported; an API server never
/// holds two). Ordered as a [`ResourceSet`] orders its resources.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey {
    /// The kind.
    pub kind: Kind,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// The file (or, for an API server, the object's origin name).
    pub file: Arc<Path>,
    /// The document in the file.
    pub document: usize,
}

impl ResourceKey {
    /// The key of `resource`.
    pub fn of(resource: &Resource) -> Self {
        ResourceKey {
            kind: resource.kind(),
            namespace: resource.namespace().to_owned(),
            name: resource.name().to_owned(),
            file: resource.origin.file.clone(),
            document: resource.origin.document,
        }
    }
}

/// One change a configuration source reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceEvent {
    /// The resource was added, or replaced the one with its key.
    Applied(Box<Resource>),
    /// The resource with this key is gone.
    Deleted(ResourceKey),
}

impl ResourceEvent {
    /// The kind of the resource it is about.
    pub fn kind(&self) -> Kind {
        match self {
            ResourceEvent::Applied(r) => r.kind(),
            ResourceEvent::Deleted(key) => key.kind,
        }
    }
}

/// The resources in force, as events left them.
#[derive(Debug, Default, Clone)]
pub struct ResourceStore {
    resources: BTreeMap<ResourceKey, Resource>,
    /// Batches applied that changed something.
    generation: u64,
}

impl ResourceStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a batch of events, returning how many changed the store (an apply of
    /// a resource equal to the one held, or a delete of a key not held, changes
    /// nothing).
    pub fn apply(&mut self, events: impl IntoIterator<Item = ResourceEvent>) -> usize {
        let mut changed = 0;
        for event in events {
            match event {
                ResourceEvent::Applied(resource) => {
                    let key = ResourceKey::of(&resource);
                    if self.resources.get(&key) != Some(&*resource) {
                        self.resources.insert(key, *resource);
                        changed += 1;
                    }
                }
                ResourceEvent::Deleted(key) => {
                    if self.resources.remove(&key).is_some() {
                        changed += 1;
                    }
                }
            }
        }
        if changed > 0 {
            self.generation += 1;
        }
        changed
    }

    /// The events that turn this store into `next` (for a source that reads its whole
    /// set each time, such as a directory): applies of what is new or different,
    /// deletes of what `next` lacks, in key order.
    pub fn diff(&self, next: &ResourceSet) -> Vec<ResourceEvent> {
        let mut events = Vec::new();
        let mut held = self.resources.iter().peekable();
        let mut wanted: Vec<(ResourceKey, &Resource)> =
            next.iter().map(|r| (ResourceKey::of(r), r)).collect();
        wanted.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, resource) in wanted {
            while let Some((old, _)) = held.next_if(|(old, _)| **old < key) {
                events.push(ResourceEvent::Deleted(old.clone()));
            }
            match held.next_if(|(old, _)| **old == key) {
                Some((_, old)) if old == resource => {}
                _ => events.push(ResourceEvent::Applied(Box::new(resource.clone()))),
            }
        }
        events.extend(held.map(|(old, _)| ResourceEvent::Deleted(old.clone())));
        events
    }

    /// The resources in force.
    pub fn resources(&self) -> ResourceSet {
        ResourceSet::new(self.resources.values().cloned().collect())
    }

    /// The resources in force, in [`ResourceSet`] order.
    pub fn iter(&self) -> impl Iterator<Item = &Resource> + '_ {
        self.resources.values()
    }

    /// How many resources it holds.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// How many batches changed it so far (0: never filled).
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

#[cfg(test)]
mod tests;
