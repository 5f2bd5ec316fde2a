//! Phase 3 against real tokens: keys made here (RSA from fixed test fixtures, EC and
//! Ed25519 generated), tokens signed with jsonwebtoken, JWKS served over loopback HTTP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{self as sig, KeyPair};
use base64::Engine;
use bytes::Bytes;
use http::request::Parts;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use serde_json::{Value, json};
use skiff_model::config::{ClaimToHeader, JwtHeader, JwtRule};

use super::token::b64url;
use super::*;

const ISS: &str = "https://idp.example.com";
const RSA_A: &[u8] = include_bytes!("testdata/rsa_a.der");
const RSA_B: &[u8] = include_bytes!("testdata/rsa_b.der");

/// A private key, its algorithm, and its public JWK.
struct Signer {
    key: EncodingKey,
    alg: Algorithm,
    kid: Option<String>,
    jwk: Value,
}

impl Signer {
    fn rsa(der: &[u8], alg: Algorithm, kid: &str) -> Signer {
        let key = EncodingKey::from_rsa_der(der);
        let jwk = Jwk::from_encoding_key(&key, alg).unwrap();
        Signer::new(key, alg, Some(kid), serde_json::to_value(jwk).unwrap())
    }

    fn ec(alg: Algorithm, kid: &str) -> Signer {
        let curve = match alg {
            Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            _ => &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
        };
        let pkcs8 = sig::EcdsaKeyPair::generate(curve)
            .unwrap()
            .to_pkcs8v1()
            .unwrap();
        let key = EncodingKey::from_ec_der(pkcs8.as_ref());
        let jwk = Jwk::from_encoding_key(&key, alg).unwrap();
        Signer::new(key, alg, Some(kid), serde_json::to_value(jwk).unwrap())
    }

    fn ed25519(kid: &str) -> Signer {
        let pair = sig::Ed25519KeyPair::generate().unwrap();
        let key = EncodingKey::from_ed_der(pair.to_pkcs8v1().unwrap().as_ref());
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(pair.public_key().as_ref())});
        Signer::new(key, Algorithm::EdDSA, Some(kid), jwk)
    }

    fn new(key: EncodingKey, alg: Algorithm, kid: Option<&str>, mut jwk: Value) -> Signer {
        if let Some(kid) = kid {
            jwk["kid"] = json!(kid);
        }
        Signer {
            key,
            alg,
            kid: kid.map(str::to_string),
            jwk,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

fn jwks(signers: &[&Signer]) -> String {
    json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    json!({"iss": ISS, "sub": "alice", "aud": "bookstore", "exp": now() + 3600})
}

/// A rule as the model compiles it, with Istio's default places.
fn rule(issuer: &str, jwks: String) -> JwtRule {
    JwtRule {
        policy: "prod/jwt".to_string(),
        issuer: issuer.to_string(),
        audiences: Vec::new(),
        jwks: Some(jwks),
        jwks_uri: None,
        from_headers: vec![JwtHeader {
            name: "Authorization".to_string(),
            prefix: "Bearer ".to_string(),
        }],
        from_params: vec!["access_token".to_string()],
        from_cookies: Vec::new(),
        forward_original_token: false,
        output_claim_to_headers: Vec::new(),
        output_payload_to_header: None,
        timeout: Duration::from_secs(5),
        space_delimited_claims: vec!["permission".to_string(), "scope".to_string()],
    }
}

fn compile(rules: &[JwtRule]) -> JwtRules {
    JwtRules::compile(rules, &JwksCache::new()).unwrap()
}

fn request(uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut builder = http::Request::builder().uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

fn bearer(token: &str) -> Parts {
    request("/books", &[("authorization", &format!("Bearer {token}"))])
}

async fn rejected(rules: &JwtRules, mut parts: Parts) -> JwtRejection {
    rules.authenticate(&mut parts).await.unwrap_err()
}

async fn accepted(rules: &JwtRules, parts: &mut Parts) -> Arc<VerifiedJwt> {
    rules
        .authenticate(parts)
        .await
        .unwrap()
        .expect("a verified token")
}

#[tokio::test]
async fn a_valid_token_gives_the_principal_and_claims() {
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let mut r = rule(ISS, jwks(&[&key]));
    r.audiences = vec!["bookstore".to_string()];
    let rules = compile(&[r]);
    assert!(!rules.is_empty());
    let mut claims = claims();
    claims["azp"] = json!("web");
    let mut parts = bearer(&key.sign(&claims));
    let jwt = accepted(&rules, &mut parts).await;
    assert_eq!(jwt.principal(), "https://idp.example.com/alice");
    assert_eq!(jwt.issuer, ISS);
    assert_eq!(jwt.subject, "alice");
    assert_eq!(jwt.audiences, ["bookstore"]);
    assert_eq!(jwt.presenter.as_deref(), Some("web"));
    assert_eq!(&*jwt.policy, "prod/jwt");
    assert_eq!(jwt.claims["exp"], claims["exp"]);
    // forwardOriginalToken is false: the token does not reach the app.
    assert!(parts.headers.get("authorization").is_none());
}

#[tokio::test]
async fn rs384_rs512_es256_es384_and_eddsa_verify() {
    let signers = [
        Signer::rsa(RSA_A, Algorithm::RS384, "rs384"),
        Signer::rsa(RSA_B, Algorithm::RS512, "rs512"),
        Signer::ec(Algorithm::ES256, "es256"),
        Signer::ec(Algorithm::ES384, "es384"),
        Signer::ed25519("ed"),
    ];
    let rules = compile(&[rule(ISS, jwks(&signers.iter().collect::<Vec<_>>()))]);
    for signer in &signers {
        let jwt = accepted(&rules, &mut bearer(&signer.sign(&claims()))).await;
        assert_eq!(jwt.subject, "alice", "{:?}", signer.alg);
    }
}

#[tokio::test]
async fn expiry_and_not_before_allow_sixty_seconds_of_skew() {
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let rules = compile(&[rule(ISS, jwks(&[&key]))]);
    let with = |name: &str, at: u64| {
        let mut c = claims();
        c[name] = json!(at);
        bearer(&key.sign(&c))
    };
    let r = rejected(&rules, with("exp", now() - 120)).await;
    assert_eq!(r.reason, "Jwt is expired");
    assert_eq!(r.policy.as_deref(), Some("prod/jwt"));
    assert_eq!(r.issuer.as_deref(), Some(ISS));
    assert!(
        r.to_string().contains("RequestAuthentication prod/jwt"),
        "{r}"
    );
    accepted(&rules, &mut with("exp", now() - 30)).await;

    let r = rejected(&rules, with("nbf", now() + 120)).await;
    assert_eq!(r.reason, "Jwt not yet valid");
    accepted(&rules, &mut with("nbf", now() + 30)).await;

    // No exp at all: Envoy does not require one.
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    accepted(&rules, &mut bearer(&key.sign(&c))).await;
}

#[tokio::test]
async fn a_token_of_another_issuer_is_refused() {
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let rules = compile(&[rule(ISS, jwks(&[&key]))]);
    let mut c = claims();
    c["iss"] = json!("https://evil.example.com");
    let r = rejected(&rules, bearer(&key.sign(&c))).await;
    assert_eq!(r.reason, "Jwt issuer is not configured");
    assert_eq!(r.policy, None);
    assert_eq!(r.issuer.as_deref(), Some("https://evil.example.com"));
    assert!(r.detail.contains(ISS), "names the accepted issuers: {r}");
}

#[tokio::test]
async fn audiences_must_match_one_allowed() {
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let mut r = rule(ISS, jwks(&[&key]));
    r.audiences = vec![
        "https://bookstore.example.com/".to_string(),
        "shop".to_string(),
    ];
    let rules = compile(&[r]);
    let with = |aud: Value| {
        let mut c = claims();
        c["aud"] = aud;
        bearer(&key.sign(&c))
    };
    let r = rejected(&rules, with(json!("other"))).await;
    assert_eq!(r.reason, "Audiences in Jwt are not allowed");
    let r = rejected(&rules, with(json!(["x", "y"]))).await;
    assert_eq!(r.reason, "Audiences in Jwt are not allowed");
    let mut no_aud = claims();
    no_aud.as_object_mut().unwrap().remove("aud");
    let r = rejected(&rules, bearer(&key.sign(&no_aud))).await;
    assert_eq!(r.reason, "Audiences in Jwt are not allowed");
    // A list with one allowed; scheme and trailing slash do not count (Envoy).
    let jwt = accepted(&rules, &mut with(json!(["x", "shop"]))).await;
    assert_eq!(jwt.audiences, ["x", "shop"]);
    accepted(&rules, &mut with(json!("bookstore.example.com"))).await;
}

#[tokio::test]
async fn a_signature_of_another_key_is_refused() {
    let good = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let forger = Signer::rsa(RSA_B, Algorithm::RS256, "a");
    let rules = compile(&[rule(ISS, jwks(&[&good]))]);
    let r = rejected(&rules, bearer(&forger.sign(&claims()))).await;
    assert_eq!(r.reason, "Jwt verification fails");
    // Another kid: no key to try.
    let stranger = Signer::rsa(RSA_B, Algorithm::RS256, "b");
    let r = rejected(&rules, bearer(&stranger.sign(&claims()))).await;
    assert_eq!(
        r.reason,
        "Jwks doesn't have key to match kid or alg from Jwt"
    );
    // An EC token against RSA keys: no key of its family.
    let ec = Signer::ec(Algorithm::ES256, "a");
    let r = rejected(&rules, bearer(&ec.sign(&claims()))).await;
    assert_eq!(
        r.reason,
        "Jwks doesn't have key to match kid or alg from Jwt"
    );
    // An HMAC token "signed" with the RSA key's public modulus: no HMAC key to use.
    let n = good.jwk["n"].as_str().unwrap().as_bytes();
    let hs = Signer::new(
        EncodingKey::from_secret(n),
        Algorithm::HS256,
        Some("a"),
        json!({}),
    );
    let r = rejected(&rules, bearer(&hs.sign(&claims()))).await;
    assert_eq!(
        r.reason,
        "Jwks doesn't have key to match kid or alg from Jwt"
    );
    // A token whose payload was changed after signing.
    let token = good.sign(&claims());
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut forged = claims();
    forged["sub"] = json!("admin");
    let payload = b64url(forged.to_string().as_bytes());
    parts[1] = &payload;
    let r = rejected(&rules, bearer(&parts.join("."))).await;
    assert_eq!(r.reason, "Jwt verification fails");
}

#[tokio::test]
async fn malformed_tokens_are_refused_in_envoys_words() {
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let rules = compile(&[rule(ISS, jwks(&[&key]))]);
    let part = |v: &Value| b64url(v.to_string().as_bytes());
    let good_payload = part(&claims());
    let sig = b64url(b"signature");
    let cases = [
        (
            "abc",
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        (
            "a.b",
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        (
            "a.b.c.d",
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        (
            &format!("!!!.{good_payload}.{sig}"),
            "Jwt header is an invalid Base64url encoded",
        ),
        (
            &format!("{}.{good_payload}.{sig}", b64url(b"{not json")),
            "Jwt header is an invalid JSON",
        ),
        (
            &format!("{}.{good_payload}.{sig}", part(&json!({"typ": "JWT"}))),
            "Jwt header [alg] field is required and must be a string",
        ),
        (
            &format!("{}.{good_payload}.{sig}", part(&json!({"alg": "none"}))),
            "Jwt header [alg] \"none\" is not supported",
        ),
        (
            &format!("{}.{good_payload}.", part(&json!({"alg": "none"}))),
            "Jwt header [alg] \"none\" is not supported",
        ),
        (
            &format!("{}.%%%.{sig}", part(&json!({"alg": "RS256"}))),
            "Jwt payload is an invalid Base64url encoded",
        ),
        (
            &format!(
                "{}.{}.{sig}",
                part(&json!({"alg": "RS256"})),
                b64url(b"[1,2]")
            ),
            "Jwt payload is an invalid JSON",
        ),
        (
            &format!("{}.{good_payload}.***", part(&json!({"alg": "RS256"}))),
            "Jwt signature is an invalid Base64url encoded",
        ),
        (
            &format!("{}.{good_payload}.", part(&json!({"alg": "RS256"}))),
            "Jwt signature is an invalid Base64url encoded",
        ),
        (
            &format!(
                "{}.{}.{sig}",
                part(&json!({"alg": "RS256"})),
                part(&json!({"iss": ISS, "exp": "soon"}))
            ),
            "Jwt payload [exp] field is not a positive integer",
        ),
    ];
    for (token, reason) in cases {
        let r = rejected(&rules, bearer(token)).await;
        assert_eq!(r.reason, reason, "token {token:?}");
    }
}

#[tokio::test]
async fn no_token_passes_without_a_principal() {
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let rules = compile(&[rule(ISS, jwks(&[&key]))]);
    let mut parts = request("/books?q=1", &[]);
    assert!(rules.authenticate(&mut parts).await.unwrap().is_none());
    // Another scheme in Authorization is not a token for this rule.
    let mut parts = request("/", &[("authorization", "Basic dXNlcjpwYXNz")]);
    assert!(rules.authenticate(&mut parts).await.unwrap().is_none());
    assert!(parts.headers.contains_key("authorization"), "left alone");
    // "Bearer " and nothing: a header value's trailing space is not part of it.
    let mut parts = request("/", &[("authorization", "Bearer ")]);
    assert!(rules.authenticate(&mut parts).await.unwrap().is_none());
    assert!(JwtRules::default().is_empty());
}

#[tokio::test]
async fn custom_headers_with_their_prefixes() {
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let mut r = rule(ISS, jwks(&[&key]));
    r.from_headers = vec![
        JwtHeader {
            name: "X-Token".to_string(),
            prefix: "Token ".to_string(),
        },
        JwtHeader {
            name: "x-jwt-assertion".to_string(),
            prefix: String::new(),
        },
    ];
    r.from_params = Vec::new();
    let rules = compile(&[r]);
    let token = key.sign(&claims());
    let mut parts = request("/", &[("x-token", &format!("token {token}"))]);
    accepted(&rules, &mut parts).await;
    assert!(!parts.headers.contains_key("x-token"));
    accepted(&rules, &mut request("/", &[("x-jwt-assertion", &token)])).await;
    // Authorization is no longer a place once others are named.
    let mut parts = bearer(&token);
    assert!(rules.authenticate(&mut parts).await.unwrap().is_none());
    // The wrong prefix: no token there.
    let mut parts = request("/", &[("x-token", &format!("Bearer {token}"))]);
    assert!(rules.authenticate(&mut parts).await.unwrap().is_none());
}

#[tokio::test]
async fn query_parameters_and_their_removal() {
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let mut r = rule(ISS, jwks(&[&key]));
    r.from_params = vec!["my_token".to_string()];
    let rules = compile(&[r.clone()]);
    let token = key.sign(&claims());
    let mut parts = request(&format!("http://shop/p?a=1&my_token={token}&b=2"), &[]);
    accepted(&rules, &mut parts).await;
    assert_eq!(parts.uri.to_string(), "http://shop/p?a=1&b=2");
    let mut parts = request(&format!("/p?my_token={token}"), &[]);
    accepted(&rules, &mut parts).await;
    assert_eq!(parts.uri.to_string(), "/p");
    // Kept when forwardOriginalToken.
    r.forward_original_token = true;
    let rules = compile(&[r]);
    let uri = format!("/p?my_token={token}");
    let mut parts = request(&uri, &[]);
    accepted(&rules, &mut parts).await;
    assert_eq!(parts.uri.to_string(), uri);
    // Istio's default place: access_token.
    let rules = compile(&[rule(ISS, jwks(&[&key]))]);
    accepted(
        &rules,
        &mut request(&format!("/p?access_token={token}"), &[]),
    )
    .await;
}

#[tokio::test]
async fn cookies() {
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let mut r = rule(ISS, jwks(&[&key]));
    r.from_headers = Vec::new();
    r.from_params = Vec::new();
    r.from_cookies = vec!["id_token".to_string()];
    let rules = compile(&[r]);
    let token = key.sign(&claims());
    let cookie = format!("session=xyz; id_token={token}; theme=dark");
    let mut parts = request("/", &[("cookie", &cookie)]);
    accepted(&rules, &mut parts).await;
    let mut parts = request("/", &[("cookie", "session=xyz")]);
    assert!(rules.authenticate(&mut parts).await.unwrap().is_none());
    let r = rejected(&rules, request("/", &[("cookie", "id_token=garbage")])).await;
    assert_eq!(r.detail, "token in cookie id_token");
}

#[tokio::test]
async fn forward_original_token_keeps_the_header() {
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let mut r = rule(ISS, jwks(&[&key]));
    r.forward_original_token = true;
    let rules = compile(&[r]);
    let token = key.sign(&claims());
    let mut parts = bearer(&token);
    accepted(&rules, &mut parts).await;
    assert_eq!(
        parts.headers["authorization"],
        format!("Bearer {token}").as_str()
    );
}

#[tokio::test]
async fn claims_and_payload_are_written_to_headers_and_cannot_be_spoofed() {
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let mut r = rule(ISS, jwks(&[&key]));
    let to = |header: &str, claim: &str| ClaimToHeader {
        header: header.to_string(),
        claim: claim.to_string(),
    };
    r.output_claim_to_headers = vec![
        to("x-email", "email"),
        to("x-level", "level"),
        to("x-admin", "admin"),
        to("x-team", "org.team"),
        to("x-groups", "groups"),
        to("x-missing", "missing"),
    ];
    r.output_payload_to_header = Some("x-jwt-payload".to_string());
    let rules = compile(&[r]);
    let mut c = claims();
    c["email"] = json!("alice@example.com");
    c["level"] = json!(7);
    c["admin"] = json!(true);
    c["org"] = json!({"team": "books"});
    c["groups"] = json!(["a", "b"]);
    let token = key.sign(&c);
    let mut parts = request(
        "/",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("x-groups", "spoofed"),
            ("x-missing", "spoofed"),
        ],
    );
    accepted(&rules, &mut parts).await;
    let h = &parts.headers;
    assert_eq!(h["x-email"], "alice@example.com");
    assert_eq!(h["x-level"], "7");
    assert_eq!(h["x-admin"], "true");
    assert_eq!(h["x-team"], "books");
    assert!(
        !h.contains_key("x-groups"),
        "lists are not copied; the client's is gone"
    );
    assert!(!h.contains_key("x-missing"));
    let payload = h["x-jwt-payload"].to_str().unwrap();
    assert_eq!(payload, token.split('.').nth(1).unwrap());
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&decoded).unwrap(), c);

    // Without a token, a client's own values are removed as well.
    let mut parts = request(
        "/",
        &[("x-email", "mallory@example.com"), ("x-jwt-payload", "e30")],
    );
    assert!(rules.authenticate(&mut parts).await.unwrap().is_none());
    assert!(parts.headers.is_empty(), "{:?}", parts.headers);
}

#[tokio::test]
async fn nested_and_space_delimited_claims() {
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let mut r = rule(ISS, jwks(&[&key]));
    r.space_delimited_claims = vec!["permission".into(), "realm.perms".into(), "scope".into()];
    let rules = compile(&[r]);
    let mut c = claims();
    c["scope"] = json!("read  write");
    c["groups"] = json!(["dev", "ops", 3]);
    c["realm"] = json!({"roles": ["admin"], "perms": "a b", "name": "x y"});
    c["level"] = json!(7);
    let jwt = accepted(&rules, &mut bearer(&key.sign(&c))).await;
    assert_eq!(jwt.claim_values(&["scope"]), ["read", "write"]);
    assert_eq!(jwt.claim_values(&["groups"]), ["dev", "ops"]);
    assert_eq!(jwt.claim_values(&["realm", "roles"]), ["admin"]);
    assert_eq!(jwt.claim_values(&["realm", "perms"]), ["a", "b"]);
    assert_eq!(jwt.claim_values(&["realm", "name"]), ["x y"]);
    assert_eq!(jwt.claim_values(&["sub"]), ["alice"]);
    assert!(jwt.claim_values(&["level"]).is_empty());
    assert!(jwt.claim_values(&["realm", "nope"]).is_empty());
    assert!(jwt.claim_values(&[]).is_empty());
}

#[tokio::test]
async fn every_token_of_a_rule_must_verify() {
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let rules = compile(&[rule(ISS, jwks(&[&key]))]);
    let good = key.sign(&claims());
    let mut expired = claims();
    expired["exp"] = json!(now() - 3600);
    let bad = key.sign(&expired);
    let parts = request(
        &format!("/?access_token={bad}"),
        &[("authorization", &format!("Bearer {good}"))],
    );
    let r = rejected(&rules, parts).await;
    assert_eq!(r.reason, "Jwt is expired");
    assert_eq!(r.detail, "token in query parameter access_token");
}

#[tokio::test]
async fn each_issuer_is_verified_by_its_own_rule() {
    let a = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let b = Signer::ec(Algorithm::ES256, "b");
    let mut rule_b = rule("https://b.example.com", jwks(&[&b]));
    rule_b.policy = "prod/b".to_string();
    let rules = compile(&[rule(ISS, jwks(&[&a])), rule_b]);
    let mut c = claims();
    c["iss"] = json!("https://b.example.com");
    let jwt = accepted(&rules, &mut bearer(&b.sign(&c))).await;
    assert_eq!(jwt.principal(), "https://b.example.com/alice");
    assert_eq!(&*jwt.policy, "prod/b");
    // Issuer b's token, signed by a's key: b's rule says why.
    let r = rejected(
        &rules,
        bearer(&Signer::rsa(RSA_A, Algorithm::RS256, "b").sign(&c)),
    )
    .await;
    assert_eq!(
        r.reason,
        "Jwks doesn't have key to match kid or alg from Jwt"
    );
    assert_eq!(r.policy.as_deref(), Some("prod/b"));
}

#[tokio::test]
async fn one_rule_verifying_its_token_is_enough() {
    // Istio's requirement is "any provider", so rule b's good token in its own header
    // lets the request through beside a bad token in rule a's place.
    let a = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let b = Signer::ec(Algorithm::ES256, "b");
    let mut rule_b = rule("https://b.example.com", jwks(&[&b]));
    rule_b.from_headers = vec![JwtHeader {
        name: "x-b".into(),
        prefix: String::new(),
    }];
    rule_b.from_params = Vec::new();
    let rules = compile(&[rule(ISS, jwks(&[&a])), rule_b]);
    let mut c = claims();
    c["iss"] = json!("https://b.example.com");
    let mut parts = request(
        "/",
        &[("authorization", "Bearer not-a-jwt"), ("x-b", &b.sign(&c))],
    );
    let jwt = accepted(&rules, &mut parts).await;
    assert_eq!(jwt.issuer, "https://b.example.com");
    assert!(
        parts.headers.contains_key("authorization"),
        "not rule b's to remove"
    );
    assert!(!parts.headers.contains_key("x-b"));
}

#[test]
fn the_authenticate_future_is_send() {
    fn send<T: Send>(_: &T) {}
    let rules = compile(&[rule(ISS, jwks(&[&Signer::ec(Algorithm::ES256, "k")]))]);
    let mut parts = request("/", &[]);
    send(&rules.authenticate(&mut parts));
    fn shared<T: Send + Sync>() {}
    shared::<JwtRules>();
    shared::<JwksCache>();
    shared::<VerifiedJwt>();
    shared::<JwtRejection>();
}

#[test]
fn scope_and_permission_are_always_space_delimited() {
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let mut r = rule(ISS, jwks(&[&key]));
    r.space_delimited_claims = vec!["roles".into()];
    let rules = compile(&[r]);
    let mut c = claims();
    c["scope"] = json!("a b");
    c["permission"] = json!("c d");
    c["roles"] = json!("e f");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let jwt = runtime.block_on(accepted(&rules, &mut bearer(&key.sign(&c))));
    assert_eq!(jwt.claim_values(&["scope"]), ["a", "b"]);
    assert_eq!(jwt.claim_values(&["permission"]), ["c", "d"]);
    assert_eq!(jwt.claim_values(&["roles"]), ["e", "f"]);
}

#[test]
fn bad_rules_are_refused_with_the_policy_named() {
    let cache = JwksCache::new();
    let compile_err = |r: JwtRule| JwtRules::compile(&[r], &cache).unwrap_err().to_string();
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let e = compile_err(rule(ISS, "{\"keys\": []}".to_string()));
    assert!(
        e.contains("RequestAuthentication prod/jwt") && e.contains("no usable key"),
        "{e}"
    );
    let e = compile_err(rule(ISS, "not json".to_string()));
    assert!(e.contains("jwks is not valid JSON"), "{e}");
    let mut r = rule(ISS, jwks(&[&key]));
    r.jwks = None;
    r.jwks_uri = Some("ftp://keys.example.com/jwks".to_string());
    assert!(compile_err(r).contains("must be an http:// or https:// URL"));
    let mut r = rule(ISS, jwks(&[&key]));
    r.output_payload_to_header = Some("bad header".to_string());
    assert!(compile_err(r).contains("not a valid header name"));
    assert!(compile_err(rule("", jwks(&[&key]))).contains("issuer is empty"));
}

#[tokio::test]
async fn a_rule_without_keys_and_no_url_issuer_refuses_its_tokens() {
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let mut r = rule("accounts-service", String::new());
    r.jwks = None;
    let rules = compile(&[r]);
    let mut c = claims();
    c["iss"] = json!("accounts-service");
    let r = rejected(&rules, bearer(&key.sign(&c))).await;
    assert!(r.reason.starts_with("jwks fetch failed"), "{r}");
    assert!(r.reason.contains("set jwksUri"), "{r}");
}

#[tokio::test]
async fn keys_are_found_through_openid_discovery_without_jwks_uri() {
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let issuer = format!("http://{addr}/realms/shop/");
    let discovery = json!({"issuer": issuer, "jwks_uri": format!("http://{addr}/certs")});
    let fetches = serve_on(
        listener,
        vec![
            (
                "/realms/shop/.well-known/openid-configuration".to_string(),
                discovery.to_string(),
            ),
            ("/certs".to_string(), jwks(&[&key])),
        ],
    );
    let mut r = rule(&issuer, String::new());
    r.jwks = None;
    let rules = compile(&[r]);
    let mut c = claims();
    c["iss"] = json!(issuer);
    for _ in 0..2 {
        let jwt = accepted(&rules, &mut bearer(&key.sign(&c))).await;
        assert_eq!(jwt.principal(), format!("{issuer}/alice"));
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "one discovery, one jwks");

    // A discovery document that is not there: refused, saying which.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve_on(listener, Vec::new());
    let issuer = format!("http://{addr}");
    let mut r = rule(&issuer, String::new());
    r.jwks = None;
    c["iss"] = json!(issuer);
    let r = rejected(&compile(&[r]), bearer(&key.sign(&c))).await;
    assert!(
        r.reason
            .starts_with("jwks fetch failed: OpenID discovery http://"),
        "{r}"
    );
    assert!(r.reason.contains("answered 404 Not Found"), "{r}");
}

/// A JWKS server on loopback that counts its requests and answers `body` on any path.
async fn serve(body: String) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, serve_on(listener, vec![(String::new(), body)]))
}

/// Serves `routes` (path, body; an empty path matches any), 404 otherwise; counts
/// the requests.
fn serve_on(listener: tokio::net::TcpListener, routes: Vec<(String, String)>) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let routes = Arc::new(routes);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (routes, counter) = (routes.clone(), counter.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let found = routes
                        .iter()
                        .find(|(path, _)| path.is_empty() || path == req.uri().path());
                    let mut response = http::Response::new(Full::new(Bytes::from(
                        found.map(|(_, body)| body.clone()).unwrap_or_default(),
                    )));
                    if found.is_none() {
                        *response.status_mut() = http::StatusCode::NOT_FOUND;
                    }
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    count
}

fn remote_rule(uri: String, timeout: Duration) -> JwtRule {
    let mut r = rule(ISS, String::new());
    r.jwks = None;
    r.jwks_uri = Some(uri);
    r.timeout = timeout;
    r
}

#[tokio::test]
async fn jwks_uri_is_fetched_once_and_cached() {
    let key = Signer::ed25519("ed");
    let (addr, fetches) = serve(jwks(&[&key])).await;
    let cache = JwksCache::new();
    let r = remote_rule(format!("http://{addr}/jwks.json"), Duration::from_secs(5));
    let rules = JwtRules::compile(std::slice::from_ref(&r), &cache).unwrap();
    for _ in 0..3 {
        accepted(&rules, &mut bearer(&key.sign(&claims()))).await;
        // Lets the background prefetch run its course too.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A new snapshot with the same URI shares the keys.
    let rules = JwtRules::compile(&[r], &cache).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    accepted(&rules, &mut bearer(&key.sign(&claims()))).await;
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn jwks_are_refetched_after_the_refresh_interval() {
    let key = Signer::ec(Algorithm::ES256, "k");
    let (addr, fetches) = serve(jwks(&[&key])).await;
    let cache = JwksCache::with_refresh(Duration::from_millis(50));
    let r = remote_rule(format!("http://{addr}/"), Duration::from_secs(5));
    let rules = JwtRules::compile(&[r], &cache).unwrap();
    accepted(&rules, &mut bearer(&key.sign(&claims()))).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    accepted(&rules, &mut bearer(&key.sign(&claims()))).await;
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn concurrent_first_requests_share_one_fetch() {
    let key = Signer::ec(Algorithm::ES384, "k");
    let (addr, fetches) = serve(jwks(&[&key])).await;
    let uri = format!("http://{addr}/");
    // Compiled outside a runtime context would not prefetch; here the requests race it.
    let rules = compile(&[remote_rule(uri, Duration::from_secs(5))]);
    let token = key.sign(&claims());
    let all = (0..8).map(|_| {
        let rules = rules.clone();
        let token = token.clone();
        tokio::spawn(async move { rules.authenticate(&mut bearer(&token)).await.is_ok() })
    });
    for ok in futures_util::future::join_all(all).await {
        assert!(ok.unwrap());
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn keys_fetched_before_serve_while_a_refresh_fails() {
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = jwks(&[&key]);
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = answered.clone();
    // Answers the JWKS once, then 500 to every refresh.
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (body, counter) = (body.clone(), counter.clone());
            tokio::spawn(async move {
                let service = service_fn(move |_req| {
                    let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
                    let mut response = http::Response::new(Full::new(Bytes::from(body.clone())));
                    if !first {
                        *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let cache = JwksCache::with_refresh(Duration::from_millis(50));
    let r = remote_rule(format!("http://{addr}/"), Duration::from_secs(5));
    let rules = JwtRules::compile(&[r], &cache).unwrap();
    accepted(&rules, &mut bearer(&key.sign(&claims()))).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    accepted(&rules, &mut bearer(&key.sign(&claims()))).await;
    assert_eq!(answered.load(Ordering::SeqCst), 2, "the refresh was tried");
    // A forged token is still refused with the stale keys.
    let forged = Signer::rsa(RSA_B, Algorithm::RS256, "a").sign(&claims());
    assert_eq!(
        rejected(&rules, bearer(&forged)).await.reason,
        "Jwt verification fails"
    );
}

#[tokio::test]
async fn a_down_jwks_server_lets_no_token_through() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let r = remote_rule(format!("http://{addr}/jwks"), Duration::from_secs(5));
    let rules = compile(&[r]);
    for _ in 0..2 {
        let r = rejected(&rules, bearer(&key.sign(&claims()))).await;
        assert!(r.reason.starts_with("jwks fetch failed: http://"), "{r}");
        assert!(r.reason.contains(&addr.to_string()), "{r}");
    }
    // A request without a token still passes: AuthorizationPolicy decides.
    assert!(
        rules
            .authenticate(&mut request("/", &[]))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_jwks_server_answering_garbage_lets_no_token_through() {
    let (addr, _) = serve("<html>not a jwks</html>".to_string()).await;
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let rules = compile(&[remote_rule(
        format!("http://{addr}/"),
        Duration::from_secs(5),
    )]);
    let r = rejected(&rules, bearer(&key.sign(&claims()))).await;
    assert!(
        r.reason.starts_with("jwks fetch failed") && r.reason.contains("not valid JSON"),
        "{r}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_jwks_fetch_that_times_out_lets_no_token_through() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
    let rules = compile(&[remote_rule(
        format!("http://{addr}/"),
        Duration::from_secs(3),
    )]);
    let r = rejected(&rules, bearer(&key.sign(&claims()))).await;
    assert!(r.reason.starts_with("jwks fetch failed"), "{r}");
    assert!(
        r.reason
            .contains("no answer within the rule's timeout of 3s"),
        "{r}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever bytes a client sends where tokens are looked for, phase 3 answers
    /// (Ok or a 401) and never panics.
    #[test]
    fn authenticate_never_panics(
        value in proptest::collection::vec(any::<u8>(), 0..200),
        dots in "[A-Za-z0-9_=.-]{0,120}",
        query in "[ -~]{0,80}",
    ) {
        let key = Signer::rsa(RSA_A, Algorithm::RS256, "a");
        let mut r = rule(ISS, jwks(&[&key]));
        r.from_cookies = vec!["tok".to_string()];
        r.output_claim_to_headers = vec![ClaimToHeader { header: "x-sub".into(), claim: "sub".into() }];
        let rules = compile(&[r]);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_bytes(&value) {
            headers.insert(http::header::AUTHORIZATION, v.clone());
            headers.insert(http::header::COOKIE, v);
        }
        let mut with_prefix = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(&format!("Bearer {dots}")) {
            with_prefix.insert(http::header::AUTHORIZATION, v);
        }
        let uri = format!("/p?access_token={}", query.replace(' ', "%20").replace('#', "%23"));
        for map in [headers, with_prefix] {
            let mut parts = request("/", &[]);
            parts.headers = map;
            if let Ok(u) = uri.parse::<http::Uri>() {
                parts.uri = u;
            }
            let _ = runtime.block_on(rules.authenticate(&mut parts));
        }
    }
}
