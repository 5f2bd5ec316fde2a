//! Compiling again after a change reuses the routes of every view when only endpoints
//! changed; the result must be what building and compiling the mesh afresh gives.

use std::path::PathBuf;

use skiff_api::{Resource, ResourceSet, ResourceStore, Spec};
use skiff_model::{Incremental, makes_only_endpoints};

use super::*;

/// Compiles `resources` with `incremental` and checks the result against a fresh
/// build; returns whether routes were kept and how many views compiled routes.
fn compile_and_compare(
    name: &str,
    (incremental, store): &mut (Incremental, ResourceStore),
    resources: Vec<Resource>,
) -> (bool, usize, usize) {
    let set = ResourceSet::new(resources);
    let changes = store.diff(&set);
    store.apply(changes.clone());
    let compiled = incremental.compile(store, &changes, MeshOptions::default());
    // Each proxy compiled alone in a fresh mesh: no view shared, nothing kept.
    let fresh = Mesh::build(&set, MeshOptions::default());
    let alone: Vec<ProxyConfig> = fresh.proxies().map(|id| compile(&fresh, id)).collect();
    assert_eq!(compiled.configs.len(), alone.len(), "{name}: proxies");
    for (a, b) in compiled.configs.iter().zip(&alone) {
        assert!(
            a.clone().join() == *b,
            "{name}: proxy {} compiles differently when routes are kept",
            b.node.id
        );
    }
    assert_eq!(
        compiled.mesh.diagnostics(),
        fresh.diagnostics(),
        "{name}: diagnostics"
    );
    (
        compiled.endpoints_only,
        compiled.views,
        compiled.routes_compiled,
    )
}

/// The changes an endpoint can go through: moved to another address, relabelled,
/// removed.
fn endpoint_changes(resources: &[Resource]) -> Vec<(String, Vec<Resource>)> {
    let mut out = Vec::new();
    for (i, r) in resources.iter().enumerate() {
        if !makes_only_endpoints(r.kind()) {
            continue;
        }
        let what = r.display_name();
        let mut removed = resources.to_vec();
        removed.remove(i);
        out.push((format!("{what} removed"), removed));
        let mut relabelled = resources.to_vec();
        match &mut relabelled[i].spec {
            Spec::WorkloadEntry(we) => {
                we.labels.insert("version".into(), "moved".into());
                let mut moved = resources.to_vec();
                if let Spec::WorkloadEntry(we) = &mut moved[i].spec {
                    we.address = Some("10.99.0.7".into());
                }
                out.push((format!("{what} moved"), moved));
            }
            _ => {
                relabelled[i]
                    .metadata
                    .labels
                    .insert("version".into(), "moved".into());
            }
        }
        out.push((format!("{what} relabelled"), relabelled));
    }
    out
}

#[test]
fn an_endpoint_change_keeps_the_routes_and_compiles_as_a_fresh_build_does() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = super::views::directories(&manifest.join("tests/fixtures"));
    dirs.extend(super::views::directories(&manifest.join("../../examples")));
    let (mut changes, mut kept) = (0, 0);
    for dir in &dirs {
        let loaded = skiff_api::load(&[dir]).expect("directory loads");
        let base: Vec<Resource> = loaded.resources.iter().cloned().collect();
        for (change, resources) in endpoint_changes(&base) {
            let name = format!("{}: {change}", dir.display());
            let mut incremental = (Incremental::new(), ResourceStore::new());
            let (first, views, compiled) =
                compile_and_compare(&name, &mut incremental, base.clone());
            assert!(!first, "{name}: the first compile is whole");
            assert_eq!(
                compiled, views,
                "{name}: the first compile compiles every view"
            );
            let (endpoints_only, views, compiled) =
                compile_and_compare(&name, &mut incremental, resources);
            assert!(endpoints_only, "{name}: only endpoints changed");
            changes += 1;
            if views > 0 && compiled < views {
                kept += 1;
            }
            // And back: the original again, through the kept routes.
            let (endpoints_only, _, _) = compile_and_compare(&name, &mut incremental, base.clone());
            assert!(endpoints_only, "{name}: undoing it changes only endpoints");
        }
    }
    // Most changes keep every view's routes (a relabelled client may see a new view).
    assert!(
        changes >= 40 && kept * 2 >= changes,
        "{changes} changes, {kept} kept routes"
    );
}

#[test]
fn any_other_change_compiles_every_view() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/canary");
    let loaded = skiff_api::load(&[&dir]).expect("fixture loads");
    let base: Vec<Resource> = loaded.resources.iter().cloned().collect();
    let vs = base
        .iter()
        .position(|r| r.kind() == skiff_api::Kind::VirtualService)
        .expect("the canary fixture has a VirtualService");
    let mut without = base.clone();
    without.remove(vs);
    let mut incremental = (Incremental::new(), ResourceStore::new());
    compile_and_compare("canary", &mut incremental, base.clone());
    let (endpoints_only, views, compiled) = compile_and_compare(
        "canary without its VirtualService",
        &mut incremental,
        without,
    );
    assert!(!endpoints_only);
    assert_eq!(compiled, views);
    // Unchanged: nothing compiled again.
    let (endpoints_only, _, compiled) =
        compile_and_compare("canary unchanged", &mut incremental, base.clone());
    assert!(!endpoints_only, "the VirtualService came back");
    assert!(compiled > 0);
    let (endpoints_only, _, compiled) =
        compile_and_compare("canary unchanged", &mut incremental, base);
    assert!(endpoints_only);
    assert_eq!(compiled, 0, "an unchanged mesh compiles no routes");
}
