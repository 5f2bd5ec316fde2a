//! Compiling every proxy at once shares the outbound half between sidecars that see the
//! mesh alike; the result must be what compiling each proxy alone gives.

use std::path::{Path, PathBuf};

use super::*;

fn assert_shared_compile_matches(name: &str, mesh: &Mesh) -> usize {
    let alone: Vec<ProxyConfig> = mesh.proxies().map(|id| compile(mesh, id)).collect();
    let all = mesh.compile_all();
    assert_eq!(all.len(), alone.len(), "{name}: one config per proxy");
    for (parts, alone) in all.iter().zip(&alone) {
        assert!(
            parts.clone().join() == *alone,
            "{name}: proxy {} compiles differently with shared views",
            alone.node.id
        );
        let pieces = parts.shared.pieces();
        let names: std::collections::BTreeSet<&str> =
            pieces.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), pieces.len(), "{name}: piece names are unique");
        let joined = SharedConfig::from_pieces(pieces.iter().map(|(n, p)| (n.as_str(), p)))
            .unwrap_or_else(|e| panic!("{name}: pieces of {} join: {e}", alone.node.id));
        assert!(
            joined == *parts.shared,
            "{name}: the pieces of proxy {} join into another config",
            alone.node.id
        );
    }
    all.len()
}

pub(crate) fn directories(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_fixture_and_example_compiles_the_same_with_shared_views() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = directories(&manifest.join("tests/fixtures"));
    dirs.extend(directories(&manifest.join("../../examples")));
    let mut proxies = 0;
    for dir in &dirs {
        let loaded = skiff_api::load(&[dir]).expect("directory loads");
        let mesh = Mesh::build(&loaded.resources, MeshOptions::default());
        proxies += assert_shared_compile_matches(&dir.display().to_string(), &mesh);
    }
    assert!(
        dirs.len() >= 10 && proxies >= 30,
        "{} dirs, {proxies} proxies",
        dirs.len()
    );
}

#[test]
fn source_labels_split_the_views_of_one_namespace() {
    // frontend and tester share the namespace prod; a rule matches sourceLabels
    // app: tester, so their outbound routes differ.
    let mesh = mesh("traffic");
    assert!(mesh.rules().client_label_keys().contains("app"));
    assert_shared_compile_matches("traffic", &mesh);
    let all = mesh.compile_all();
    let of = |id: &str| all.iter().find(|c| c.own.node.id == id).expect(id);
    assert_ne!(of("frontend.prod").shared, of("tester.prod").shared);
}

#[test]
fn sidecars_of_one_view_share_one_copy_of_their_shared_part() {
    // backend-v1, backend-v2 and frontend of the canary fixture see the mesh alike.
    let mesh = mesh("canary");
    let all = mesh.compile_all();
    let sidecars: Vec<_> = all
        .iter()
        .filter(|p| p.own.node.kind == skiff_model::config::ProxyKind::Sidecar)
        .collect();
    assert!(sidecars.len() >= 2, "{} sidecars", sidecars.len());
    for p in &sidecars {
        assert!(
            std::sync::Arc::ptr_eq(&p.shared, &sidecars[0].shared),
            "{}",
            p.own.node.id
        );
        assert!(p.own.outbound.is_empty() && p.own.clusters.is_empty());
    }
}

#[test]
fn locality_and_failover_priority_labels_split_the_views() {
    // client-a and client-b differ only in their zone; client-a and client-a2 only in
    // the `tier` label a failoverPriority compares.
    let mesh = mesh("locality");
    assert!(mesh.rules().client_label_keys().contains("tier"));
    assert_shared_compile_matches("locality", &mesh);
    let all = mesh.compile_all();
    let of = |id: &str| all.iter().find(|c| c.own.node.id == id).expect(id);
    assert_ne!(of("client-a.prod").shared, of("client-b.prod").shared);
    assert_ne!(of("client-a.prod").shared, of("client-a2.prod").shared);
}
