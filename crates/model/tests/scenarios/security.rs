//! The identity and security contract: endpoint identities and auto mutual TLS,
//! DestinationRule TLS, inbound modes, and compiled authorization and JWT rules.

use std::path::PathBuf;
use std::time::Duration;

use skiff_model::config::{
    AuthzAction, AuthzCondition, AuthzPolicy, ClusterTls, Endpoint, IstioMutual, JwtHeader,
    MtlsMode, ProxyConfig, TlsOrigination,
};

use super::*;

/// `(workload, spiffe id, sidecar, mtls)` of a cluster's endpoints.
fn identities(config: &ProxyConfig, name: &str) -> Vec<(String, String, bool, bool)> {
    cluster(config, name)
        .endpoints
        .iter()
        .map(|e: &Endpoint| (e.workload.clone(), e.spiffe_id.clone(), e.sidecar, e.mtls))
        .collect()
}

fn row(w: &str, id: &str, sidecar: bool, mtls: bool) -> (String, String, bool, bool) {
    (w.to_string(), id.to_string(), sidecar, mtls)
}

#[test]
fn auto_mtls_goes_to_sidecars_whose_port_is_not_disabled() {
    let mesh = mesh("security");
    let config = compile(&mesh, "frontend.shop");
    let name = "outbound|80||backend.shop.svc.cluster.local";
    assert_eq!(cluster(&config, name).tls, ClusterTls::Auto);
    let sa = "spiffe://cluster.local/ns/shop/sa/backend";
    assert_eq!(
        identities(&config, name),
        [
            row("backend-v1.shop", sa, true, true),
            // security.istio.io/tlsMode: disabled
            row("backend-v2.shop", sa, true, false),
            // no sidecar; no serviceAccount: `default`
            row(
                "backend-legacy.shop",
                "spiffe://cluster.local/ns/shop/sa/default",
                false,
                false
            ),
            // its PeerAuthentication is STRICT but DISABLE on port 8080
            row("backend-plain.shop", sa, true, false),
        ]
    );
}

#[test]
fn a_disabled_namespace_and_external_services_get_plain_text() {
    let mesh = mesh("security");
    let config = compile(&mesh, "frontend.shop");
    let old = identities(&config, "outbound|80||old.old.svc.cluster.local");
    assert_eq!(
        old,
        [row(
            "old-0.old",
            "spiffe://cluster.local/ns/old/sa/default",
            true,
            false
        )]
    );
    let vm = "spiffe://cluster.local/ns/shop/sa/vm";
    assert_eq!(
        identities(&config, "outbound|80||ext.example.com"),
        [row("vm-0.shop", vm, true, false)]
    );
    assert_eq!(
        identities(&config, "outbound|80||vm.example.com"),
        [row("vm-0.shop", vm, true, true)]
    );
}

#[test]
fn destination_rule_tls_follows_istios_precedence() {
    let mesh = mesh("security");
    let config = compile(&mesh, "frontend.shop");
    let tls = |subset: &str, port: u16| {
        let c = cluster(
            &config,
            &format!("outbound|{port}|{subset}|db.shop.svc.cluster.local"),
        );
        (c.tls.clone(), c.endpoints.iter().all(|e| e.mtls))
    };
    // The rule's top level, for a subset without a policy of its own: mutual TLS even
    // to an endpoint without a sidecar.
    assert_eq!(
        tls("top", 80),
        (ClusterTls::IstioMutual(IstioMutual::default()), true)
    );
    // The subset's own tls wins.
    assert_eq!(
        tls("ext", 80),
        (
            ClusterTls::Simple(TlsOrigination {
                sni: Some("db.example.com".into()),
                subject_alt_names: vec!["db.example.com".into()],
                ca_certificates: Some("/etc/certs/ca.pem".into()),
                ..TlsOrigination::default()
            }),
            false
        )
    );
    // A subset port-level entry without tls replaces the level: no TLS settings for
    // the cluster (auto), but the endpoint builder still reads the rule's ISTIO_MUTUAL.
    assert_eq!(tls("pl", 80), (ClusterTls::Auto, true));
    // The rule's port level beats its top level.
    assert_eq!(tls("", 9000), (ClusterTls::Disable, false));
    // A subset's top level beats the rule's port level.
    assert_eq!(
        tls("admin", 9000),
        (
            ClusterTls::Mutual(TlsOrigination {
                client_certificate: Some("/etc/certs/client.pem".into()),
                private_key: Some("/etc/certs/key.pem".into()),
                ..TlsOrigination::default()
            }),
            false
        )
    );
}

#[test]
fn inbound_ports_carry_the_servers_mode() {
    let mesh = mesh("security");
    let mode = |id: &str| {
        let config = compile(&mesh, id);
        config
            .inbound
            .iter()
            .map(|p| (p.target_port, p.mtls))
            .collect::<Vec<_>>()
    };
    assert_eq!(mode("backend-plain.shop"), [(8080, MtlsMode::Disable)]);
    assert_eq!(mode("backend-v1.shop"), [(8080, MtlsMode::Permissive)]);
    assert_eq!(mode("old-0.old"), [(8080, MtlsMode::Strict)]);
    let plain = compile(&mesh, "backend-plain.shop").policies.mtls;
    assert_eq!(plain.mode, MtlsMode::Strict);
}

/// The seed 002 page's policies with this fixture's workloads and policies.
fn authz_mesh() -> Mesh {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let seed =
        root.join("../api/tests/fixtures/seeds/002-service-mesh-istio/authorization-policy.yaml");
    let loaded = skiff_api::load(&[root.join("tests/fixtures/authz"), seed]).unwrap();
    let errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    Mesh::build(&loaded.resources, MeshOptions::default())
}

fn policy<'c>(config: &'c ProxyConfig, name: &str) -> &'c AuthzPolicy {
    let p = &config.policies.authorization_policies;
    p.iter().find(|p| p.name == name).unwrap_or_else(|| {
        panic!(
            "no policy {name}: {:?}",
            p.iter().map(|p| &p.name).collect::<Vec<_>>()
        )
    })
}

#[test]
fn authorization_policies_are_compiled_in_istios_order() {
    let mesh = authz_mesh();
    let config = compile(&mesh, "order-api.production");
    let names: Vec<&str> = config
        .policies
        .authorization_policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    // Root namespace first; then by creation time (unset is oldest), then name.
    assert_eq!(
        names,
        [
            "istio-system/mesh-deny-blocked",
            "production/deny-all",
            "production/deny-delete",
            "production/order-api-allow",
            "production/from-service-accounts",
            "production/require-jwt",
        ]
    );
    // The names list stays sorted, for display.
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(config.policies.authorization, sorted);
}

#[test]
fn an_empty_spec_matches_nothing_and_an_empty_rule_everything() {
    let mesh = authz_mesh();
    let deny_all = compile(&mesh, "payment-service.production");
    let p = policy(&deny_all, "production/deny-all");
    assert_eq!((p.action, p.dry_run), (AuthzAction::Allow, false));
    assert!(p.rules.is_empty());
    let open = compile(&mesh, "web.open");
    let p = policy(&open, "open/allow-everything");
    assert_eq!(p.action, AuthzAction::Allow);
    assert_eq!(p.rules.len(), 1);
    let rule = &p.rules[0];
    assert!(rule.from.is_empty() && rule.to.is_empty() && rule.when.is_empty());
}

#[test]
fn the_seed_allow_rules_keep_principals_methods_and_paths() {
    let mesh = authz_mesh();
    let config = compile(&mesh, "order-api.production");
    let p = policy(&config, "production/order-api-allow");
    assert_eq!(p.rules.len(), 3);
    assert_eq!(
        p.rules[0].from[0].principals,
        ["cluster.local/ns/production/sa/payment-service"]
    );
    assert_eq!(p.rules[0].to[0].methods, ["POST"]);
    assert_eq!(p.rules[0].to[0].paths, ["/api/orders/*/payment"]);
    assert_eq!(p.rules[1].from[0].namespaces, ["istio-system"]);
    assert_eq!(p.rules[1].to[0].methods, ["GET", "POST", "PUT"]);
    assert_eq!(p.rules[2].to[0].paths, ["/admin/*"]);
    let jwt = policy(&config, "production/require-jwt");
    assert_eq!(
        jwt.rules[0].from[0].request_principals,
        ["testing@secure.istio.io/testing@secure.istio.io"]
    );
    assert_eq!(
        jwt.rules[0].when[1],
        AuthzCondition {
            key: "request.auth.claims[realm_access][roles]".into(),
            values: vec!["admin".into()],
            not_values: vec![],
        }
    );
}

#[test]
fn service_accounts_hosts_and_ports_are_normalised() {
    let mesh = authz_mesh();
    let config = compile(&mesh, "order-api.production");
    let p = policy(&config, "production/from-service-accounts");
    let from = &p.rules[0].from[0];
    assert_eq!(
        from.service_accounts,
        ["production/payment-service", "platform/admin-service"]
    );
    assert_eq!(from.not_service_accounts, ["production/legacy"]);
    let to = &p.rules[0].to[0];
    assert_eq!(
        to.hosts,
        ["order-api.production.svc.cluster.local", "*.example.com"]
    );
    assert_eq!(to.ports, [8080]);
    assert_eq!(to.not_paths, ["/internal/*"]);
    assert_eq!(p.rules[0].when[0].values, ["production/frontend"]);
    let mesh_deny = policy(&config, "istio-system/mesh-deny-blocked");
    assert_eq!(mesh_deny.action, AuthzAction::Deny);
    assert_eq!(mesh_deny.rules[0].from[0].trust_domains, ["cluster.local"]);
}

#[test]
fn trust_domain_aliases_expand_principals_and_trust_domains() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let seed =
        root.join("../api/tests/fixtures/seeds/002-service-mesh-istio/authorization-policy.yaml");
    let loaded = skiff_api::load(&[root.join("tests/fixtures/authz"), seed]).unwrap();
    let options = MeshOptions {
        trust_domain: "corp.example".into(),
        trust_domain_aliases: vec!["old.example".into()],
        ..MeshOptions::default()
    };
    let mesh = Mesh::build(&loaded.resources, options);
    let config = compile(&mesh, "order-api.production");
    let p = policy(&config, "production/order-api-allow");
    // `cluster.local` is Istio's default and always read as the mesh's own.
    assert_eq!(
        p.rules[0].from[0].principals,
        [
            "corp.example/ns/production/sa/payment-service",
            "old.example/ns/production/sa/payment-service"
        ]
    );
    assert_eq!(
        config.node.spiffe_id,
        "spiffe://corp.example/ns/production/sa/order-api"
    );
    let mesh_deny = policy(&config, "istio-system/mesh-deny-blocked");
    // Not the mesh's trust domain nor an alias: kept as written.
    assert_eq!(mesh_deny.rules[0].from[0].trust_domains, ["cluster.local"]);
}

#[test]
fn dry_run_and_targeted_policies() {
    let mesh = authz_mesh();
    let config = compile(&mesh, "order-api.production");
    let p = policy(&config, "production/deny-delete");
    assert_eq!((p.action, p.dry_run), (AuthzAction::Deny, true));
    let names = &config.policies.authorization;
    assert!(!names.iter().any(|n| n == "production/edge-only"));
    assert!(!names.iter().any(|n| n == "production/waypoint-only"));
    // The Gateway API gateway gets the policy that names it, and the namespace's
    // selector-less ones.
    let edge = compile(&mesh, "edge.production");
    assert_eq!(
        edge.policies.authorization,
        [
            "istio-system/mesh-deny-blocked",
            "production/deny-all",
            "production/edge-only"
        ]
    );
    let warnings: Vec<String> = findings(&mesh, Code::NotImplemented)
        .iter()
        .map(|d| d.to_string())
        .filter(|m| m.contains("waypoint-only"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(
            "spec.targetRef: a targetRef to a Service attaches the policy to waypoint proxies"
        ),
        "{warnings:?}"
    );
}

#[test]
fn jwt_rules_get_istios_defaults_and_are_sorted_by_issuer() {
    let mesh = authz_mesh();
    let config = compile(&mesh, "order-api.production");
    let rules = &config.policies.jwt_rules;
    let issuers: Vec<(&str, &str)> = rules
        .iter()
        .map(|r| (r.issuer.as_str(), r.policy.as_str()))
        .collect();
    assert_eq!(
        issuers,
        [
            ("https://accounts.google.com", "production/jwt-auth"),
            ("https://auth.example.com", "istio-system/jwt-cookie"),
            ("testing@secure.istio.io", "production/jwt-defaults"),
        ]
    );
    let seed = &rules[0];
    assert!(seed.forward_original_token);
    assert_eq!(seed.audiences, ["your-api-audience"]);
    assert_eq!(seed.output_claim_to_headers.len(), 2);
    assert_eq!(seed.output_claim_to_headers[1].header, "x-user-email");
    let defaults = &rules[2];
    assert_eq!(
        defaults.from_headers,
        [JwtHeader {
            name: "Authorization".into(),
            prefix: "Bearer ".into()
        }]
    );
    assert_eq!(defaults.from_params, ["access_token"]);
    assert_eq!(defaults.timeout, Duration::from_secs(5));
    assert_eq!(defaults.space_delimited_claims, ["permission", "scope"]);
    let cookie = &rules[1];
    assert!(cookie.from_headers.is_empty() && cookie.from_params.is_empty());
    assert_eq!(cookie.from_cookies, ["session"]);
    assert_eq!(cookie.jwks.as_deref(), Some(r#"{"keys": []}"#));
    assert_eq!(cookie.timeout, Duration::from_secs(2));
    assert_eq!(
        cookie.space_delimited_claims,
        ["permission", "roles", "scope"]
    );
}

#[test]
fn the_security_contract_round_trips_and_old_configs_still_parse() {
    let mesh = authz_mesh();
    let config = compile(&mesh, "order-api.production");
    let json = serde_json::to_string(&config).unwrap();
    let back: ProxyConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config);
    let sec = super::mesh("security");
    let client = compile(&sec, "frontend.shop");
    let json = serde_json::to_value(&client).unwrap();
    let back: ProxyConfig = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, client);
    let db = json["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "outbound|80|ext|db.shop.svc.cluster.local")
        .unwrap();
    assert_eq!(db["tls"]["mode"], "SIMPLE");
    assert_eq!(db["tls"]["sni"], "db.example.com");
    // A config written before these fields existed.
    let old = r#"{"node":{"id":"a.b","name":"a","namespace":"b","kind":"sidecar","address":null,
        "labels":{},"serviceAccount":"default","spiffeId":"spiffe://cluster.local/ns/b/sa/default"},
        "outbound":[],"inbound":[{"targetPort":8080,"protocol":"HTTP","services":[]}],"gateway":[],
        "clusters":[{"name":"outbound|80||x","service":"x","port":80,"protocol":"HTTP",
        "lb":"LEAST_REQUEST","endpoints":[{"address":"127.0.0.1:8080","workload":"x.b","weight":1}],
        "connectTimeout":10000}],
        "policies":{"mtls":{"mode":"STRICT"},"authorization":["b/deny"]}}"#;
    let parsed: ProxyConfig = serde_json::from_str(old).unwrap();
    assert_eq!(parsed.inbound[0].mtls, MtlsMode::Permissive);
    assert_eq!(parsed.clusters[0].tls, ClusterTls::Auto);
    assert!(!parsed.clusters[0].endpoints[0].mtls);
    assert_eq!(parsed.policies.authorization, ["b/deny"]);
    assert!(parsed.policies.authorization_policies.is_empty());
}
