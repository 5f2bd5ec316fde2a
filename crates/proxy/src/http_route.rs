//! Per-route HTTP policies at run time: header rules (VirtualService `headers`, on the
//! route and on each destination), mirrors and CORS. A route without any has no
//! [`HttpPolicyRt`] at all (`RouteRt::policy` is `None`), so it pays one check.
//!
//! Order, as Envoy applies Istio's config: request rules of the chosen destination,
//! then of the route (each: removals, then `set`, then `add`); the same for responses;
//! CORS headers last. A preflight the policy answers never reaches the upstream.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response};
use skiff_model::config::{self as model, HeaderOps, HeaderRules};

use crate::Error;
use crate::config::Snapshot;
use crate::config::matcher::StrMatch;
use crate::forward::{ReqBody, RespBody};

/// Compiled `HeaderOperations`.
#[derive(Debug, Default)]
pub(crate) struct HeaderOpsRt {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

/// Compiled `Headers`: request and response sides, each absent when empty.
#[derive(Debug, Default)]
pub(crate) struct HeaderRulesRt {
    pub(crate) request: Option<HeaderOpsRt>,
    pub(crate) response: Option<HeaderOpsRt>,
}

/// One mirror: a cluster index and the share of requests copied (millionths).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MirrorRt {
    pub(crate) cluster: usize,
    pub(crate) per_million: u32,
}

/// Compiled `corsPolicy`.
#[derive(Debug)]
pub(crate) struct CorsRt {
    origins: Vec<StrMatch>,
    allow_methods: Option<HeaderValue>,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    credentials: bool,
    ignore_unmatched_preflights: bool,
}

/// Everything a route asks for besides its action.
#[derive(Debug, Default)]
pub(crate) struct HttpPolicyRt {
    pub(crate) headers: HeaderRulesRt,
    /// By destination index (position in the route's `destinations`).
    destination_headers: Vec<(usize, HeaderRulesRt)>,
    pub(crate) mirrors: Vec<MirrorRt>,
    pub(crate) cors: Option<CorsRt>,
}

impl HeaderOpsRt {
    fn compile(
        place: &str,
        ops: &HeaderOps,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Self>, Error> {
        if ops.is_empty() {
            return Ok(None);
        }
        // `host` and pseudo-headers are not header rules' to change (Envoy refuses
        // them): such an entry is skipped with a warning, the rest applies.
        let name = |n: &str, warnings: &mut Vec<String>| -> Result<Option<HeaderName>, Error> {
            if n.starts_with(':') || n.eq_ignore_ascii_case("host") {
                warnings.push(format!(
                    "{place}: header {n:?} cannot be changed by header rules (use \
                     rewrite.authority); this entry is ignored"
                ));
                return Ok(None);
            }
            HeaderName::from_bytes(n.as_bytes())
                .map(Some)
                .map_err(|_| Error::config(place, format!("header name {n:?} is not valid")))
        };
        let mut out = HeaderOpsRt::default();
        for n in &ops.remove {
            out.remove.extend(name(n, warnings)?);
        }
        for (list, into) in [(&ops.set, &mut out.set), (&ops.add, &mut out.add)] {
            for (n, v) in list {
                let Some(header) = name(n, warnings)? else {
                    continue;
                };
                if v.contains('%') {
                    warnings.push(format!(
                        "{place}: header {n} value {v:?} is sent as written (Envoy's \
                         %COMMAND% substitutions are not expanded)"
                    ));
                }
                let value = HeaderValue::from_str(v).map_err(|_| {
                    Error::config(place, format!("header {n} value {v:?} is not valid"))
                })?;
                into.push((header, value));
            }
        }
        Ok(Some(out))
    }

    /// Removals first, then overwrites, then appends, as Envoy's header parser does.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for n in &self.remove {
            headers.remove(n);
        }
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            headers.append(n.clone(), v.clone());
        }
    }
}

impl HeaderRulesRt {
    fn compile(
        place: &str,
        rules: &HeaderRules,
        warnings: &mut Vec<String>,
    ) -> Result<Self, Error> {
        Ok(HeaderRulesRt {
            request: HeaderOpsRt::compile(place, &rules.request, warnings)?,
            response: HeaderOpsRt::compile(place, &rules.response, warnings)?,
        })
    }
}

impl HttpPolicyRt {
    /// Compiles a route's policy; `destinations` is the number of destinations of its
    /// forward action (0 for redirects and direct responses), `cluster` resolves a
    /// cluster name to its index.
    pub(crate) fn compile(
        route: &str,
        p: &model::HttpRoutePolicy,
        destinations: usize,
        cluster: impl Fn(&str) -> Option<usize>,
        warnings: &mut Vec<String>,
    ) -> Result<HttpPolicyRt, Error> {
        let headers = HeaderRulesRt::compile(route, &p.headers, warnings)?;
        let mut destination_headers = Vec::with_capacity(p.destination_headers.len());
        for d in &p.destination_headers {
            if d.index >= destinations {
                warnings.push(format!(
                    "route {route}: header rules for destination {}, which it does not have",
                    d.index
                ));
                continue;
            }
            let place = format!("route {route} destination {}", d.index);
            destination_headers.push((
                d.index,
                HeaderRulesRt::compile(&place, &d.headers, warnings)?,
            ));
        }
        let mut mirrors = Vec::with_capacity(p.mirrors.len());
        for m in &p.mirrors {
            let Some(i) = cluster(&m.cluster) else {
                return Err(Error::UnknownCluster {
                    route: route.to_owned(),
                    cluster: m.cluster.clone(),
                });
            };
            if m.per_million > 1_000_000 {
                return Err(Error::config(
                    route,
                    format!("mirror share {} is over 1000000 (100%)", m.per_million),
                ));
            }
            if destinations == 0 {
                warnings.push(format!(
                    "route {route}: a mirror on a route that does not forward copies nothing"
                ));
                continue;
            }
            mirrors.push(MirrorRt {
                cluster: i,
                per_million: m.per_million,
            });
        }
        let cors = p
            .cors
            .as_ref()
            .map(|c| CorsRt::compile(route, c))
            .transpose()?;
        Ok(HttpPolicyRt {
            headers,
            destination_headers,
            mirrors,
            cors,
        })
    }

    /// The header rules of destination `index`, if it has any.
    pub(crate) fn destination(&self, index: usize) -> Option<&HeaderRulesRt> {
        self.destination_headers
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, r)| r)
    }

    /// Applies the response side: the destination's rules, the route's, then CORS.
    pub(crate) fn on_response(
        &self,
        destination: Option<&HeaderRulesRt>,
        cors_origin: Option<&HeaderValue>,
        resp: &mut Response<RespBody>,
    ) {
        let headers = resp.headers_mut();
        if let Some(ops) = destination.and_then(|d| d.response.as_ref()) {
            ops.apply(headers);
        }
        if let Some(ops) = &self.headers.response {
            ops.apply(headers);
        }
        if let (Some(cors), Some(origin)) = (&self.cors, cors_origin) {
            cors.actual_response(origin, headers);
        }
    }
}

/// What CORS makes of a request.
pub(crate) enum CorsVerdict {
    /// Not a CORS request, or from an origin the policy does not allow: forward as is.
    Pass,
    /// An allowed origin: forward, and add CORS headers to the response.
    Allowed(HeaderValue),
    /// A preflight answered here: `200` with these headers.
    Answer(HeaderMap),
}

impl CorsRt {
    fn compile(route: &str, c: &model::CorsPolicy) -> Result<CorsRt, Error> {
        let value = |what: &str, v: &Option<String>| {
            v.as_deref()
                .map(|v| {
                    HeaderValue::from_str(v).map_err(|_| {
                        Error::config(
                            route,
                            format!("corsPolicy {what} {v:?} is not a valid header value"),
                        )
                    })
                })
                .transpose()
        };
        Ok(CorsRt {
            origins: c
                .allow_origins
                .iter()
                .map(|m| StrMatch::compile(route, m))
                .collect::<Result<_, _>>()?,
            allow_methods: value("allowMethods", &c.allow_methods)?,
            allow_headers: value("allowHeaders", &c.allow_headers)?,
            expose_headers: value("exposeHeaders", &c.expose_headers)?,
            max_age: c.max_age_seconds.map(HeaderValue::from),
            credentials: c.allow_credentials,
            ignore_unmatched_preflights: c.ignore_unmatched_preflights,
        })
    }

    /// As Envoy's CORS filter: an origin is allowed when a matcher matches it, or
    /// matches `*`.
    fn allows(&self, origin: &str) -> bool {
        self.origins
            .iter()
            .any(|m| m.matches("*") || m.matches(origin))
    }

    /// Looks at a request: a preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) from an allowed origin is answered here, one
    /// from another origin is forwarded (`unmatchedPreflights: FORWARD`, the default)
    /// or answered without CORS headers (`IGNORE`).
    pub(crate) fn check<B>(&self, req: &Request<B>) -> CorsVerdict {
        let Some(origin) = req.headers().get(header::ORIGIN) else {
            return CorsVerdict::Pass;
        };
        let allowed = origin.to_str().is_ok_and(|o| self.allows(o));
        let preflight = req.method() == Method::OPTIONS
            && req
                .headers()
                .get(header::ACCESS_CONTROL_REQUEST_METHOD)
                .is_some_and(|m| !m.is_empty());
        match (preflight, allowed) {
            (false, true) => CorsVerdict::Allowed(origin.clone()),
            (false, false) => CorsVerdict::Pass,
            (true, false) if !self.ignore_unmatched_preflights => CorsVerdict::Pass,
            (true, false) => CorsVerdict::Answer(HeaderMap::new()),
            (true, true) => {
                let mut h = HeaderMap::new();
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                if self.credentials {
                    h.insert(
                        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                        HeaderValue::from_static("true"),
                    );
                }
                for (name, v) in [
                    (header::ACCESS_CONTROL_ALLOW_METHODS, &self.allow_methods),
                    (header::ACCESS_CONTROL_ALLOW_HEADERS, &self.allow_headers),
                    (header::ACCESS_CONTROL_MAX_AGE, &self.max_age),
                ] {
                    if let Some(v) = v {
                        h.insert(name, v.clone());
                    }
                }
                CorsVerdict::Answer(h)
            }
        }
    }

    /// The CORS headers of the response to an actual request from an allowed origin.
    fn actual_response(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(v) = &self.expose_headers {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
        }
    }
}

/// Copies of a request for the route's mirrors, sent on their own tasks.
pub(crate) struct MirrorPlan {
    pub(crate) snapshot: Arc<Snapshot>,
    pub(crate) mirrors: Vec<usize>,
    /// The route's timeout, which bounds the copies too (as Envoy's shadows).
    pub(crate) timeout: Option<std::time::Duration>,
}

impl MirrorPlan {
    /// The mirrors this request is copied to (each drawn on its own share); `None` when
    /// it goes to none, which allocates nothing.
    pub(crate) fn draw(
        snapshot: &Arc<Snapshot>,
        mirrors: &[MirrorRt],
        timeout: Option<std::time::Duration>,
    ) -> Option<MirrorPlan> {
        let mut chosen = Vec::new();
        for m in mirrors {
            if m.per_million >= 1_000_000
                || (m.per_million > 0 && crate::upstream::random_below(1_000_000) < m.per_million)
            {
                chosen.push(m.cluster);
            }
        }
        (!chosen.is_empty()).then(|| MirrorPlan {
            snapshot: snapshot.clone(),
            mirrors: chosen,
            timeout,
        })
    }

    /// Sends a copy of `req` (in its upstream form) to each mirror, without waiting:
    /// the copies' answers are dropped and their failures only logged, so they never
    /// slow or fail the request itself. The authority gets Envoy's `-shadow` suffix
    /// (`backend:80` → `backend-shadow:80`). The request must have its body in hand
    /// (`Empty` or `Full`); a streamed body is not copied.
    pub(crate) fn send(self, req: &Request<ReqBody>) {
        let body = match req.body() {
            ReqBody::Empty => None,
            ReqBody::Full(data) => data.clone(),
            ReqBody::Incoming(..) => {
                tracing::debug!("request body is streamed: not mirrored");
                return;
            }
        };
        for cluster in self.mirrors {
            let mut copy = Request::new(match &body {
                Some(b) => ReqBody::Full(Some(b.clone())),
                None => ReqBody::Empty,
            });
            *copy.method_mut() = req.method().clone();
            *copy.version_mut() = req.version();
            *copy.headers_mut() = req.headers().clone();
            *copy.uri_mut() = shadow_uri(req.uri());
            if let Some(host) = copy
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                && let Ok(v) = HeaderValue::from_str(&shadow_host(host))
            {
                copy.headers_mut().insert(header::HOST, v);
            }
            let snapshot = self.snapshot.clone();
            let timeout = self.timeout;
            tokio::spawn(async move {
                let c = &snapshot.clusters[cluster];
                match crate::forward::send_copy(c, copy, timeout).await {
                    Ok(status) => tracing::debug!(cluster = %c.name, %status, "mirrored"),
                    Err(e) => tracing::debug!(cluster = %c.name, error = %e, "mirror failed"),
                }
            });
        }
    }
}

/// `host[:port]` → `host-shadow[:port]`.
pub(crate) fn shadow_host(authority: &str) -> String {
    let host = crate::config::strip_port(authority);
    let mut out = String::with_capacity(authority.len() + 7);
    out.push_str(host);
    out.push_str("-shadow");
    out.push_str(&authority[host.len()..]);
    out
}

fn shadow_uri(uri: &http::Uri) -> http::Uri {
    let Some(a) = uri.authority() else {
        return uri.clone();
    };
    let mut parts = uri.clone().into_parts();
    parts.authority = http::uri::Authority::try_from(shadow_host(a.as_str())).ok();
    http::Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_pseudo_headers_are_skipped_with_a_warning() {
        let ops = HeaderOps {
            set: vec![
                ("host".into(), "x".into()),
                ("x-a".into(), "%START_TIME%".into()),
            ],
            add: vec![(":path".into(), "/".into())],
            remove: vec!["x-b".into()],
        };
        let mut warnings = Vec::new();
        let rt = HeaderOpsRt::compile("r", &ops, &mut warnings)
            .unwrap()
            .unwrap();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("keep"));
        h.insert("x-b", HeaderValue::from_static("gone"));
        rt.apply(&mut h);
        assert_eq!(h["host"], "keep");
        assert_eq!(h["x-a"], "%START_TIME%");
        assert!(!h.contains_key("x-b"));
        let bad = HeaderOps {
            set: vec![("x-a".into(), "line\nbreak".into())],
            ..HeaderOps::default()
        };
        assert!(HeaderOpsRt::compile("r", &bad, &mut warnings).is_err());
    }

    #[test]
    fn shadow_hosts() {
        assert_eq!(super::shadow_host("backend"), "backend-shadow");
        assert_eq!(super::shadow_host("backend:8080"), "backend-shadow:8080");
    }
}
