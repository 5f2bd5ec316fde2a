//! What a discovery client sends: arbitrary bytes decoded as a DiscoveryRequest, and
//! every text in it made printable as the server does before showing it. Decoding
//! must never panic, and what is shown has no control characters.
#![no_main]

use prost::Message;
use skiff_xds::proto::DiscoveryRequest;
use skiff_xds::server::printable;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(req) = DiscoveryRequest::decode(data) else {
        return;
    };
    let mut texts = vec![req.type_url.as_str(), req.version_info.as_str()];
    if let Some(node) = &req.node {
        texts.push(&node.id);
    }
    if let Some(e) = &req.error_detail {
        texts.push(&e.message);
    }
    for t in texts {
        let shown = printable(t, 256);
        assert!(!shown.chars().any(char::is_control));
    }
});
