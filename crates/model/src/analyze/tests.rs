//! Each code: a fixture that triggers it and a near miss that must not.

use super::{Message, analyze};
use crate::MeshOptions;

fn run(yaml: &str) -> Vec<Message> {
    let loaded = skiff_api::load_str("test.yaml", yaml);
    analyze(&loaded, MeshOptions::default())
}

fn codes(yaml: &str, code: &str) -> Vec<Message> {
    run(yaml).into_iter().filter(|m| m.code == code).collect()
}
