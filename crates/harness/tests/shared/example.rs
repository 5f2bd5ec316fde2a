//! The files of an `examples/` directory, moved to the harness's fresh addresses.

#![allow(dead_code, reason = "each test uses a part")]

use std::path::Path;

use anyhow::{Context as _, Result};

/// The YAML files of `examples/<name>`, each `127.0.<net>.N` address turned into
/// `{{ip.<name>N}}` so that the harness gives the mesh fresh addresses.
pub(crate) fn example(name: &str, net: u8) -> Result<Vec<(String, String)>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    let prefix = format!("127.0.{net}.");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let mut text = std::fs::read_to_string(&path)?;
            while let Some(at) = text.find(&prefix) {
                let digits: String = text[at + prefix.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                text.replace_range(
                    at..at + prefix.len() + digits.len(),
                    &format!("{{{{ip.{name}{digits}}}}}"),
                );
            }
            let file = path.file_name().unwrap_or_default().to_string_lossy();
            files.push((file.into_owned(), text));
        }
    }
    files.sort();
    Ok(files)
}

/// `files` as the harness takes them.
pub(crate) fn borrowed(files: &[(String, String)]) -> Vec<(&str, &str)> {
    files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect()
}
