//! The issuers' public keys: a JWKS parsed once ([`Keys`]), and the cache of every
//! `jwksUri` that the proxy fetches itself ([`JwksCache`]).
//!
//! Istio's istiod fetches `jwksUri` by default and inlines the keys into the config it
//! pushes; skiff's proxy fetches them itself, as Envoy's `remote_jwks` does: on first use
//! (or as soon as a snapshot naming the URI is compiled), kept for [`REFRESH`], refetched
//! after. A fetch that fails never lets a token through: without keys every token of
//! that issuer is refused ("jwks fetch failed: ..."). Keys fetched before keep serving
//! when a refresh fails; they are still the issuer's published keys.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tokio::time::Instant;

/// How long fetched keys are used before they are fetched again: Envoy's default
/// `cache_duration` for `remote_jwks` (10 minutes).
pub(crate) const REFRESH: Duration = Duration::from_secs(600);

/// After a failed fetch, requests get that answer for this long before the next try
/// (Envoy's `failed_refetch_duration` default, 1 s), so a down key server is not
/// hammered by every request.
pub(crate) const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// A JWKS document larger than this is refused.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// One usable public key of a JWKS.
struct Key {
    /// `kid`, when the key has one.
    kid: Option<String>,
    /// `alg`, when the key names one: then it verifies only that algorithm.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

/// The keys of one JWKS document, parsed once.
pub(crate) struct Keys {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field(
                "kids",
                &self.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keys {
    /// Parses a JWKS (`{"keys": [...]}`). Keys of a type jsonwebtoken cannot use are
    /// skipped (as Envoy skips them); a document without one usable key is an error.
    pub(crate) fn parse(json: &str) -> Result<Keys, String> {
        let doc: Value =
            serde_json::from_str(json).map_err(|e| format!("jwks is not valid JSON: {e}"))?;
        let Some(list) = doc.get("keys").and_then(Value::as_array) else {
            return Err("jwks has no \"keys\" list (expected a JSON Web Key Set)".to_string());
        };
        let mut keys = Vec::with_capacity(list.len());
        let mut skipped = Vec::new();
        for (i, raw) in list.iter().enumerate() {
            match Key::parse(raw) {
                Ok(key) => keys.push(key),
                Err(e) => skipped.push(format!("keys[{i}]: {e}")),
            }
        }
        if keys.is_empty() {
            return Err(format!(
                "jwks has no usable key ({})",
                if skipped.is_empty() {
                    "the \"keys\" list is empty".to_string()
                } else {
                    skipped.join("; ")
                }
            ));
        }
        if !skipped.is_empty() {
            tracing::debug!(skipped = %skipped.join("; "), "jwks keys skipped");
        }
        Ok(Keys { keys })
    }

    /// The keys that may have signed a token with this `kid` and `alg`, as Envoy picks
    /// them: a key of the algorithm's family, of that `alg` when the key names one, and
    /// of that `kid` when both the token and the key have one.
    pub(crate) fn candidates<'k>(
        &'k self,
        kid: Option<&'k str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'k DecodingKey> + 'k {
        self.keys
            .iter()
            .filter(move |k| {
                k.key.family() == alg.family()
                    && k.alg.is_none_or(|a| a == alg)
                    && match (kid, &k.kid) {
                        (Some(want), Some(have)) => want == have,
                        _ => true,
                    }
            })
            .map(|k| &k.key)
    }
}

impl Key {
    fn parse(raw: &Value) -> Result<Key, String> {
        let jwk: Jwk = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
        let alg = match raw.get("alg").and_then(Value::as_str) {
            None => None,
            Some(a) => {
                Some(Algorithm::from_str(a).map_err(|_| format!("alg {a:?} is not supported"))?)
            }
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
        Ok(Key {
            kid: jwk.common.key_id,
            alg,
            key,
        })
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The keys of every `jwksUri`, shared across snapshots (one per proxy, in its shared
/// inputs): a config update does not refetch keys that are still fresh. Cheap to clone.
///
/// `https://` URIs are verified against the Mozilla root certificates that the
/// `webpki-roots` crate carries (not the system's store: sidecar images often have
/// none); `http://` is fetched as it is.
#[derive(Clone)]
pub(crate) struct JwksCache {
    inner: Arc<CacheInner>,
}

struct CacheInner {
    client: HttpsClient,
    /// [`REFRESH`], shorter in tests.
    refresh: Duration,
    /// By `jwksUri`.
    keys: Mutex<HashMap<String, Arc<Entry<Arc<Keys>>>>>,
    /// By issuer: the `jwks_uri` of its OpenID discovery document.
    discovered: Mutex<HashMap<String, Arc<Entry<http::Uri>>>>,
}

/// One fetched thing (a JWKS, a discovery answer) and how it went.
struct Entry<T> {
    state: Mutex<State<T>>,
    /// Held while fetching: one fetch at a time per entry.
    fetching: tokio::sync::Mutex<()>,
}

impl<T> Default for Entry<T> {
    fn default() -> Self {
        Entry {
            state: Mutex::new(State {
                value: None,
                failure: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }
}

struct State<T> {
    value: Option<(T, Instant)>,
    failure: Option<(String, Instant)>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let uris: Vec<String> = lock(&self.inner.keys).keys().cloned().collect();
        f.debug_struct("JwksCache").field("uris", &uris).finish()
    }
}

impl Default for JwksCache {
    fn default() -> Self {
        JwksCache::new()
    }
}

impl JwksCache {
    /// An empty cache with its HTTP(S) client.
    pub(crate) fn new() -> JwksCache {
        JwksCache::with_refresh(REFRESH)
    }

    /// A cache whose keys are refetched after `refresh`.
    pub(crate) fn with_refresh(refresh: Duration) -> JwksCache {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .expect("aws-lc-rs supports rustls' default protocol versions")
            .https_or_http()
            .enable_http1()
            .build();
        JwksCache {
            inner: Arc::new(CacheInner {
                client: Client::builder(TokioExecutor::new()).build(https),
                refresh,
                keys: Mutex::new(HashMap::new()),
                discovered: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Starts fetching `uri` in the background when a runtime is running (a snapshot
    /// naming it was just compiled), so the first request does not wait for it.
    pub(crate) fn prefetch(&self, uri: &http::Uri, timeout: Duration) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (cache, uri) = (self.clone(), uri.clone());
            rt.spawn(async move {
                if let Err(e) = cache.get(&uri, timeout).await {
                    tracing::warn!(%uri, error = %e, "jwks prefetch failed");
                }
            });
        }
    }

    /// The keys of `uri`: cached ones while fresh, else fetched within `timeout`.
    /// The error is the reason a token is refused: "jwks fetch failed: ...".
    pub(crate) async fn get(
        &self,
        uri: &http::Uri,
        timeout: Duration,
    ) -> Result<Arc<Keys>, String> {
        let entry = lock(&self.inner.keys)
            .entry(uri.to_string())
            .or_default()
            .clone();
        let fetch = async {
            let text = self.fetch_text(uri, timeout).await?;
            Keys::parse(&text).map(Arc::new)
        };
        cached_fetch(&entry, self.inner.refresh, fetch)
            .await
            .map_err(|e| format!("jwks fetch failed: {uri}: {e}"))
    }

    /// The keys of an issuer whose rule names neither `jwks` nor `jwksUri`: its
    /// `jwks_uri` from OpenID discovery (`<issuer>/.well-known/openid-configuration`),
    /// as istiod finds it, then those keys.
    pub(crate) async fn get_discovered(
        &self,
        issuer: &http::Uri,
        timeout: Duration,
    ) -> Result<Arc<Keys>, String> {
        let entry = lock(&self.inner.discovered)
            .entry(issuer.to_string())
            .or_default()
            .clone();
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            issuer.to_string().trim_end_matches('/')
        );
        let fetch = async {
            let uri: http::Uri = discovery.parse().map_err(|e| format!("not a URI: {e}"))?;
            let text = self.fetch_text(&uri, timeout).await?;
            let doc: Value = serde_json::from_str(&text)
                .map_err(|e| format!("the discovery document is not valid JSON: {e}"))?;
            let jwks_uri = doc
                .get("jwks_uri")
                .and_then(Value::as_str)
                .ok_or("the discovery document has no \"jwks_uri\"")?;
            jwks_uri
                .parse::<http::Uri>()
                .map_err(|e| format!("its jwks_uri {jwks_uri:?} is not a URI: {e}"))
        };
        let jwks_uri = cached_fetch(&entry, self.inner.refresh, fetch)
            .await
            .map_err(|e| format!("jwks fetch failed: OpenID discovery {discovery}: {e}"))?;
        self.get(&jwks_uri, timeout).await
    }

    /// GET `uri`, the body as text, within `timeout`.
    async fn fetch_text(&self, uri: &http::Uri, timeout: Duration) -> Result<String, String> {
        let request = http::Request::get(uri.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let work = async {
            let response = self
                .inner
                .client
                .request(request)
                .await
                .map_err(|e| error_chain(&e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("answered {status}"));
            }
            let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the body: {e}"))?
                .to_bytes();
            String::from_utf8(body.to_vec()).map_err(|_| "the body is not UTF-8".to_string())
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer within the rule's timeout of {timeout:?}"
                ))
            })
    }
}

/// The entry's value while fresh; else fetched (one fetch at a time: others wait for
/// it, or use the stale value meanwhile). A failed fetch is remembered for
/// [`RETRY_AFTER_FAILURE`]; a stale value keeps serving when a refresh fails.
async fn cached_fetch<T: Clone>(
    entry: &Entry<T>,
    refresh: Duration,
    fetch: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    if let Some(answer) = entry.cached(refresh) {
        return answer;
    }
    let stale = entry.stale();
    let _fetching = match (entry.fetching.try_lock(), stale) {
        (Ok(guard), _) => guard,
        // Someone is refreshing: what we have still serves meanwhile.
        (Err(_), Some(value)) => return Ok(value),
        (Err(_), None) => {
            let guard = entry.fetching.lock().await;
            if let Some(answer) = entry.cached(refresh) {
                return answer;
            }
            guard
        }
    };
    let fetched = fetch.await;
    let mut state = entry.lock();
    let now = Instant::now();
    match fetched {
        Ok(value) => {
            state.value = Some((value.clone(), now));
            state.failure = None;
            Ok(value)
        }
        Err(e) => {
            state.failure = Some((e.clone(), now));
            match &state.value {
                Some((value, _)) => {
                    tracing::warn!(error = %e, "jwks refresh failed; using what was fetched before");
                    Ok(value.clone())
                }
                None => Err(e),
            }
        }
    }
}

impl<T: Clone> Entry<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        lock(&self.state)
    }

    /// The answer without fetching: a fresh value; a stale one right after a failed
    /// refresh; the last failure while it is recent and there is no value.
    fn cached(&self, refresh: Duration) -> Option<Result<T, String>> {
        let state = self.lock();
        let now = Instant::now();
        let recent = |at: Instant| now.saturating_duration_since(at) < RETRY_AFTER_FAILURE;
        match (&state.value, &state.failure) {
            (Some((value, at)), _) if now.saturating_duration_since(*at) < refresh => {
                Some(Ok(value.clone()))
            }
            (Some((value, _)), Some((_, failed))) if recent(*failed) => Some(Ok(value.clone())),
            (None, Some((e, failed))) if recent(*failed) => Some(Err(e.clone())),
            _ => None,
        }
    }

    fn stale(&self) -> Option<T> {
        self.lock().value.as_ref().map(|(v, _)| v.clone())
    }
}

/// A std mutex, poisoned or not (the state under it is always whole).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An error and its causes, "client error (Connect): tcp connect error: Connection
/// refused", since the HTTP client's own text names only the outermost.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
