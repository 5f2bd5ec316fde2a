use super::*;
use proptest::prelude::*;

const SUFFIX: &str = "cluster.local";

#[test]
fn short_names_resolve_in_the_resource_namespace() {
    assert_eq!(
        resolve("backend", "prod", SUFFIX),
        "backend.prod.svc.cluster.local"
    );
    assert_eq!(
        resolve("Backend", "prod", SUFFIX),
        "backend.prod.svc.cluster.local"
    );
}

#[test]
fn names_with_dots_wildcards_and_addresses_stay_as_written() {
    assert_eq!(resolve("backend.prod", "dev", SUFFIX), "backend.prod");
    assert_eq!(resolve("api.example.com", "dev", SUFFIX), "api.example.com");
    assert_eq!(resolve("*", "dev", SUFFIX), "*");
    assert_eq!(resolve("*.example.com", "dev", SUFFIX), "*.example.com");
    assert_eq!(resolve("10.0.0.1", "dev", SUFFIX), "10.0.0.1");
    assert_eq!(resolve("::1", "dev", SUFFIX), "::1");
    assert_eq!(
        resolve("backend.prod.svc.cluster.local.", "dev", SUFFIX),
        "backend.prod.svc.cluster.local"
    );
}

#[test]
fn kubernetes_forms_expand_to_the_service_fqdn() {
    let fqdn = Some("backend.prod.svc.cluster.local".to_string());
    assert_eq!(kubernetes_expansion("backend.prod", SUFFIX), fqdn);
    assert_eq!(kubernetes_expansion("backend.prod.svc", SUFFIX), fqdn);
    assert_eq!(kubernetes_expansion("backend", SUFFIX), None);
    assert_eq!(kubernetes_expansion("a.b.example", SUFFIX), None);
    assert_eq!(kubernetes_expansion("*.prod", SUFFIX), None);
    assert_eq!(kubernetes_expansion("bad_name.prod", SUFFIX), None);
}

#[test]
fn kubernetes_fqdns_split_into_name_and_namespace() {
    assert_eq!(
        split_kubernetes_fqdn("backend.prod.svc.cluster.local", SUFFIX),
        Some(("backend", "prod"))
    );
    assert_eq!(split_kubernetes_fqdn("api.example.com", SUFFIX), None);
    assert_eq!(
        split_kubernetes_fqdn("a.b.c.svc.cluster.local", SUFFIX),
        None
    );
    assert_eq!(split_kubernetes_fqdn("svc.cluster.local", SUFFIX), None);
    assert_eq!(
        display_name("backend.prod.svc.cluster.local", SUFFIX),
        "backend.prod"
    );
    assert_eq!(display_name("api.example.com", SUFFIX), "api.example.com");
}

#[test]
fn wildcards_cover_names_at_any_depth() {
    assert!(covers("*", "anything.example.com"));
    assert!(covers("*", "*"));
    assert!(covers("*", "*.example.com"));
    assert!(covers("*.example.com", "a.example.com"));
    assert!(covers("*.example.com", "a.b.example.com"));
    assert!(covers("*.example.com", "*.b.example.com"));
    assert!(covers("*.example.com", "*.example.com"));
    assert!(covers("*.Example.com", "A.example.COM"));
    assert!(!covers("*.example.com", "example.com"));
    assert!(!covers("*.example.com", "aexample.com"));
    assert!(!covers("*.example.com", "*"));
    assert!(!covers("*.b.example.com", "*.example.com"));
    assert!(covers("a.example.com", "a.example.com"));
    assert!(!covers("a.example.com", "*.example.com"));
    assert!(!covers("a.example.com", "b.example.com"));
}

#[test]
fn intersection_is_the_narrower_pattern() {
    assert_eq!(
        intersect("*", "api.example.com").as_deref(),
        Some("api.example.com")
    );
    assert_eq!(
        intersect("api.example.com", "*").as_deref(),
        Some("api.example.com")
    );
    assert_eq!(
        intersect("*.example.com", "*.api.example.com").as_deref(),
        Some("*.api.example.com")
    );
    assert_eq!(intersect("*.example.com", "*.example.org"), None);
    assert_eq!(intersect("a.example.com", "b.example.com"), None);
}

#[test]
fn domains_of_a_kubernetes_service_from_its_own_namespace() {
    let domains = service_domains("backend.prod.svc.cluster.local", 80, "prod", SUFFIX, &[]);
    assert_eq!(
        domains,
        [
            "backend.prod.svc.cluster.local",
            "backend.prod.svc.cluster.local:80",
            "backend.prod.svc",
            "backend.prod.svc:80",
            "backend.prod",
            "backend.prod:80",
            "backend",
            "backend:80",
        ]
    );
}

#[test]
fn domains_from_another_namespace_have_no_bare_name() {
    let domains = service_domains("backend.prod.svc.cluster.local", 8080, "dev", SUFFIX, &[]);
    assert!(
        !domains
            .iter()
            .any(|d| d == "backend" || d == "backend:8080")
    );
    assert!(domains.iter().any(|d| d == "backend.prod:8080"));
}

#[test]
fn domains_of_external_hosts_and_addresses() {
    let addresses = ["10.0.0.7".parse().unwrap(), "fd00::7".parse().unwrap()];
    let domains = service_domains("API.example.com", 443, "dev", SUFFIX, &addresses);
    assert_eq!(
        domains,
        [
            "api.example.com",
            "api.example.com:443",
            "10.0.0.7",
            "10.0.0.7:443",
            "fd00::7",
            "[fd00::7]",
            "[fd00::7]:443",
        ]
    );
    let wildcard = service_domains("*.example.com", 80, "dev", SUFFIX, &[]);
    assert_eq!(wildcard, ["*.example.com", "*.example.com:80"]);
}

#[test]
fn dns_labels() {
    assert!(is_dns_label("backend-v1"));
    assert!(!is_dns_label("-x"));
    assert!(!is_dns_label("x-"));
    assert!(!is_dns_label("Backend"));
    assert!(!is_dns_label(""));
    assert!(!is_dns_label(&"a".repeat(64)));
}

/// Kubernetes DNS as a pod in `pod_namespace` sees it (search path
/// `<ns>.svc.<suffix> svc.<suffix> <suffix>`, `ndots:5`): does `reference` reach the one
/// service `fqdn` of the mesh?
fn dns_reaches(reference: &str, pod_namespace: &str, fqdn: &str) -> bool {
    [
        format!("{reference}.{pod_namespace}.svc.{SUFFIX}"),
        format!("{reference}.svc.{SUFFIX}"),
        format!("{reference}.{SUFFIX}"),
        reference.to_string(),
    ]
    .iter()
    .any(|candidate| candidate == fqdn)
}

/// A config `host` as skiff reads it: Istio's resolution, then the Kubernetes forms.
fn config_reaches(host: &str, namespace: &str, fqdn: &str) -> bool {
    resolve(host, namespace, SUFFIX) == fqdn
        || kubernetes_expansion(host, SUFFIX).as_deref() == Some(fqdn)
}

fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("svc".to_string()),
        Just("prod".to_string()),
        Just("backend".to_string()),
        "[a-z][a-z0-9-]{0,6}[a-z0-9]",
    ]
}

/// A name an app or a config author might write, often close to a real service name.
fn reference(name: String, namespace: String) -> impl Strategy<Value = String> {
    let fqdn = format!("{name}.{namespace}.svc.{SUFFIX}");
    prop_oneof![
        Just(name.clone()),
        Just(format!("{name}.{namespace}")),
        Just(format!("{name}.{namespace}.svc")),
        Just(format!("{name}.{namespace}.svc.cluster")),
        Just(fqdn),
        Just(format!("{namespace}.{name}")),
        label(),
        (label(), label()).prop_map(|(a, b)| format!("{a}.{b}")),
        (label(), label()).prop_map(|(a, b)| format!("{a}.{b}.svc")),
        (label(), label()).prop_map(|(a, b)| format!("{a}.{b}.svc.{SUFFIX}")),
    ]
}

proptest! {
    /// The domain list of a service holds exactly the names (with or without the service
    /// port) through which Kubernetes DNS reaches it from the app's namespace.
    #[test]
    fn domain_list_agrees_with_kubernetes_dns(
        (name, namespace, reference, pod_namespace, port, other_port, with_port) in
            (label(), label(), label(), 1u16.., 1u16.., any::<bool>())
            .prop_flat_map(|(name, namespace, pod_namespace, port, other_port, with_port)| {
                let refs = reference(name.clone(), namespace.clone());
                (Just(name), Just(namespace), refs, Just(pod_namespace), Just(port),
                 Just(other_port), Just(with_port))
            })
    ) {
        let fqdn = format!("{name}.{namespace}.svc.{SUFFIX}");
        let domains = service_domains(&fqdn, port, &pod_namespace, SUFFIX, &[]);
        let reaches = dns_reaches(&reference, &pod_namespace, &fqdn);
        if with_port {
            let written = format!("{reference}:{other_port}");
            let listed = domains.contains(&written);
            prop_assert_eq!(listed, reaches && other_port == port, "{} in {:?}", written, domains);
        } else {
            prop_assert_eq!(domains.contains(&reference), reaches, "{} in {:?}", reference, domains);
        }
    }

    /// A `host` written in a config resource of namespace `ns` names a service exactly when
    /// an app in `ns` could reach that service by the same name.
    #[test]
    fn config_hosts_resolve_like_the_domain_list(
        (name, namespace, reference, resource_namespace) in
            (label(), label(), label())
            .prop_flat_map(|(name, namespace, resource_namespace)| {
                let refs = reference(name.clone(), namespace.clone());
                (Just(name), Just(namespace), refs, Just(resource_namespace))
            })
    ) {
        let fqdn = format!("{name}.{namespace}.svc.{SUFFIX}");
        let domains = service_domains(&fqdn, 80, &resource_namespace, SUFFIX, &[]);
        prop_assert_eq!(
            config_reaches(&reference, &resource_namespace, &fqdn),
            domains.contains(&reference),
            "{} from {}", reference, resource_namespace
        );
    }

    /// `covers` is a partial order on patterns and `intersect` is its meet.
    #[test]
    fn covers_and_intersect_agree(
        a in prop_oneof![Just("*".to_string()), label().prop_map(|l| format!("*.{l}.com")),
                         (label(), label()).prop_map(|(x, y)| format!("{x}.{y}.com")),
                         (label(), label()).prop_map(|(x, y)| format!("*.{x}.{y}.com"))],
        b in prop_oneof![Just("*".to_string()), label().prop_map(|l| format!("*.{l}.com")),
                         (label(), label()).prop_map(|(x, y)| format!("{x}.{y}.com")),
                         (label(), label()).prop_map(|(x, y)| format!("*.{x}.{y}.com"))],
    ) {
        prop_assert!(covers(&a, &a));
        if covers(&a, &b) && covers(&b, &a) {
            prop_assert_eq!(&a, &b);
        }
        match intersect(&a, &b) {
            Some(meet) => {
                prop_assert!(covers(&a, &meet) && covers(&b, &meet));
                prop_assert!(meet == a || meet == b);
            }
            None => prop_assert!(!covers(&a, &b) && !covers(&b, &a)),
        }
    }
}
