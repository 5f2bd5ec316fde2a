//! The YAML loader: arbitrary text as a config file. Loading must never panic; bad
//! input is a diagnostic with a position.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = skiff_api::load_str("fuzz.yaml", text);
    }
});
