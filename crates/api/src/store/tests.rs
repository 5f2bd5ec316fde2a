use super::*;

fn service(name: &str, port: u16, file: &str) -> Resource {
    let text = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: prod\nspec:\n  ports:\n  - name: http\n    port: {port}\n"
    );
    let loaded = crate::load_str(file, &text);
    assert_eq!(loaded.resources.len(), 1, "{:?}", loaded.diagnostics);
    loaded.resources.iter().next().unwrap().clone()
}

fn set(resources: &[&Resource]) -> ResourceSet {
    ResourceSet::new(resources.iter().map(|r| (*r).clone()).collect())
}

fn names(events: &[ResourceEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            ResourceEvent::Applied(r) => format!("apply {}", r.name()),
            ResourceEvent::Deleted(k) => format!("delete {}", k.name),
        })
        .collect()
}

#[test]
fn the_diff_of_a_set_is_what_turns_the_store_into_it() {
    let (a, b, c) = (
        service("a", 80, "a.yaml"),
        service("b", 80, "b.yaml"),
        service("c", 80, "c.yaml"),
    );
    let mut store = ResourceStore::new();
    let events = store.diff(&set(&[&a, &b]));
    assert_eq!(names(&events), ["apply a", "apply b"]);
    assert_eq!(store.apply(events), 2);
    assert_eq!(store.generation(), 1);

    // Unchanged: no events, and applying none changes nothing.
    let none = store.diff(&set(&[&b, &a]));
    assert!(none.is_empty(), "{none:?}");
    assert_eq!(store.apply(none), 0);
    assert_eq!(store.generation(), 1);

    // a changed, b gone, c new.
    let a2 = service("a", 81, "a.yaml");
    let next = set(&[&a2, &c]);
    let events = store.diff(&next);
    assert_eq!(names(&events), ["apply a", "delete b", "apply c"]);
    store.apply(events);
    assert_eq!(store.resources(), next);
    assert_eq!(store.generation(), 2);
}

#[test]
fn events_apply_one_by_one_as_a_watch_sends_them() {
    let mut store = ResourceStore::new();
    let a = service("a", 80, "a.yaml");
    assert_eq!(
        store.apply([ResourceEvent::Applied(Box::new(a.clone()))]),
        1
    );
    // The same object again (a resync) changes nothing.
    assert_eq!(
        store.apply([ResourceEvent::Applied(Box::new(a.clone()))]),
        0
    );
    assert_eq!(
        store.apply([ResourceEvent::Deleted(ResourceKey::of(&a))]),
        1
    );
    assert_eq!(
        store.apply([ResourceEvent::Deleted(ResourceKey::of(&a))]),
        0
    );
    assert!(store.is_empty());
}
