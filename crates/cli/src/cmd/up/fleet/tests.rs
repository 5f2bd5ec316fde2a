use super::*;

fn plan() -> ProxyPlan {
    ProxyPlan {
        id: "backend-v1.prod".into(),
        address: "127.0.10.11".parse().unwrap(),
        kind: skiff_model::config::ProxyKind::Sidecar,
        gateway_ports: vec![],
        run: Some("skiff sample-app".into()),
        app_ports: vec![8080],
        service_account: "backend".into(),
        spiffe_id: "spiffe://cluster.local/ns/prod/sa/backend".into(),
    }
}

#[test]
fn only_what_the_processes_cannot_follow_restarts_them() {
    let old = plan();
    let mut ports = plan();
    ports.app_ports = vec![9090];
    ports.gateway_ports = vec![80];
    assert!(
        !needs_restart(&old, &ports),
        "ports come over xDS or only feed the summary"
    );
    for change in [
        |p: &mut ProxyPlan| p.address = "127.0.10.12".parse().unwrap(),
        |p: &mut ProxyPlan| p.run = Some("other".into()),
        |p: &mut ProxyPlan| p.run = None,
        |p: &mut ProxyPlan| p.service_account = "other".into(),
    ] {
        let mut new = plan();
        change(&mut new);
        assert!(needs_restart(&old, &new), "{new:?}");
    }
}

#[test]
fn the_fingerprint_sees_yaml_changes_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "a: 1\n").unwrap();
    let first = fingerprint(dir.path());
    assert_eq!(first.len(), 1);
    // Not configuration: other extensions, hidden files and directories (the state dir).
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    std::fs::write(dir.path().join(".a.yaml.swp"), "x").unwrap();
    std::fs::create_dir(dir.path().join(".skiff")).unwrap();
    std::fs::write(dir.path().join(".skiff/x.yaml"), "x").unwrap();
    assert_eq!(fingerprint(dir.path()), first);
    // A new file in a subdirectory, a longer file: changes.
    std::fs::create_dir(dir.path().join("more")).unwrap();
    std::fs::write(dir.path().join("more/b.yml"), "b: 1\n").unwrap();
    let second = fingerprint(dir.path());
    assert_eq!(second.len(), 2);
    std::fs::write(dir.path().join("a.yaml"), "a: 12\n").unwrap();
    assert_ne!(fingerprint(dir.path()), second);
}
