//! Which security policies apply to a workload, with Istio's precedence.

use std::collections::BTreeMap;

use skiff_model::config::MtlsMode;

use super::*;

#[test]
fn a_workload_policy_inherits_the_mesh_mode_and_overrides_one_port() {
    let mesh = mesh("policies");
    let p = compile(&mesh, "order-api.production").policies;
    assert_eq!(p.mtls.mode, MtlsMode::Strict);
    assert_eq!(p.mtls.ports, BTreeMap::from([(8080, MtlsMode::Permissive)]));
    assert_eq!(
        p.mtls.from,
        ["production/order-api", "istio-system/default"]
    );
    assert_eq!(
        p.authorization,
        [
            "istio-system/mesh-audit",
            "production/deny-all",
            "production/order-api-allow"
        ]
    );
    assert_eq!(p.request_authentication, ["production/jwt-auth"]);
}

#[test]
fn namespace_policies_apply_to_every_workload_of_the_namespace() {
    let mesh = mesh("policies");
    let p = compile(&mesh, "payment-service.production").policies;
    assert_eq!(p.mtls.mode, MtlsMode::Strict);
    assert!(p.mtls.ports.is_empty());
    assert_eq!(p.mtls.from, ["istio-system/default"]);
    assert_eq!(p.authorization, ["production/deny-all"]);
    assert!(p.request_authentication.is_empty());
    let legacy = compile(&mesh, "old-app.legacy").policies;
    assert_eq!(legacy.mtls.mode, MtlsMode::Permissive);
    assert_eq!(legacy.mtls.from, ["legacy/default"]);
    assert!(legacy.authorization.is_empty());
}

#[test]
fn the_spiffe_id_uses_the_service_account() {
    let mesh = mesh("policies");
    let node = compile(&mesh, "order-api.production").node;
    assert_eq!(node.service_account, "order-api");
    assert_eq!(
        node.spiffe_id,
        "spiffe://cluster.local/ns/production/sa/order-api"
    );
}
