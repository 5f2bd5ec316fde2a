//! `skiff analyze` run as a process: output formats, exit codes by
//! `--failure-threshold`, `--suppress` and `-n`.

use std::path::PathBuf;
use std::process::Command;

fn broken() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/analyze/broken.yaml")
}

fn analyze(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("analyze")
        .args(args)
        .arg(broken())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

fn codes(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| m["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn log_output_is_istioctls_with_the_fix_under_each_message() {
    let (code, out) = analyze(&[]);
    assert_eq!(code, 79, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("Error [IST0101]"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.starts_with("Error [IST0101] (VirtualService prod/backend ")
            && line.contains("broken.yaml:24)")
            && line.ends_with("Referenced host not found: \"backedn.prod.svc.cluster.local\""),
        "{line}"
    );
    let next = out.lines().skip_while(|l| *l != line).nth(1).unwrap();
    assert!(next.starts_with("    fix: "), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("Warning [SKF0009]")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("Info [IST0118]")),
        "{out}"
    );
}

#[test]
fn exit_codes_follow_the_failure_threshold() {
    // The worst message is an Error: every threshold fails.
    for t in ["Info", "Warning", "Error"] {
        assert_eq!(analyze(&["--failure-threshold", t]).0, 79, "{t}");
    }
    // Without the Error, Warning and Info thresholds fail, Error does not.
    let no_error = ["-S", "IST0101=VirtualService backend.prod"];
    let with = |t: &'static str| [&no_error[..], &["--failure-threshold", t]].concat();
    assert_eq!(analyze(&with("Error")).0, 0);
    assert_eq!(analyze(&with("Warning")).0, 79);
    // Only the Info message left: only the Info threshold fails.
    let info_only = [
        "-S",
        "IST0101=VirtualService *",
        "-S",
        "SKF0009=VirtualService backend.prod",
    ];
    let with = |t: &'static str| [&info_only[..], &["--failure-threshold", t]].concat();
    assert_eq!(analyze(&with("Warning")).0, 0);
    assert_eq!(analyze(&with("Info")).0, 79);
    // A bad level is a usage error.
    assert_eq!(analyze(&["--failure-threshold", "Fatal"]).0, 2);
}

#[test]
fn json_is_an_array_of_messages_with_the_documented_fields() {
    let (_, out) = analyze(&["-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let m = v
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["code"] == "IST0101")
        .unwrap();
    assert_eq!(m["level"], "Error");
    assert_eq!(m["name"], "ReferencedResourceNotFound");
    assert_eq!(m["resource"]["kind"], "VirtualService");
    assert_eq!(m["resource"]["namespace"], "prod");
    assert_eq!(m["resource"]["name"], "backend");
    assert_eq!(m["field"], "spec.http[0].route[0].destination.host");
    assert_eq!(m["location"]["line"], 24);
    assert!(m["fix"].as_str().unwrap().contains("503"));
    assert_eq!(m["analyzer"], "virtualservice.DestinationHostAnalyzer");
    let mut all = codes(&out);
    all.sort();
    assert_eq!(all, ["IST0101", "IST0118", "SKF0001", "SKF0009"]);
    // The same run twice gives the same bytes.
    assert_eq!(analyze(&["-o", "json"]).1, out);
}

#[test]
fn yaml_output_holds_the_same_messages() {
    let (_, out) = analyze(&["-o", "yaml"]);
    assert!(out.contains("code: IST0101"), "{out}");
    assert!(out.contains("code: SKF0009"), "{out}");
}

#[test]
fn namespace_filter_and_suppressions() {
    let (code, out) = analyze(&["-n", "dev", "-o", "json"]);
    assert_eq!((code, codes(&out).len()), (0, 0), "{out}");
    let (_, out) = analyze(&["-n", "prod", "-o", "json"]);
    assert_eq!(codes(&out).len(), 4, "{out}");
    let (_, out) = analyze(&["-S", "IST0118=Service *.prod", "-o", "json"]);
    assert!(!codes(&out).contains(&"IST0118".to_string()), "{out}");
    let (_, out) = analyze(&["-S", "IST0118=Service other.prod", "-o", "json"]);
    assert!(codes(&out).contains(&"IST0118".to_string()), "{out}");
    // A malformed suppression is an error, not ignored.
    assert_eq!(analyze(&["-S", "IST0118"]).0, 1);
}

#[test]
fn a_clean_configuration_says_so_and_exits_zero() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/canary");
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["analyze", "--failure-threshold", "Info"])
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("No validation issues found"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_analyzes_what_the_running_control_plane_serves() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(broken(), dir.path().join("mesh.yaml")).unwrap();
    let options = skiff_control::ControlOptions {
        xds_listen: "127.0.0.1:0".parse().unwrap(),
        debug_listen: "127.0.0.1:0".parse().unwrap(),
        ..skiff_control::ControlOptions::new(dir.path())
    };
    let running = skiff_control::start(options, skiff_control::MeshCompiler::default())
        .await
        .unwrap();
    let debug = running.debug_addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["analyze", "--live", "-o", "json", "--control", &debug])
            .env_remove("SKIFF_CONTROL_DEBUG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(79), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let m = v
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["code"] == "IST0101")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        m["location"]["file"]
            .as_str()
            .unwrap()
            .ends_with("mesh.yaml"),
        "{m}"
    );
    // Nothing listening: a clear error, not an empty analysis.
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["analyze", "--live", "--control", "127.0.0.1:1"])
        .env_remove("SKIFF_CONTROL_DEBUG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the control plane"));
}
