//! Every file in `fixtures/invalid/` must be rejected with exactly the errors listed in
//! its sibling `.expected` file: severity, line:column, resource, field path and message.

use std::path::{Path, PathBuf};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// The errors of one file as `error: LINE:COL: rest`, without the file name.
fn errors(file: &Path) -> Vec<String> {
    let loaded = skiff_api::load(&[file]).unwrap();
    let prefix = format!("{}:", file.display());
    loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| {
            let text = d.to_string();
            let rest = text
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("diagnostic without the file name: {text}"));
            format!("{}: {rest}", d.severity)
        })
        .collect()
}

#[test]
fn at_least_forty_invalid_fixtures() {
    let n = fixtures().len();
    assert!(n >= 40, "only {n} invalid fixtures");
}

#[test]
fn each_invalid_fixture_gives_exactly_its_expected_errors() {
    let mut failures = Vec::new();
    for file in fixtures() {
        let expected_file = file.with_extension("expected");
        let expected: Vec<String> = std::fs::read_to_string(&expected_file)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_file.display()))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        assert!(
            !expected.is_empty(),
            "{} lists no error",
            expected_file.display()
        );
        let mut got = errors(&file);
        let mut want = expected.clone();
        got.sort();
        want.sort();
        if got != want {
            failures.push(format!(
                "{}\n  expected:\n    {}\n  got:\n    {}",
                file.display(),
                want.join("\n    "),
                got.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_resources_are_left_out_of_the_set() {
    for file in fixtures() {
        let loaded = skiff_api::load(&[&file]).unwrap();
        assert!(
            loaded.resources.is_empty(),
            "{}: a rejected resource was kept",
            file.display()
        );
    }
}
