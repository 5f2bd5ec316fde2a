//! The Istio corpus (`../shared/corpus` beside the repository, unchanged copies of Istio's own YAML): every
//! security.istio.io document in it loads without error and compiles.
//!
//! The corpus lives outside the repository. Without it the test passes with a note,
//! except under CI (`CI` set), where a missing corpus is a failure.

use std::path::{Path, PathBuf};

use super::*;

/// `$SKIFF_CORPUS`, else the first `shared/corpus` found next to an ancestor of this
/// crate.
fn corpus() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SKIFF_CORPUS") {
        return Some(PathBuf::from(dir));
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/corpus"))
        .find(|c| c.join("istio").is_dir())
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

/// The YAML documents of a file that are security.istio.io resources.
fn security_documents(text: &str) -> Vec<String> {
    text.split("\n---")
        .filter(|d| {
            d.lines()
                .any(|l| l.trim_start().starts_with("apiVersion: security.istio.io/"))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_security_document_of_the_istio_corpus_compiles() {
    let Some(corpus) = corpus() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the Istio corpus (shared/corpus) is missing; set SKIFF_CORPUS"
        );
        eprintln!("skipped: no shared/corpus next to the repository (set SKIFF_CORPUS)");
        return;
    };
    // The samples, and the documents Istio's own validation test holds valid.
    let mut files = Vec::new();
    yaml_files(&corpus.join("istio/samples"), &mut files);
    yaml_files(&corpus.join("istio/crd-validation"), &mut files);
    files.retain(|f| !f.to_string_lossy().ends_with("-invalid.yaml"));
    files.sort();
    let mut documents = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (i, d) in security_documents(&text).into_iter().enumerate() {
            documents.push((format!("{}#{i}", f.display()), d));
        }
    }
    assert!(
        documents.len() >= 5,
        "only {} security documents in {}",
        documents.len(),
        corpus.display()
    );
    // Each document with a workload its selectors (if any) may pick.
    let workload = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: httpbin\n  namespace: default\nspec:\n  address: 127.0.40.1\n  labels:\n    app: httpbin\n    version: v1\n";
    let mut failures = Vec::new();
    let mut compiled = 0;
    for (name, doc) in &documents {
        let text = format!("{doc}\n---\n{workload}");
        let loaded = skiff_api::load_str(name, &text);
        let errors: Vec<String> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(ToString::to_string)
            .collect();
        if !errors.is_empty() {
            failures.push(errors.join("\n"));
            continue;
        }
        let mesh = Mesh::build(&loaded.resources, MeshOptions::default());
        let config = compile(&mesh, "httpbin.default");
        serde_json::to_string(&config).unwrap();
        compiled += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(compiled, documents.len());
}
