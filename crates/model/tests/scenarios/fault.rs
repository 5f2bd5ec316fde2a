//! The fault-injection examples of the seeds: parsed, compiled into the faults of the
//! calling proxies' configs, and the rest of each rule compiles as usual.

use skiff_model::config::{Fault, FaultAbort, FaultDelay, RouteAction};

use super::*;

#[test]
fn fault_and_retries_are_parsed_without_warnings() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fault");
    let loaded = skiff_api::load(&[dir]).unwrap();
    let vs = loaded
        .resources
        .virtual_services()
        .find(|v| v.name() == "payment-service-fault")
        .unwrap();
    let abort = vs.http[0].fault.as_ref().unwrap().abort.as_ref().unwrap();
    assert_eq!(abort.http_status, Some(503));
    assert_eq!(abort.percentage.unwrap().value, 50.0);
    let latency = loaded
        .resources
        .virtual_services()
        .find(|v| v.name() == "database-latency")
        .unwrap();
    let delay = latency.http[0]
        .fault
        .as_ref()
        .unwrap()
        .delay
        .as_ref()
        .unwrap();
    assert_eq!(
        delay.fixed_delay.as_ref().unwrap().value(),
        std::time::Duration::from_secs(2)
    );
    let warned: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.path.as_deref().is_some_and(|p| p.contains(".fault")))
        .map(|d| d.to_string())
        .collect();
    assert!(warned.is_empty(), "{warned:#?}");
}

#[test]
fn faults_reach_the_callers_config_by_route_name() {
    let mesh = mesh("fault");
    let config = compile(&mesh, "database.production");
    assert_eq!(
        config.faults.get("production/payment-service-fault/0"),
        Some(&Fault {
            delay: None,
            abort: Some(FaultAbort {
                grpc_status: None,
                http_status: 503,
                per_million: 500_000
            }),
        })
    );
    assert_eq!(
        config.faults.get("production/database-latency/0"),
        Some(&Fault {
            delay: Some(FaultDelay {
                fixed_delay: std::time::Duration::from_secs(2),
                per_million: 100_000
            }),
            abort: None,
        })
    );
    assert_eq!(config.faults.len(), 2);
}

#[test]
fn rules_with_faults_still_route_and_attempts_zero_disables_retries() {
    let mesh = mesh("fault");
    let config = compile(&mesh, "database.production");
    let payment = vhost(
        &config,
        8080,
        "payment-service.production.svc.cluster.local:8080",
    );
    assert_eq!(payment.routes[0].name, "production/payment-service-fault/0");
    let RouteAction::Forward(f) = &payment.routes[0].action else {
        panic!()
    };
    assert_eq!(
        f.retries.as_ref().map(|r| r.attempts),
        Some(2),
        "Istio's default retries"
    );
    let database = vhost(
        &config,
        9000,
        "database-service.production.svc.cluster.local:9000",
    );
    let RouteAction::Forward(f) = &database.routes[0].action else {
        panic!()
    };
    assert_eq!(f.retries, None, "attempts: 0 turns retries off");
}

#[test]
fn workload_entry_ports_resolve_named_target_ports() {
    let mesh = mesh("fault");
    let config = compile(&mesh, "payment-0.production");
    let c = cluster(
        &config,
        "outbound|9000||database-service.production.svc.cluster.local",
    );
    assert_eq!(endpoints(c), ["127.0.0.30:9500"]);
    // The payment pod has no address in local mode: its service has no endpoint.
    let c = cluster(
        &config,
        "outbound|8080||payment-service.production.svc.cluster.local",
    );
    assert!(c.endpoints.is_empty());
    assert_eq!(config.node.address, None);
}
