//! The ClientHello reader that routes TLS by SNI without terminating it: arbitrary bytes
//! as the start of a connection. It must never panic, and a server name it returns is
//! always lower-case.
#![no_main]

use skiff_proxy::sniff::sni::{Hello, parse};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Hello::Sni(name) = parse(data) {
        assert_eq!(name, name.to_ascii_lowercase());
    }
});
