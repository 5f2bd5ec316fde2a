//! The seed corpus of the `xds_request` fuzz target (`fuzz/corpus/xds_request`),
//! replayed through the same checks as the target.

use std::path::PathBuf;

use prost::Message;
use skiff_xds::proto::DiscoveryRequest;
use skiff_xds::server::printable;

#[test]
fn xds_request_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/xds_request");
    let mut decoded = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let Ok(req) = DiscoveryRequest::decode(data.as_slice()) else {
            continue;
        };
        decoded += 1;
        let mut texts = vec![req.type_url.clone(), req.version_info.clone()];
        texts.extend(req.node.map(|n| n.id));
        texts.extend(req.error_detail.map(|e| e.message));
        for t in texts {
            assert!(!printable(&t, 256).chars().any(char::is_control), "{t:?}");
        }
    }
    assert!(decoded >= 2, "the corpus has well-formed requests");
}
