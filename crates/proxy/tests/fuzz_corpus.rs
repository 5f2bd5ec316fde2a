//! The committed seed corpus of the fuzz targets (`fuzz/seeds/`), replayed through the
//! same checks as the targets, so that every input that once mattered stays a test
//! even where cargo-fuzz does not run.

use std::path::PathBuf;

use skiff_proxy::sniff::sni::{self, Hello};
use skiff_proxy::sniff::{Detected, detect};
use skiff_proxy::transport_header::{Parsed, parse};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!inputs.is_empty(), "{} is empty", dir.display());
    inputs
}

#[test]
fn transport_header_corpus() {
    for data in corpus("transport_header") {
        if let Ok(Parsed::Complete(_, used)) = parse(&data) {
            assert!(used <= data.len());
        }
    }
}

#[test]
fn sniff_corpus() {
    for data in corpus("sniff") {
        let verdict = detect(&data);
        if verdict != Detected::NeedMore {
            let mut more = data.clone();
            more.extend_from_slice(b"\r\n\r\n");
            assert_eq!(detect(&more), verdict, "{data:?}");
        }
    }
}

#[test]
fn sni_corpus() {
    for data in corpus("sni") {
        if let Hello::Sni(name) = sni::parse(&data) {
            assert_eq!(name, name.to_ascii_lowercase());
        }
    }
}
