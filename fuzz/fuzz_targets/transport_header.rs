//! The transport header a peer proxy sends first on an inbound connection: arbitrary
//! bytes. It must never panic, and a complete header never claims more bytes than it
//! was given.
#![no_main]

use skiff_proxy::transport_header::{Parsed, parse};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Complete(_, used)) = parse(data) {
        assert!(used <= data.len());
    }
});
