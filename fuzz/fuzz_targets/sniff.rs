//! Protocol detection on ports of unspecified protocol: arbitrary first bytes. It must
//! never panic, and once it decides, more bytes never change its mind.
#![no_main]

use skiff_proxy::sniff::{Detected, detect};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let verdict = detect(data);
    if verdict != Detected::NeedMore {
        let mut more = data.to_vec();
        more.extend_from_slice(b"\r\n\r\n");
        assert_eq!(detect(&more), verdict);
    }
});
