//! Phase 3, **authenticate**: RequestAuthentication's JWT rules, as Envoy's `jwt_authn`
//! filter enforces them under Istio.
//!
//! Istio (`pilot/pkg/security/authn/policy_applier.go`) gives Envoy one provider per
//! rule (rules sorted by issuer) and the requirement "any provider verifies its token,
//! or every provider finds either no token or only good ones". What that means for a
//! request, and what [`JwtRules::authenticate`] does:
//!
//! - no token at any rule's places: passes without a request principal
//!   (`Ok(None)`); AuthorizationPolicy decides about it;
//! - a rule whose places hold tokens, all of its issuer and all verifying (signature,
//!   `exp`/`nbf` with 60 s of clock skew, audiences): the request passes with the first
//!   token's claims; the tokens are taken out unless `forwardOriginalToken`, and
//!   `outputClaimToHeaders` / `outputPayloadToHeader` are set;
//! - any other token: 401, in Envoy's words ("Jwt is expired", "Jwt issuer is not
//!   configured", ...), naming the RequestAuthentication and issuer.
//!
//! The headers that `outputClaimToHeaders` and `outputPayloadToHeader` name are removed
//! from every incoming request first (as Envoy does), so a client cannot set them.
//!
//! Layout: `authn/extract.rs` finds and removes tokens, `authn/token.rs` takes one apart
//! and checks its claims, `authn/jwks.rs` holds keys and fetches `jwksUri`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::request::Parts;
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use skiff_model::config::JwtRule;

use crate::Error;

mod extract;
mod jwks;
mod token;

pub(crate) use jwks::JwksCache;

use extract::Location;
use jwks::Keys;
use token::{Failure, Token};

/// The JWT rules of one snapshot, compiled once (off the hot path) from
/// `Policies.jwt_rules`; cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub(crate) struct JwtRules {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// In the model's order: by issuer.
    rules: Vec<Rule>,
    /// Every header a rule writes (claims, payload): removed from incoming requests.
    outputs: Vec<HeaderName>,
}

/// One `jwtRules[]` entry, ready for requests.
#[derive(Debug)]
struct Rule {
    /// `namespace/name` of the RequestAuthentication.
    policy: Arc<str>,
    issuer: String,
    /// Sanitized as Envoy compares them.
    audiences: Vec<String>,
    keys: KeySource,
    timeout: Duration,
    locations: Vec<Location>,
    forward: bool,
    claim_to_headers: Vec<(HeaderName, Vec<String>)>,
    payload_header: Option<HeaderName>,
    space_delimited: Arc<[String]>,
}

#[derive(Debug)]
enum KeySource {
    /// `jwks`, parsed at compile time.
    Inline(Arc<Keys>),
    /// `jwksUri`, fetched through the shared cache.
    Remote { uri: http::Uri, cache: JwksCache },
    /// Neither: the keys that the issuer's OpenID discovery document names, as
    /// istiod finds them.
    Discovered { issuer: http::Uri, cache: JwksCache },
    /// Neither, and the issuer is no http(s) URL to discover them from: every token
    /// of this issuer is refused.
    Undiscoverable,
}

impl JwtRules {
    /// Compiles the rules; the error (a NACK) names the RequestAuthentication and what
    /// to fix. `jwksUri`s start being fetched in the background.
    pub(crate) fn compile(rules: &[JwtRule], keys: &JwksCache) -> Result<JwtRules, Error> {
        let mut compiled = Vec::with_capacity(rules.len());
        let mut outputs = Vec::new();
        for r in rules {
            let place = format!("RequestAuthentication {} (issuer {:?})", r.policy, r.issuer);
            let rule = Rule::compile(r, keys).map_err(|reason| Error::config(&place, reason))?;
            outputs.extend(rule.claim_to_headers.iter().map(|(h, _)| h.clone()));
            outputs.extend(rule.payload_header.clone());
            compiled.push(rule);
        }
        outputs.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        outputs.dedup();
        Ok(JwtRules {
            inner: Arc::new(Inner {
                rules: compiled,
                outputs,
            }),
        })
    }

    /// No RequestAuthentication applies: phase 3 has nothing to do.
    pub(crate) fn is_empty(&self) -> bool {
        self.inner.rules.is_empty()
    }

    /// Phase 3: finds the tokens at every rule's places, verifies them against the rule
    /// of their issuer, takes them out unless `forwardOriginalToken`, writes
    /// `outputClaimToHeaders` / `outputPayloadToHeader`, and returns what authorization
    /// needs. No token: `Ok(None)`. Any token that does not verify: the 401's reason.
    pub(crate) async fn authenticate(
        &self,
        parts: &mut Parts,
    ) -> Result<Option<Arc<VerifiedJwt>>, JwtRejection> {
        for header in &self.inner.outputs {
            parts.headers.remove(header);
        }
        // Per rule, the tokens at its places (one per place).
        let found: Vec<Vec<(&Location, String)>> = self
            .inner
            .rules
            .iter()
            .map(|rule| {
                rule.locations
                    .iter()
                    .filter_map(|loc| loc.find(parts).map(|token| (loc, token)))
                    .collect()
            })
            .collect();
        if found.iter().all(Vec::is_empty) {
            return Ok(None);
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut failure: Option<JwtRejection> = None;
        let mut unknown_issuer: Option<(String, Option<String>)> = None;
        for (rule, tokens) in self.inner.rules.iter().zip(&found) {
            if tokens.is_empty() {
                continue;
            }
            match rule.verify(tokens, now).await {
                Ok(verified) => {
                    let first = rule.apply(parts, tokens, verified);
                    return Ok(Some(first));
                }
                Err((Failure::UnknownIssuer, location, iss)) => {
                    unknown_issuer.get_or_insert((location, iss));
                }
                Err((why, location, _)) => {
                    failure.get_or_insert_with(|| JwtRejection {
                        reason: why.to_string(),
                        policy: Some(rule.policy.clone()),
                        issuer: Some(rule.issuer.clone()),
                        detail: format!("token in {location}"),
                    });
                }
            }
        }
        Err(failure.unwrap_or_else(|| {
            let (location, iss) = unknown_issuer.unwrap_or_default();
            let accepted: Vec<&str> = self.inner.rules.iter().map(|r| r.issuer.as_str()).collect();
            JwtRejection {
                reason: Failure::UnknownIssuer.to_string(),
                policy: None,
                issuer: iss.clone(),
                detail: format!(
                    "token in {location} {}; the RequestAuthentications here accept {}",
                    match iss {
                        Some(iss) => format!("has iss {iss:?}"),
                        None => "has no iss".to_string(),
                    },
                    accepted.join(", ")
                ),
            }
        }))
    }
}

/// A failed token: why, where it was, its `iss`.
type TokenFailure = (Failure, String, Option<String>);

impl Rule {
    fn compile(r: &JwtRule, cache: &JwksCache) -> Result<Rule, String> {
        if r.issuer.is_empty() {
            return Err("issuer is empty: a jwtRule must name the iss its tokens carry".into());
        }
        let keys = match (&r.jwks, &r.jwks_uri) {
            (Some(jwks), _) => KeySource::Inline(Arc::new(
                Keys::parse(jwks).map_err(|e| format!("jwks: {e}"))?,
            )),
            (None, Some(uri)) => {
                let parsed: http::Uri = uri
                    .parse()
                    .map_err(|e| format!("jwksUri {uri:?} is not a URI: {e}"))?;
                if !is_http_url(&parsed) {
                    return Err(format!(
                        "jwksUri {uri:?} must be an http:// or https:// URL with a host"
                    ));
                }
                cache.prefetch(&parsed, r.timeout);
                KeySource::Remote {
                    uri: parsed,
                    cache: cache.clone(),
                }
            }
            (None, None) => match r.issuer.parse::<http::Uri>() {
                Ok(issuer) if is_http_url(&issuer) => KeySource::Discovered {
                    issuer,
                    cache: cache.clone(),
                },
                _ => KeySource::Undiscoverable,
            },
        };
        let header = |name: &str, what: &str| {
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| format!("{what} {name:?} is not a valid header name"))
        };
        let mut locations = Vec::new();
        for h in &r.from_headers {
            locations.push(Location::Header {
                name: header(&h.name, "fromHeaders")?,
                prefix: h.prefix.clone(),
            });
        }
        locations.extend(r.from_params.iter().cloned().map(Location::Param));
        locations.extend(r.from_cookies.iter().cloned().map(Location::Cookie));
        if locations.is_empty() {
            // The model fills Istio's default in; be safe if a config comes without it.
            locations.push(Location::Header {
                name: http::header::AUTHORIZATION,
                prefix: "Bearer ".to_string(),
            });
            locations.push(Location::Param("access_token".to_string()));
        }
        let claim_to_headers = r
            .output_claim_to_headers
            .iter()
            .map(|c| {
                let path = c.claim.split('.').map(str::to_string).collect();
                Ok((header(&c.header, "outputClaimToHeaders header")?, path))
            })
            .collect::<Result<_, String>>()?;
        let payload_header = r
            .output_payload_to_header
            .as_deref()
            .map(|h| header(h, "outputPayloadToHeader"))
            .transpose()?;
        Ok(Rule {
            policy: r.policy.as_str().into(),
            issuer: r.issuer.clone(),
            audiences: r
                .audiences
                .iter()
                .map(|a| token::sanitize_audience(a).to_string())
                .collect(),
            keys,
            timeout: r.timeout,
            locations,
            forward: r.forward_original_token,
            claim_to_headers,
            payload_header,
            space_delimited: space_delimited(&r.space_delimited_claims),
        })
    }

    /// Every token at this rule's places must verify (Envoy: a good token beside a bad
    /// one does not pass, lest the app read the bad one).
    async fn verify(
        &self,
        tokens: &[(&Location, String)],
        now: u64,
    ) -> Result<Vec<Token>, TokenFailure> {
        let mut verified = Vec::with_capacity(tokens.len());
        for (location, raw) in tokens {
            let fail = |why: Failure, iss: Option<String>| (why, location.to_string(), iss);
            let token = Token::parse(raw).map_err(|why| fail(why, None))?;
            if token.issuer.as_deref() != Some(self.issuer.as_str()) {
                return Err(fail(Failure::UnknownIssuer, token.issuer.clone()));
            }
            let iss = || token.issuer.clone();
            token.check_time(now).map_err(|why| fail(why, iss()))?;
            token
                .check_audiences(&self.audiences)
                .map_err(|why| fail(why, iss()))?;
            let keys = match &self.keys {
                KeySource::Inline(keys) => keys.clone(),
                KeySource::Remote { uri, cache } => cache
                    .get(uri, self.timeout)
                    .await
                    .map_err(|e| fail(Failure::JwksFetch(e), iss()))?,
                KeySource::Discovered { issuer, cache } => cache
                    .get_discovered(issuer, self.timeout)
                    .await
                    .map_err(|e| fail(Failure::JwksFetch(e), iss()))?,
                KeySource::Undiscoverable => {
                    return Err(fail(
                        Failure::JwksFetch(
                            "jwks fetch failed: the rule sets neither jwks nor jwksUri, and its \
                             issuer is not an http(s) URL to discover keys from: set jwksUri"
                                .to_string(),
                        ),
                        iss(),
                    ));
                }
            };
            let signed = {
                let mut candidates = keys.candidates(token.kid.as_deref(), token.alg).peekable();
                if candidates.peek().is_none() {
                    return Err(fail(Failure::NoMatchingKey, iss()));
                }
                candidates.any(|key| token.signed_by(key))
            };
            if !signed {
                return Err(fail(Failure::VerificationFails, iss()));
            }
            verified.push(token);
        }
        Ok(verified)
    }

    /// The request after success: tokens out (unless forwarded), claims and payload
    /// in; returns the first token's identity.
    fn apply(
        &self,
        parts: &mut Parts,
        tokens: &[(&Location, String)],
        verified: Vec<Token>,
    ) -> Arc<VerifiedJwt> {
        if !self.forward {
            for (location, _) in tokens {
                location.remove(parts);
            }
        }
        // Later tokens first, so that the first token's values are the ones left.
        for token in verified.iter().rev() {
            for (header, path) in &self.claim_to_headers {
                if let Some(value) = claim(&token.claims, path).and_then(header_value) {
                    parts.headers.insert(header.clone(), value);
                }
            }
            if let Some(header) = &self.payload_header
                && let Ok(value) = HeaderValue::from_str(&token.payload_b64)
            {
                parts.headers.insert(header.clone(), value);
            }
        }
        let first = verified
            .into_iter()
            .next()
            .expect("a rule with tokens verified at least one");
        Arc::new(VerifiedJwt::new(first, self))
    }
}

/// `permission` and `scope` always (Istio), plus the rule's own.
fn space_delimited(extra: &[String]) -> Arc<[String]> {
    let mut claims: Vec<String> = ["permission", "scope"].map(String::from).into();
    claims.extend(extra.iter().cloned());
    claims.sort();
    claims.dedup();
    claims.into()
}

fn is_http_url(uri: &http::Uri) -> bool {
    matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
}

/// A claim at a nested path.
fn claim<'c>(claims: &'c Map<String, Value>, path: &[impl AsRef<str>]) -> Option<&'c Value> {
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(first.as_ref())?;
    for segment in rest {
        value = value.as_object()?.get(segment.as_ref())?;
    }
    Some(value)
}

/// `outputClaimToHeaders` copies strings, numbers and booleans; other claims (and
/// values not allowed in a header) are not copied.
fn header_value(value: &Value) -> Option<HeaderValue> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    HeaderValue::from_str(&text).ok()
}

/// A verified token: what AuthorizationPolicy's `requestPrincipals` and
/// `request.auth.*` conditions read.
#[derive(Debug)]
pub(crate) struct VerifiedJwt {
    /// `iss`.
    pub(crate) issuer: String,
    /// `sub` (empty when the token has none).
    pub(crate) subject: String,
    /// `aud`, one string or a list.
    pub(crate) audiences: Vec<String>,
    /// `azp`, the authorized presenter.
    pub(crate) presenter: Option<String>,
    /// Every claim of the payload.
    pub(crate) claims: Map<String, Value>,
    /// `namespace/name` of the RequestAuthentication whose rule verified it.
    pub(crate) policy: Arc<str>,
    /// Claims whose string value is a space-separated list.
    space_delimited: Arc<[String]>,
}

impl VerifiedJwt {
    fn new(token: Token, rule: &Rule) -> VerifiedJwt {
        let text = |name: &str| {
            token
                .claims
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        VerifiedJwt {
            issuer: rule.issuer.clone(),
            subject: text("sub").unwrap_or_default(),
            audiences: token.audiences.clone(),
            presenter: text("azp"),
            policy: rule.policy.clone(),
            space_delimited: rule.space_delimited.clone(),
            claims: token.claims,
        }
    }

    /// Istio's request principal: `iss/sub`.
    pub(crate) fn principal(&self) -> String {
        format!("{}/{}", self.issuer, self.subject)
    }

    /// The string values of the claim at a nested path (`["a", "b"]` for
    /// `request.auth.claims[a][b]`): a string, the strings of a list, or, for a
    /// space-delimited claim (`scope`, `permission` and the rule's
    /// `spaceDelimitedClaims`, named by its dotted path), the words of a string.
    /// Other types, or no such claim: none.
    pub(crate) fn claim_values(&self, path: &[&str]) -> Vec<&str> {
        match claim(&self.claims, path) {
            Some(Value::String(s)) => {
                let dotted = path.join(".");
                if self.space_delimited.contains(&dotted) {
                    s.split_whitespace().collect()
                } else {
                    vec![s.as_str()]
                }
            }
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }
}

impl crate::authz::JwtView for VerifiedJwt {
    fn principal(&self) -> String {
        VerifiedJwt::principal(self)
    }

    fn audiences(&self) -> Vec<&str> {
        self.audiences.iter().map(String::as_str).collect()
    }

    fn presenter(&self) -> Option<&str> {
        self.presenter.as_deref()
    }

    fn claim_values(&self, path: &[&str]) -> Vec<&str> {
        VerifiedJwt::claim_values(self, path)
    }
}

/// Why a request is refused with 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JwtRejection {
    /// In Envoy's words, the body of the 401: "Jwt is expired", "Jwt issuer is not
    /// configured", "Audiences in Jwt are not allowed", "Jwt verification fails",
    /// "jwks fetch failed: ...".
    pub(crate) reason: String,
    /// The RequestAuthentication (`namespace/name`) whose rule refused the token; none
    /// when no rule accepts its issuer.
    pub(crate) policy: Option<Arc<str>>,
    /// The issuer: the rule's, or the token's when no rule has it.
    pub(crate) issuer: Option<String>,
    /// Where the token was, and what to change.
    pub(crate) detail: String,
}

impl JwtRejection {
    /// The `WWW-Authenticate` header of the 401: RFC 6750's answer to a bad token.
    pub(crate) fn www_authenticate(&self) -> HeaderValue {
        HeaderValue::from_static("Bearer error=\"invalid_token\"")
    }
}

impl std::fmt::Display for JwtRejection {
    /// "Jwt is expired (RequestAuthentication prod/jwt, issuer "https://idp"; token in
    /// header authorization)": for the access log's details and the proxy's logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (", self.reason)?;
        if let Some(policy) = &self.policy {
            write!(f, "RequestAuthentication {policy}, ")?;
        }
        if let Some(issuer) = &self.issuer {
            write!(f, "issuer {issuer:?}; ")?;
        }
        write!(f, "{})", self.detail)
    }
}

#[cfg(test)]
mod tests;
