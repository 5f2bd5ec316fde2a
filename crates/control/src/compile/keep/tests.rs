use skiff_api::{Kind, load_str};

use super::LastGood;

const GOOD: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: prod
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: prod
spec:
  host: reviews
";

const BROKEN_VS: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: prod
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
        subset: v2
      weihgt: 10
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: prod
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: RANDOM
";

fn subset(set: &skiff_api::ResourceSet) -> Option<String> {
    set.virtual_services().next().and_then(|vs| {
        vs.spec
            .http
            .first()?
            .route
            .first()?
            .destination
            .subset
            .clone()
    })
}

#[test]
fn a_refused_resource_keeps_its_last_good_version_and_the_rest_applies() {
    let keep = LastGood::new();
    let first = keep.merge(&load_str("a.yaml", GOOD));
    assert!(first.kept.is_empty());
    assert_eq!(subset(&first.resources).as_deref(), Some("v1"));

    let loaded = load_str("a.yaml", BROKEN_VS);
    assert!(loaded.diagnostics.has_errors());
    let merged = keep.merge(&loaded);
    // The VirtualService keeps v1; the DestinationRule's change applies.
    assert_eq!(subset(&merged.resources).as_deref(), Some("v1"));
    let dr = merged.resources.destination_rules().next().unwrap();
    assert!(dr.spec.traffic_policy.is_some(), "the valid change applied");
    assert_eq!(merged.kept.len(), 1, "{:?}", merged.kept);
    assert_eq!(merged.kept[0].display_name(), "VirtualService prod/reviews");
    assert_eq!(merged.kept[0].origin.to_string(), "a.yaml:1:1");

    // Still broken on the next reload: still the last good version.
    let again = keep.merge(&load_str("a.yaml", BROKEN_VS));
    assert_eq!(subset(&again.resources).as_deref(), Some("v1"));
}

#[test]
fn a_new_resource_with_errors_is_left_out() {
    let keep = LastGood::new();
    let merged = keep.merge(&load_str("a.yaml", BROKEN_VS));
    assert_eq!(merged.resources.of_kind(Kind::VirtualService).len(), 0);
    assert_eq!(merged.resources.of_kind(Kind::DestinationRule).len(), 1);
    assert!(merged.kept.is_empty());
}

#[test]
fn an_unreadable_file_keeps_what_it_held_and_a_removed_resource_goes() {
    let keep = LastGood::new();
    keep.merge(&load_str("a.yaml", GOOD));
    let merged = keep.merge(&load_str("a.yaml", "apiVersion: [\n"));
    assert_eq!(merged.resources.len(), 2, "{:?}", merged.kept);
    assert_eq!(merged.kept.len(), 2);

    // Fixed, with the DestinationRule removed: it goes.
    let fixed = GOOD.split("---").next().unwrap();
    let merged = keep.merge(&load_str("a.yaml", fixed));
    assert_eq!(merged.resources.len(), 1);
    assert!(merged.kept.is_empty());
}
