//! The h2c upgrade (`Upgrade: h2c`): the client's connection preface and SETTINGS are
//! read by hand, and the upgraded request is written as an HPACK-coded HEADERS frame by
//! hand. Arbitrary bytes through both; the frame must read back, through the `h2`
//! crate's decoder, as the very request that was upgraded.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    skiff_proxy::fuzzing::h2c(data);
});
