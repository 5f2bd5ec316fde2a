//! A JWT taken apart: header, claims and signature, and the checks Envoy's `jwt_authn`
//! makes before and after the signature, in its words.

use std::str::FromStr;

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

/// Envoy's default clock skew for `exp` and `nbf` (`clock_skew_seconds`), which Istio
/// keeps.
pub(crate) const CLOCK_SKEW_SECS: u64 = 60;

/// base64url, with or without padding (Envoy accepts both).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why one token is not accepted, worded as Envoy's `jwt_authn` words it (the body of
/// its 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Not three base64url parts joined by dots.
    BadFormat,
    /// The header is not base64url.
    HeaderBadBase64,
    /// The header is not a JSON object.
    HeaderBadJson,
    /// The header has no string `alg`.
    HeaderBadAlg,
    /// `alg` names an algorithm the proxy does not verify (`none`, for one).
    AlgNotImplemented(String),
    /// The payload is not base64url.
    PayloadBadBase64,
    /// The payload is not a JSON object.
    PayloadBadJson,
    /// A registered claim has the wrong type.
    BadClaim(&'static str),
    /// The signature is not base64url.
    SignatureBadBase64,
    /// No rule accepts the token's `iss`.
    UnknownIssuer,
    /// `exp` (plus the clock skew) is past.
    Expired,
    /// `nbf` (less the clock skew) is still ahead.
    NotYetValid,
    /// None of the token's `aud` is among the rule's audiences.
    AudienceNotAllowed,
    /// The issuer's keys have none of the token's `kid` or `alg`.
    NoMatchingKey,
    /// No candidate key verifies the signature.
    VerificationFails,
    /// The issuer's keys could not be fetched.
    JwksFetch(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::BadFormat => f.write_str(
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
            ),
            Failure::HeaderBadBase64 => f.write_str("Jwt header is an invalid Base64url encoded"),
            Failure::HeaderBadJson => f.write_str("Jwt header is an invalid JSON"),
            Failure::HeaderBadAlg => {
                f.write_str("Jwt header [alg] field is required and must be a string")
            }
            Failure::AlgNotImplemented(alg) => {
                write!(f, "Jwt header [alg] {alg:?} is not supported")
            }
            Failure::PayloadBadBase64 => f.write_str("Jwt payload is an invalid Base64url encoded"),
            Failure::PayloadBadJson => f.write_str("Jwt payload is an invalid JSON"),
            Failure::BadClaim(what) => write!(f, "Jwt payload {what}"),
            Failure::SignatureBadBase64 => {
                f.write_str("Jwt signature is an invalid Base64url encoded")
            }
            Failure::UnknownIssuer => f.write_str("Jwt issuer is not configured"),
            Failure::Expired => f.write_str("Jwt is expired"),
            Failure::NotYetValid => f.write_str("Jwt not yet valid"),
            Failure::AudienceNotAllowed => f.write_str("Audiences in Jwt are not allowed"),
            Failure::NoMatchingKey => {
                f.write_str("Jwks doesn't have key to match kid or alg from Jwt")
            }
            Failure::VerificationFails => f.write_str("Jwt verification fails"),
            Failure::JwksFetch(e) => f.write_str(e),
        }
    }
}

/// A token that parsed: nothing about it is verified yet.
#[derive(Debug)]
pub(crate) struct Token {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    pub(crate) claims: Map<String, Value>,
    /// `iss`, when it is there.
    pub(crate) issuer: Option<String>,
    /// `aud`: one string or a list.
    pub(crate) audiences: Vec<String>,
    exp: Option<u64>,
    nbf: Option<u64>,
    /// `header.payload`, what the signature signs.
    signed: String,
    /// The signature part as written (base64url).
    pub(crate) signature: String,
    /// The payload part as written (base64url): `outputPayloadToHeader`'s value.
    pub(crate) payload_b64: String,
}

impl Token {
    /// Takes a token apart; never panics, whatever the bytes.
    pub(crate) fn parse(token: &str) -> Result<Token, Failure> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Failure::BadFormat);
        };
        if header.is_empty() || payload.is_empty() {
            return Err(Failure::BadFormat);
        }
        let header_json: Map<String, Value> =
            json_object(header, Failure::HeaderBadBase64, Failure::HeaderBadJson)?;
        let Some(alg) = header_json.get("alg").and_then(Value::as_str) else {
            return Err(Failure::HeaderBadAlg);
        };
        let alg =
            Algorithm::from_str(alg).map_err(|_| Failure::AlgNotImplemented(alg.to_string()))?;
        let kid = match header_json.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(Failure::HeaderBadJson),
        };
        let claims = json_object(payload, Failure::PayloadBadBase64, Failure::PayloadBadJson)?;
        if signature.is_empty() || B64URL.decode(signature).is_err() {
            return Err(Failure::SignatureBadBase64);
        }
        let issuer = match claims.get("iss") {
            None => None,
            Some(Value::String(iss)) => Some(iss.clone()),
            Some(_) => return Err(Failure::BadClaim("[iss] field is not a string")),
        };
        match claims.get("sub") {
            None | Some(Value::String(_)) => {}
            Some(_) => return Err(Failure::BadClaim("[sub] field is not a string")),
        }
        let audiences = match claims.get("aud") {
            None => Vec::new(),
            Some(Value::String(aud)) => vec![aud.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .map(|a| a.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or(Failure::BadClaim(
                    "[aud] field is not a string or string list",
                ))?,
            Some(_) => {
                return Err(Failure::BadClaim(
                    "[aud] field is not a string or string list",
                ));
            }
        };
        let exp = time_claim(&claims, "exp", "[exp] field is not a positive integer")?;
        let nbf = time_claim(&claims, "nbf", "[nbf] field is not a positive integer")?;
        Ok(Token {
            alg,
            kid,
            claims,
            issuer,
            audiences,
            exp,
            nbf,
            signed: format!("{header}.{payload}"),
            signature: signature.to_string(),
            payload_b64: payload.to_string(),
        })
    }

    /// `exp` and `nbf` against `now` (seconds since the epoch), with Envoy's clock skew.
    /// A token without `exp` does not expire (Envoy does not require it).
    pub(crate) fn check_time(&self, now: u64) -> Result<(), Failure> {
        if let Some(nbf) = self.nbf
            && nbf > now.saturating_add(CLOCK_SKEW_SECS)
        {
            return Err(Failure::NotYetValid);
        }
        if let Some(exp) = self.exp
            && now > exp.saturating_add(CLOCK_SKEW_SECS)
        {
            return Err(Failure::Expired);
        }
        Ok(())
    }

    /// Envoy's audience check: any of the token's audiences among the allowed ones,
    /// compared without an `http://`/`https://` scheme or a trailing `/`. Allowed
    /// audiences already sanitized; none allowed: not checked.
    pub(crate) fn check_audiences(&self, allowed: &[String]) -> Result<(), Failure> {
        if allowed.is_empty()
            || self
                .audiences
                .iter()
                .any(|a| allowed.iter().any(|b| b == sanitize_audience(a)))
        {
            Ok(())
        } else {
            Err(Failure::AudienceNotAllowed)
        }
    }

    /// Whether `key` signed this token.
    pub(crate) fn signed_by(&self, key: &jsonwebtoken::DecodingKey) -> bool {
        jsonwebtoken::crypto::verify(&self.signature, self.signed.as_bytes(), key, self.alg)
            .unwrap_or(false)
    }
}

/// An audience without `http://`/`https://` and one trailing `/`, as Envoy compares them.
pub(crate) fn sanitize_audience(aud: &str) -> &str {
    let aud = aud
        .strip_prefix("https://")
        .or_else(|| aud.strip_prefix("http://"))
        .unwrap_or(aud);
    aud.strip_suffix('/').unwrap_or(aud)
}

fn json_object(
    part: &str,
    bad_base64: Failure,
    bad_json: Failure,
) -> Result<Map<String, Value>, Failure> {
    let bytes = B64URL.decode(part).map_err(|_| bad_base64)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(bad_json),
    }
}

fn time_claim(
    claims: &Map<String, Value>,
    name: &str,
    bad: &'static str,
) -> Result<Option<u64>, Failure> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(Failure::BadClaim(bad)),
    }
}

/// base64url without padding, as `outputPayloadToHeader` and tests write it.
#[cfg(test)]
pub(crate) fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
