use super::*;

fn dump() -> Value {
    json!({
        "listeners": {"admin": "127.0.0.1:15000", "outbound": "127.0.0.1:15001", "inbound": "127.0.0.1:15006", "gateway": {}},
        "config": {
            "outbound": [{"port": 80, "protocol": "HTTP", "virtualHosts": [{
                "name": "backend.prod.svc.cluster.local:80",
                "domains": ["backend", "backend.prod"],
                "routes": [
                    {"name": "prod/backend/0", "matches": [{"uri": {"prefix": "/v2"}, "headers": [{"name": "x-user", "value": {"exact": "ann"}}]}],
                     "action": {"forward": {"destinations": [{"cluster": "outbound|80|v2|backend.prod.svc.cluster.local", "weight": 100}]}}},
                    {"name": "prod/backend/1", "matches": [],
                     "action": {"forward": {"destinations": [{"cluster": "outbound|80|v1|backend.prod.svc.cluster.local", "weight": 100}]}}}
                ]}], "tcp": []}],
            "inbound": [{"targetPort": 8080, "protocol": "HTTP", "services": ["frontend.prod.svc.cluster.local:80"], "mtls": "STRICT"}],
            "clusters": [{"name": "outbound|80|v1|backend.prod.svc.cluster.local", "service": "backend.prod.svc.cluster.local", "port": 80, "subset": "v1", "protocol": "HTTP", "lb": "LEAST_REQUEST",
                "endpoints": [{"address": "127.0.0.2:8080", "workload": "backend-v1.prod", "weight": 1, "sidecar": true, "mtls": true},
                              {"address": "127.0.0.3:8080", "workload": "backend-v1b.prod", "weight": 1}]}],
            "missingClusters": {"outbound|80|v2|backend.prod.svc.cluster.local": "no DestinationRule defines subset v2"}
        },
        "upstreams": {"outbound|80|v1|backend.prod.svc.cluster.local": {"outlierDetection": {"ejectedNow": 1, "endpoints": [
            {"address": "127.0.0.2:8080", "ejected": false, "timesEjected": 0},
            {"address": "127.0.0.3:8080", "ejected": true, "timesEjected": 2}]}}}
    })
}

#[test]
fn routes_show_matches_destinations_and_rule_names() {
    let t = routes(&dump()["config"]);
    let lines: Vec<&str> = t.lines().collect();
    assert!(lines[0].starts_with("PORT"), "{t}");
    assert!(lines[1].contains("/v2* [x-user=ann]"), "{t}");
    assert!(
        lines[1].contains("outbound|80|v2|backend.prod.svc.cluster.local 100%"),
        "{t}"
    );
    assert!(lines[1].ends_with("prod/backend/0"), "{t}");
    assert!(lines[1].contains("backend +1"), "{t}");
    assert!(lines[2].contains("/*"), "{t}");
}

#[test]
fn clusters_list_missing_ones_with_the_reason() {
    let t = clusters(&dump()["config"]);
    assert!(t.contains("v1"), "{t}");
    assert!(
        t.contains("MISSING: no DestinationRule defines subset v2"),
        "{t}"
    );
}

#[test]
fn endpoints_show_ejections() {
    let t = endpoints(&dump());
    let ejected = t.lines().find(|l| l.starts_with("127.0.0.3:8080")).unwrap();
    assert!(
        ejected.contains("UNHEALTHY") && ejected.contains("FAILED"),
        "{t}"
    );
    let fine = t.lines().find(|l| l.starts_with("127.0.0.2:8080")).unwrap();
    assert!(
        fine.contains("HEALTHY") && fine.contains(" OK ") && fine.contains("ISTIO_MUTUAL"),
        "{t}"
    );
}

#[test]
fn listeners_show_inbound_mtls() {
    let t = listeners(&dump());
    assert!(t.contains("mTLS STRICT"), "{t}");
    assert!(t.contains("service ports: 80/HTTP"), "{t}");
}

#[test]
fn secret_shows_the_spiffe_id_and_validity() {
    let t = secret(
        &json!({"certificates": [{"spiffeId": "spiffe://cluster.local/ns/prod/sa/a", "serialNumber": "0a", "notBefore": "2026-01-01T00:00:00Z", "notAfter": "2026-01-02T00:00:00Z", "chainLength": 2, "valid": true}], "trustBundleRoots": 1}),
    );
    assert!(t.contains("spiffe://cluster.local/ns/prod/sa/a"), "{t}");
    assert!(t.contains("Cert Chain (2 certs)"), "{t}");
    assert!(t.contains("2026-01-02T00:00:00Z"), "{t}");
}
