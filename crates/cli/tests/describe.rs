//! `skiff describe` on `examples/broken`, offline (`--config`).

use std::path::Path;
use std::process::Command;

fn describe(args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .current_dir(&root)
        .arg("describe")
        .args(args)
        .args(["--config", "examples/broken"])
        .output()
        .expect("run skiff describe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_workload_shows_its_services_ports_routing_mtls_and_policies() {
    let out = describe(&["workload", "backend-v1.shop"]);
    for needle in [
        "Workload: backend-v1.shop (WorkloadEntry shop/backend-v1, examples/broken/10-backend.yaml:",
        "Service: backend.shop.svc.cluster.local",
        "port http 80 -> 8080 protocol HTTP (PortName)   mTLS PERMISSIVE",
        "rule shop/backend/0 (examples/broken/40-backend-vs.yaml:11)",
        "subset v1 (version=v1) <- this workload",
        "AuthorizationPolicy shop/deny-admin, examples/broken/50-deny.yaml:2",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }
    assert!(!out.contains("subset v2 (version=v2) <-"), "{out}");
}

#[test]
fn a_service_shows_its_workloads_subsets_and_findings() {
    let out = describe(&["service", "backend.shop"]);
    assert!(
        out.contains("workload backend-v1.shop at 127.0.20.11 (sidecar: yes, mTLS PERMISSIVE)"),
        "{out}"
    );
    assert!(
        out.contains("subset v2 (version=v2), selects 0 workloads"),
        "{out}"
    );
    // The analyze messages about it, as `skiff analyze` prints them.
    assert!(
        out.contains(
            "Error [IST0173] (DestinationRule shop/backend examples/broken/30-backend-dr.yaml:14)"
        ),
        "{out}"
    );
    assert!(
        out.contains("fix: subset v2 of backend.shop selects no endpoints"),
        "{out}"
    );

    let out = describe(&["service", "ratings"]);
    assert!(
        out.contains("workloads: none (requests get 503 UH)"),
        "{out}"
    );
    assert!(
        out.contains("subset v1 of ratings.shop is not defined"),
        "{out}"
    );
}
