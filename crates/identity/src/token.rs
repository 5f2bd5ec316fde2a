//! Bootstrap tokens: how a proxy of local mode proves its identity to the CA before it
//! has a certificate.
//!
//! `skiff up` holds a random secret shared with the control plane and hands each proxy
//! the token of its identity: `<spiffe id>.<base64url(HMAC-SHA256(secret, spiffe id))>`.
//! The proxy sends it as `authorization: Bearer <token>`.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::{IdentityError, SpiffeId};

/// The shortest secret accepted, in bytes.
const MIN_SECRET: usize = 32;

/// Mints and checks bootstrap tokens with one shared secret.
///
/// Also an [`Authenticator`](crate::service::Authenticator) of the CA service: it
/// reads the `authorization: Bearer` metadata.
#[derive(Clone)]
pub struct BootstrapTokens {
    key: hmac::Key,
}

impl std::fmt::Debug for BootstrapTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BootstrapTokens(..)")
    }
}

impl BootstrapTokens {
    /// Tokens keyed by `secret` (at least 32 bytes).
    pub fn new(secret: &[u8]) -> Result<Self, IdentityError> {
        if secret.len() < MIN_SECRET {
            return Err(IdentityError::BadSecret(format!(
                "it is {} bytes; it must be at least {MIN_SECRET} random bytes (see BootstrapTokens::generate_secret)",
                secret.len()
            )));
        }
        Ok(BootstrapTokens {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        })
    }

    /// 32 random bytes from the system's generator, for [`new`](Self::new).
    pub fn generate_secret() -> Vec<u8> {
        let bytes: [u8; MIN_SECRET] = rand::random();
        bytes.to_vec()
    }

    /// The token that proves `id`.
    pub fn token_for(&self, id: &SpiffeId) -> String {
        let id = id.to_string();
        let tag = hmac::sign(&self.key, id.as_bytes());
        format!("{id}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The identity `token` proves, or why it proves none. The tag is compared in
    /// constant time.
    pub fn verify(&self, token: &str) -> Result<SpiffeId, IdentityError> {
        let bad =
            |reason: &str| IdentityError::Unauthenticated(format!("bootstrap token: {reason}"));
        // The id has dots (in the trust domain); base64url has none, so the tag
        // follows the last one.
        let (id, tag) = token
            .rsplit_once('.')
            .ok_or_else(|| bad("not of the form <spiffe id>.<signature>"))?;
        let id: SpiffeId = id
            .parse()
            .map_err(|err: IdentityError| bad(&err.to_string()))?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| bad("the signature is not base64url"))?;
        hmac::verify(&self.key, id.to_string().as_bytes(), &tag).map_err(|_| {
            bad(&format!(
                "the signature for {id} is wrong (a token of another mesh, or an altered one)"
            ))
        })?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(sa: &str) -> SpiffeId {
        SpiffeId::new("cluster.local", "prod", sa).unwrap()
    }

    #[test]
    fn token_round_trip_and_forgeries() {
        let tokens = BootstrapTokens::new(&BootstrapTokens::generate_secret()).unwrap();
        let token = tokens.token_for(&id("a"));
        assert!(token.starts_with("spiffe://cluster.local/ns/prod/sa/a."));
        assert_eq!(tokens.verify(&token).unwrap(), id("a"));

        // The tag of a, with the id of b.
        let tag = token.rsplit_once('.').unwrap().1;
        let forged = format!("{}.{tag}", id("b"));
        let err = tokens.verify(&forged).unwrap_err().to_string();
        assert!(
            err.contains("signature for spiffe://cluster.local/ns/prod/sa/b is wrong"),
            "{err}"
        );

        // Another secret.
        let other = BootstrapTokens::new(&BootstrapTokens::generate_secret()).unwrap();
        assert!(other.verify(&token).is_err());

        for junk in ["", "no-dot", "spiffe://x/ns/a/sa/b.!!!", "notanid.AAAA"] {
            assert!(
                matches!(tokens.verify(junk), Err(IdentityError::Unauthenticated(_))),
                "{junk}"
            );
        }
    }

    #[test]
    fn short_secret_refused() {
        let err = BootstrapTokens::new(b"short").unwrap_err().to_string();
        assert!(err.contains("it is 5 bytes"), "{err}");
    }
}
