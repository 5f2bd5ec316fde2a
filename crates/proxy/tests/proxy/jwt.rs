//! RequestAuthentication and AuthorizationPolicy together, through a real proxy: tokens
//! signed here (ES256), verified by the server's sidecar; request principals and
//! claims in authorization; a claim copied to a header the app reads.

use std::time::SystemTime;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use skiff_model::config::*;

use crate::mtls::*;
use crate::support::*;

const ISS: &str = "https://idp.example.com";

struct Signer {
    key: EncodingKey,
    jwk: Value,
}

impl Signer {
    fn new(kid: &str) -> Signer {
        let pkcs8 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .unwrap()
            .to_pkcs8v1()
            .unwrap();
        let key = EncodingKey::from_ec_der(pkcs8.as_ref());
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        Signer { key, jwk }
    }

    fn sign(&self, claims: Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = self.jwk["kid"].as_str().map(str::to_owned);
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(groups: &[&str]) -> Value {
    json!({"iss": ISS, "sub": "alice", "aud": "bookstore", "exp": now() + 600, "groups": groups})
}

/// The policies of the `bookstore` workload: tokens of the IdP, one required for every
/// request, and `/admin` only for the `admin` group.
fn bookstore_policies(signer: &Signer) -> (Vec<JwtRule>, Vec<AuthzPolicy>) {
    let rule = JwtRule {
        policy: "prod/jwt".into(),
        issuer: ISS.into(),
        audiences: vec!["bookstore".into()],
        jwks: Some(json!({"keys": [signer.jwk.clone()]}).to_string()),
        jwks_uri: None,
        from_headers: vec![],
        from_params: vec![],
        from_cookies: vec![],
        forward_original_token: false,
        output_claim_to_headers: vec![ClaimToHeader {
            header: "x-user".into(),
            claim: "sub".into(),
        }],
        output_payload_to_header: None,
        timeout: DEFAULT_JWKS_TIMEOUT,
        space_delimited_claims: vec![],
    };
    let require = AuthzPolicy {
        name: "prod/require-jwt".into(),
        action: AuthzAction::Allow,
        dry_run: false,
        rules: vec![AuthzRule {
            from: vec![AuthzSource {
                request_principals: vec!["*".into()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let admins = AuthzPolicy {
        name: "prod/admins-only".into(),
        action: AuthzAction::Deny,
        dry_run: false,
        rules: vec![AuthzRule {
            to: vec![AuthzOperation {
                paths: vec!["/admin*".into()],
                ..Default::default()
            }],
            when: vec![AuthzCondition {
                key: "request.auth.claims[groups]".into(),
                values: vec![],
                not_values: vec!["admin".into()],
            }],
            ..Default::default()
        }],
    };
    (vec![rule], vec![require, admins])
}

async fn send(proxy: std::net::SocketAddr, path: &str, token: Option<&str>) -> Reply {
    let mut c = Client::connect(proxy).await;
    let mut req = http::Request::get(format!("http://backend{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    c.send(req.body(Default::default()).unwrap()).await
}

#[tokio::test]
async fn tokens_principals_claims_and_headers_end_to_end() {
    let signer = Signer::new("k1");
    let (rules, policies) = bookstore_policies(&signer);
    let srv = server_with(None, &[MtlsMode::Permissive], policies).await;
    let mut config = srv.proxy.proxy.snapshot().unwrap().config().clone();
    config.policies.jwt_rules = rules;
    srv.proxy.proxy.apply("2", config).unwrap();
    let mut ep = srv.endpoint.clone();
    ep.mtls = false;
    let cli = client(None, ep).await;
    let out = cli.outbound();

    // A valid token: through, the claim reaches the app as a header, the token does not.
    let dev = signer.sign(claims(&["dev"]));
    let r = send(out, "/items", Some(&dev)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-seen-x-user"), "alice");
    assert_eq!(r.header("x-seen-authorization"), "");

    // `when` on a claim: /admin is denied to a token without the admin group...
    let r = send(out, "/admin/users", Some(&dev)).await;
    assert_eq!(r.status, 403);
    let line = srv.proxy.log_line("/admin/users").await;
    assert!(
        line.contains("rbac_access_denied_matched_policy[prod/admins-only]"),
        "{line}"
    );
    // ...and allowed to one with it.
    let admin = signer.sign(claims(&["admin", "dev"]));
    assert_eq!(send(out, "/admin/users", Some(&admin)).await.status, 200);

    // No token: authentication lets it through, but requestPrincipals ["*"] needs one.
    let r = send(out, "/items?none", None).await;
    assert_eq!(r.status, 403);
    let line = srv.proxy.log_line("/items?none").await;
    assert!(line.contains("there is no request principal"), "{line}");

    // Tokens that do not verify: 401 with Envoy's words, and the policy in the log.
    let mut expired = claims(&["dev"]);
    expired["exp"] = json!(now() - 3600);
    let mut wrong_issuer = claims(&["dev"]);
    wrong_issuer["iss"] = json!("https://evil.example.com");
    let mut wrong_audience = claims(&["dev"]);
    wrong_audience["aud"] = json!("payments");
    let other_key = Signer::new("k1");
    let cases = [
        ("expired", signer.sign(expired), "Jwt is expired"),
        (
            "issuer",
            signer.sign(wrong_issuer),
            "Jwt issuer is not configured",
        ),
        (
            "audience",
            signer.sign(wrong_audience),
            "Audiences in Jwt are not allowed",
        ),
        (
            "signature",
            other_key.sign(claims(&["dev"])),
            "Jwt verification fails",
        ),
        ("malformed", "not.a.jwt".to_owned(), "Jwt"),
    ];
    for (what, token, reason) in cases {
        let r = send(out, &format!("/items?{what}"), Some(&token)).await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert!(r.body.starts_with(reason), "{what}: {}", r.body);
        assert_eq!(
            r.header("www-authenticate"),
            "Bearer error=\"invalid_token\""
        );
        let line = srv.proxy.log_line(&format!("/items?{what}")).await;
        assert!(line.contains(" 401 - "), "{line}");
    }
    let line = srv.proxy.log_line("/items?expired").await;
    assert!(line.contains("RequestAuthentication prod/jwt"), "{line}");
}
