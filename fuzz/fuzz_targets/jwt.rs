//! The JWT path of RequestAuthentication: arbitrary bytes as a token, parsed and checked
//! against a rule with an inline key set. It must never panic; every input is either a
//! verified token or a 401 with a reason.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    skiff_proxy::fuzzing::jwt(data);
});
