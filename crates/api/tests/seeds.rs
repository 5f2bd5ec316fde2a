//! The YAML examples of the pages skiff started from all load without errors.

use std::path::PathBuf;

use skiff_api::{Kind, Severity};

fn seeds() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seeds")
}

#[test]
fn every_seed_example_loads_without_errors() {
    let loaded = skiff_api::load(&[seeds()]).unwrap();
    let errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert_eq!(loaded.files.len(), 25);
    let count = |k: Kind| loaded.resources.of_kind(k).len();
    assert_eq!(count(Kind::VirtualService), 8);
    assert_eq!(count(Kind::DestinationRule), 4);
    assert_eq!(count(Kind::Gateway), 2);
    assert_eq!(count(Kind::PeerAuthentication), 6);
    assert_eq!(count(Kind::AuthorizationPolicy), 3);
    assert_eq!(count(Kind::RequestAuthentication), 1);
    assert_eq!(count(Kind::Telemetry), 1);
    assert_eq!(count(Kind::Service), 5);
    assert_eq!(count(Kind::Deployment), 3);
    assert_eq!(count(Kind::Pod), 1);
}

#[test]
fn telemetry_access_logging_format_is_a_loud_warning_with_the_fix() {
    let file = seeds().join("002-service-mesh-istio/telemetry.yaml");
    let loaded = skiff_api::load(&[&file]).unwrap();
    assert!(!loaded.diagnostics.has_errors());
    let format: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.path.as_deref() == Some("spec.accessLogging[0].format"))
        .collect();
    assert_eq!(format.len(), 1, "{:?}", loaded.diagnostics);
    let d = format[0];
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(d.position.map(|p| (p.line, p.column)), Some((15, 5)));
    assert!(d.message.contains("not a field of Telemetry accessLogging"));
    assert!(d.message.contains("Istio rejects it"));
    assert!(d.message.contains("MeshConfig"));
    // The rest of the resource is kept and typed.
    let t = loaded.resources.telemetries().next().unwrap();
    assert_eq!(t.access_logging[0].providers[0].name, "otel");
    assert_eq!(t.tracing[0].random_sampling_percentage, Some(10.0));
}

#[test]
fn a_misspelt_format_is_still_an_error() {
    let loaded = skiff_api::load_str(
        "t.yaml",
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t}\nspec:\n  accessLogging:\n  - providers: [{name: envoy}]\n    formatt: {}\n",
    );
    assert!(loaded.diagnostics.has_errors());
}

#[test]
fn the_deny_all_policy_loads_clean_now_that_it_is_enforced() {
    let file = seeds().join("002-service-mesh-istio/authorization-policy.yaml");
    let loaded = skiff_api::load(&[&file]).unwrap();
    let deny_all: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.resource.as_deref() == Some("AuthorizationPolicy production/deny-all"))
        .collect();
    // `spec: {}` denies every request to the namespace's workloads, as in Istio; the
    // proxies enforce it, so there is nothing to warn about.
    assert!(deny_all.is_empty(), "{deny_all:?}");
    assert!(
        loaded
            .resources
            .get(Kind::AuthorizationPolicy, "production", "deny-all")
            .is_some()
    );
}

#[test]
fn the_later_definition_of_a_resource_wins() {
    let dir = seeds().join("004-handbook");
    let loaded = skiff_api::load(&[&dir]).unwrap();
    let vs = loaded
        .resources
        .get(Kind::VirtualService, "prod", "frontend")
        .unwrap();
    assert!(vs.origin.file.ends_with("frontend-vs-canary.yaml"));
    assert!(
        loaded
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Warning
                && d.message.contains("the later definition replaces this one"))
    );
}
