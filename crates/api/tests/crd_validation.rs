//! skiff's validation agrees with Istio's on Istio's own CRD validation cases
//! (`istio/crd-validation/` of the shared corpus: Istio's
//! `pkg/config/validation/testdata/crds/`). Every document of a `*-valid.yaml` file is
//! accepted, every document of a `*-invalid.yaml` file is rejected. The `_err:` line
//! of an invalid document belongs to Istio's test harness (the error Kubernetes gives),
//! so it is taken out before loading.
//!
//! The corpus lives outside the repository (`../shared/corpus` next to it, or
//! `$SKIFF_CORPUS`): without it this test passes with a note, except under CI (`CI`
//! set), where a missing corpus is a failure.

use std::path::{Path, PathBuf};

/// Files of kinds skiff does not read, with the reason. Loading them gives a warning
/// ("ignored"), never an error, so their invalid documents cannot be rejected.
const LEFT_OUT: &[(&str, &str)] = &[
    (
        "envoyfilter",
        "EnvoyFilter patches Envoy's own config; skiff has no Envoy and ignores the kind",
    ),
    (
        "wasm",
        "WasmPlugin: skiff runs no Wasm plugins and ignores the kind",
    ),
    (
        "proxyconfig",
        "ProxyConfig (networking.istio.io/v1beta1): skiff does not implement it and ignores the kind",
    ),
];

/// `$SKIFF_CORPUS`, else the first `shared/corpus` next to an ancestor of this crate.
fn corpus() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SKIFF_CORPUS") {
        return Some(PathBuf::from(dir));
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/corpus"))
        .find(|c| c.join("istio").is_dir())
}

fn cases() -> Option<PathBuf> {
    match corpus().map(|c| c.join("istio/crd-validation")) {
        Some(dir) if dir.is_dir() => Some(dir),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "Istio's CRD validation cases (shared/corpus/istio/crd-validation) are missing; set SKIFF_CORPUS"
            );
            eprintln!(
                "skipped: no shared/corpus/istio/crd-validation next to the repository (set SKIFF_CORPUS)"
            );
            None
        }
    }
}

/// The documents of a file, each with the line it starts on and without the harness's
/// top-level `_err:` key.
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" {
            out.push((start, std::mem::take(&mut current)));
            start = i + 2;
            continue;
        }
        if line.starts_with("_err:") {
            // Keep the line numbers of the rest of the document.
            current.push('\n');
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    out.push((start, current));
    out.into_iter()
        .filter(|(_, d)| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
        })
        .collect()
}

#[test]
fn istio_crd_validation_cases_agree() {
    let Some(dir) = cases() else { return };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let (mut accepted, mut rejected, mut left_out) = (0, 0, 0);
    // Valid in Istio, which hands CEL to Envoy unchecked; skiff refuses at load the
    // expressions it could not evaluate, so they never fail on every request. None of
    // Istio's own valid cases is such a one.
    let mut refused_cel = Vec::new();
    let mut wrong = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let valid = name.ends_with("-valid.yaml");
        assert!(
            valid || name.ends_with("-invalid.yaml"),
            "{name}: neither -valid nor -invalid"
        );
        let text = std::fs::read_to_string(file).unwrap();
        let docs = documents(&text);
        if let Some((_, why)) = LEFT_OUT
            .iter()
            .find(|(p, _)| name.starts_with(&format!("{p}-")))
        {
            eprintln!("left out: {name} ({} documents): {why}", docs.len());
            left_out += docs.len();
            continue;
        }
        for (line, doc) in docs {
            let loaded = skiff_api::load_str(&name, &doc);
            let errors: Vec<String> = loaded
                .diagnostics
                .iter()
                .filter(|d| d.is_error())
                .map(ToString::to_string)
                .collect();
            let cel_only = !errors.is_empty()
                && errors
                    .iter()
                    .all(|e| e.contains(skiff_api::cel::CANNOT_EVALUATE));
            match (valid, errors.is_empty()) {
                (true, true) => accepted += 1,
                (true, false) if cel_only => refused_cel.push(format!("{name}:{line}")),
                (false, false) => rejected += 1,
                (true, false) => wrong.push(format!(
                    "{name}:{line}: valid in Istio, rejected by skiff:\n    {}",
                    errors.join("\n    ")
                )),
                (false, true) => {
                    let err = text
                        .lines()
                        .skip(line - 1)
                        .find(|l| l.starts_with("_err:"))
                        .unwrap_or("");
                    wrong.push(format!(
                        "{name}:{line}: invalid in Istio ({err}), accepted by skiff"
                    ))
                }
            }
        }
    }
    eprintln!("accepted valid: {accepted}, rejected invalid: {rejected}, left out: {left_out}");
    eprintln!("refused on purpose (CEL skiff cannot evaluate): {refused_cel:?}");
    assert!(
        refused_cel.is_empty(),
        "valid in Istio, refused for their CEL: {refused_cel:?}"
    );
    assert!(
        wrong.is_empty(),
        "{} disagreements:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // The corpus holds 35 valid and 77 invalid documents; all of those in scope counted.
    assert_eq!(accepted + rejected + left_out + refused_cel.len(), 35 + 77);
}
