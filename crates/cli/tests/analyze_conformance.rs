//! Istio's analyzer suite as a conformance target: `skiff analyze` runs on each case of
//! Istio's analyzer tests (`istio/analyze/expected.tsv` of the shared corpus: the
//! cases of `pkg/config/analysis/analyzers/analyzers_test.go`) whose analyzer gives a
//! code skiff implements, and its messages (code + resource) are compared with Istio's
//! expectations.
//!
//! As in Istio's test, a case runs one analyzer, so only skiff's messages with a code
//! of that analyzer count. Left out: the EnvoyFilter, webhook, multicluster and
//! external-control-plane analyzers (skiff has no Envoy, no webhooks, one cluster and
//! its control plane in the mesh), and analyzers whose codes skiff does not give
//! (annotations, injection, images, conditions, Gateway API, …; docs/analyze.md).
//!
//! The test fails when fewer expected messages are produced than the committed floor,
//! and on any message skiff gives in a case where Istio expects none. The corpus lives
//! outside the repository (`../shared/corpus`, or `$SKIFF_CORPUS`): without it the test
//! passes with a note, except under CI (`CI` set), where it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Expected messages skiff must produce (raise it when skiff gets better).
const PRODUCED_FLOOR: usize = 131;

/// Analyzers left out whatever their codes, and why.
const LEFT_OUT: &[(&str, &str)] = &[
    (
        "envoyfilter.",
        "skiff has no Envoy to patch; EnvoyFilter is ignored",
    ),
    ("webhook.", "skiff runs no admission webhooks"),
    ("multicluster.", "skiff runs one cluster"),
    (
        "externalcontrolplane.",
        "skiff has no external control plane",
    ),
];

fn corpus() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SKIFF_CORPUS") {
        return Some(PathBuf::from(dir));
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/corpus"))
        .find(|c| c.join("istio").is_dir())
}

fn cases_dir() -> Option<PathBuf> {
    match corpus().map(|c| c.join("istio/analyze")) {
        Some(dir) if dir.join("expected.tsv").is_file() => Some(dir),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "Istio's analyzer cases (shared/corpus/istio/analyze/expected.tsv) are missing; set SKIFF_CORPUS"
            );
            eprintln!(
                "skipped: no shared/corpus/istio/analyze next to the repository (set SKIFF_CORPUS)"
            );
            None
        }
    }
}

#[derive(Debug)]
struct Row {
    test: String,
    files: String,
    mesh_config: String,
    analyzer: String,
    code: String,
    resource: String,
}

/// `Kind [ns/]name` → (kind, namespace if given, name).
fn split_resource(r: &str) -> (String, Option<String>, String) {
    let (kind, rest) = r.split_once(' ').unwrap_or((r, ""));
    match rest.split_once('/') {
        Some((ns, name)) => (kind.to_string(), Some(ns.to_string()), name.to_string()),
        None => (kind.to_string(), None, rest.to_string()),
    }
}

#[derive(Default)]
struct Counts {
    produced: usize,
    missed: usize,
    extra: usize,
    extra_where_none: usize,
}

#[test]
fn istio_analyzer_cases() {
    let Some(dir) = cases_dir() else { return };
    let text = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    let rows: Vec<Row> = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            assert!(c.len() >= 9, "bad row: {l}");
            Row {
                test: c[0].into(),
                files: c[1].into(),
                mesh_config: c[2].into(),
                analyzer: c[4].into(),
                code: c[5].into(),
                resource: c[8].into(),
            }
        })
        .collect();
    let implemented: BTreeSet<&str> = skiff_model::analyze::codes::ALL
        .iter()
        .map(|c| c.code)
        .filter(|c| c.starts_with("IST"))
        .collect();
    // The codes each analyzer gives (from every case of the table).
    let mut analyzer_codes: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in &rows {
        let e = analyzer_codes.entry(r.analyzer.as_str()).or_default();
        if r.code != "-" {
            e.insert(r.code.as_str());
        }
    }
    // Cases: (test, files), rows in table order.
    let mut cases: BTreeMap<(String, String), Vec<&Row>> = BTreeMap::new();
    for r in &rows {
        cases
            .entry((r.test.clone(), r.files.clone()))
            .or_default()
            .push(r);
    }
    let mut counts = Counts::default();
    let (mut run, mut skipped) = (0, Vec::new());
    let mut problems = Vec::new();
    for ((test, files), rows) in &cases {
        let analyzer = rows[0].analyzer.as_str();
        if let Some((_, why)) = LEFT_OUT.iter().find(|(p, _)| analyzer.starts_with(p)) {
            skipped.push(format!("{test}: {analyzer}: {why}"));
            continue;
        }
        let in_scope: BTreeSet<&str> = analyzer_codes[analyzer]
            .intersection(&implemented)
            .copied()
            .collect();
        if in_scope.is_empty() {
            skipped.push(format!("{test}: {analyzer}: skiff gives none of its codes"));
            continue;
        }
        if rows[0].mesh_config != "-" {
            skipped.push(format!(
                "{test}: needs a MeshConfig file, which skiff analyze does not read"
            ));
            continue;
        }
        run += 1;
        let paths: Vec<PathBuf> = files.split(',').map(|f| dir.join(f)).collect();
        let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("analyze")
            .args(["-A", "-o", "json", "--failure-threshold", "Error"])
            .args(&paths)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let got: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "{test}: not JSON ({e}): {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let mut got: Vec<(String, String, String, String)> = got
            .iter()
            .filter(|m| in_scope.contains(m["code"].as_str().unwrap_or("")))
            .filter(|m| m["analyzer"].as_str() == Some(analyzer))
            .map(|m| {
                let r = &m["resource"];
                let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
                (
                    s(&m["code"]),
                    s(&r["kind"]),
                    s(&r["namespace"]),
                    s(&r["name"]),
                )
            })
            .collect();
        let expects_none = rows.iter().all(|r| r.code == "-");
        let mut case = Counts::default();
        for r in rows.iter().filter(|r| r.code != "-") {
            if !implemented.contains(r.code.as_str()) {
                continue;
            }
            let (kind, ns, name) = split_resource(&r.resource);
            let hit = got.iter().position(|(c, k, n, nm)| {
                *c == r.code && *k == kind && *nm == name && ns.as_ref().is_none_or(|ns| ns == n)
            });
            match hit {
                Some(i) => {
                    got.remove(i);
                    case.produced += 1;
                }
                None => {
                    case.missed += 1;
                    eprintln!("  missed  {test}: {} {}", r.code, r.resource);
                }
            }
        }
        for (c, k, n, nm) in &got {
            let n = if n.is_empty() {
                String::new()
            } else {
                format!("{n}/")
            };
            eprintln!("  extra   {test}: {c} {k} {n}{nm}");
            if expects_none {
                case.extra_where_none += 1;
                problems.push(format!(
                    "{test}: Istio expects no message, skiff gives {c} {k} {n}{nm}"
                ));
            } else {
                case.extra += 1;
            }
        }
        counts.produced += case.produced;
        counts.missed += case.missed;
        counts.extra += case.extra;
        counts.extra_where_none += case.extra_where_none;
    }
    for s in &skipped {
        eprintln!("  left out {s}");
    }
    eprintln!(
        "Istio analyzer cases: {run} run, {} left out; expected messages produced {}, missed {}; \
         extra messages {} in cases with expectations, {} where Istio expects none",
        skipped.len(),
        counts.produced,
        counts.missed,
        counts.extra,
        counts.extra_where_none
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        counts.produced >= PRODUCED_FLOOR,
        "expected messages produced fell to {} (floor {PRODUCED_FLOOR})",
        counts.produced
    );
}
