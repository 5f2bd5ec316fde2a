//! Entry points for the fuzz targets in `fuzz/` (compiled only under `cfg(fuzzing)`,
//! which cargo-fuzz sets).

use std::sync::OnceLock;

use skiff_model::config::JwtRule;

use crate::authn::{JwksCache, JwtRules};

/// Runs `data` as a bearer token through RequestAuthentication with an inline JWKS.
pub fn jwt(data: &[u8]) {
    static SETUP: OnceLock<(tokio::runtime::Runtime, JwtRules)> = OnceLock::new();
    let (rt, rules) = SETUP.get_or_init(|| {
        let rule = JwtRule {
            policy: "fuzz/jwt".into(),
            issuer: "https://idp.example.com".into(),
            audiences: vec!["fuzz".into()],
            // An EC P-256 key, so signature checks run on well-formed inputs.
            jwks: Some(
                r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#
                    .into(),
            ),
            jwks_uri: None,
            from_headers: vec![],
            from_params: vec![],
            from_cookies: vec![],
            forward_original_token: false,
            output_claim_to_headers: vec![],
            output_payload_to_header: None,
            timeout: std::time::Duration::from_secs(1),
            space_delimited_claims: vec![],
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let rules = JwtRules::compile(&[rule], &JwksCache::new()).expect("a valid rule");
        (rt, rules)
    });
    let mut value = b"Bearer ".to_vec();
    value.extend_from_slice(data);
    let Ok(value) = http::HeaderValue::from_bytes(&value) else {
        return;
    };
    let (mut parts, ()) = http::Request::get("/")
        .body(())
        .expect("a request")
        .into_parts();
    parts.headers.insert(http::header::AUTHORIZATION, value);
    let _ = rt.block_on(rules.authenticate(&mut parts));
}

/// The h2c upgrade's hand-written HTTP/2: arbitrary bytes as the client's start and as
/// the upgraded request, whose HEADERS frame `h2` must read back unchanged.
pub fn h2c(data: &[u8]) {
    crate::http::h2c::fuzz_check(data);
}
