//! Compiled request matchers: Istio's `HTTPMatchRequest` with its `StringMatch`es.

use http::HeaderName;
use http::header::HeaderMap;
use regex::{Regex, RegexBuilder};

use skiff_model::config::{HeaderMatch, RouteMatch, StringMatch};

use crate::Error;
use crate::route::RequestView;

/// Largest compiled program one route regex may take. A proxy holds every regex of
/// its routes, so one careless pattern (a Unicode `\w{100}` compiles to several
/// MiB) must not swell every sidecar: such a config is rejected (NACKed) with the
/// reason, as Envoy does with its regex program-size limit.
pub(crate) const MAX_REGEX_PROGRAM_BYTES: usize = 1 << 20;

/// A compiled `StringMatch`.
#[derive(Debug)]
pub(crate) enum StrMatch {
    Exact(Box<str>),
    Prefix(Box<str>),
    /// Anchored at both ends: the whole value must match, as RE2's full match in Istio.
    Regex(Regex),
    Present,
}

/// A header (or query parameter) condition.
#[derive(Debug)]
pub(crate) struct HeaderCond {
    name: HeaderName,
    m: StrMatch,
}

/// A query parameter condition.
#[derive(Debug)]
pub(crate) struct QueryCond {
    name: Box<str>,
    m: StrMatch,
}

/// One compiled alternative of a route's match: every condition must hold.
#[derive(Debug)]
pub(crate) struct MatchRt {
    pub(crate) uri: Option<StrMatch>,
    ignore_uri_case: bool,
    method: Option<StrMatch>,
    scheme: Option<StrMatch>,
    authority: Option<StrMatch>,
    headers: Vec<HeaderCond>,
    without_headers: Vec<HeaderCond>,
    query: Vec<QueryCond>,
    port: Option<u16>,
}

impl StrMatch {
    pub(crate) fn compile(route: &str, m: &StringMatch) -> Result<StrMatch, Error> {
        Ok(match m {
            StringMatch::Exact(s) => StrMatch::Exact(s.as_str().into()),
            StringMatch::Prefix(s) => StrMatch::Prefix(s.as_str().into()),
            StringMatch::Regex(p) => {
                let anchored = format!("^(?:{p})$");
                let compiled = RegexBuilder::new(&anchored)
                    .size_limit(MAX_REGEX_PROGRAM_BYTES)
                    .build();
                StrMatch::Regex(compiled.map_err(|e| Error::InvalidRegex {
                    route: route.to_owned(),
                    pattern: p.clone(),
                    reason: e.to_string(),
                })?)
            }
            StringMatch::Present => StrMatch::Present,
        })
    }

    /// Does a present value match?
    #[inline]
    pub(crate) fn matches(&self, v: &str) -> bool {
        match self {
            StrMatch::Exact(s) => v == &**s,
            StrMatch::Prefix(p) => v.starts_with(&**p),
            StrMatch::Regex(r) => r.is_match(v),
            StrMatch::Present => true,
        }
    }

    /// Like [`StrMatch::matches`], but exact and prefix compare ASCII letters without
    /// case (Istio's `ignoreUriCase` does not apply to regexes).
    #[inline]
    fn matches_ignore_case(&self, v: &str) -> bool {
        match self {
            StrMatch::Exact(s) => v.eq_ignore_ascii_case(s),
            StrMatch::Prefix(p) => {
                v.len() >= p.len() && v.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            }
            other => other.matches(v),
        }
    }
}

impl HeaderCond {
    fn compile(route: &str, h: &HeaderMatch) -> Result<HeaderCond, Error> {
        let name = HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes())
            .map_err(|_| Error::config(route, format!("header name {:?} is not valid", h.name)))?;
        Ok(HeaderCond {
            name,
            m: StrMatch::compile(route, &h.value)?,
        })
    }

    /// Present and matching. Several values of one header are matched joined by `,`,
    /// as Envoy does.
    fn holds(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        let Some(first) = values.next() else {
            return false;
        };
        if let StrMatch::Present = self.m {
            return true;
        }
        match values.next() {
            None => first.to_str().is_ok_and(|v| self.m.matches(v)),
            Some(second) => {
                let mut joined = String::new();
                for v in std::iter::once(first)
                    .chain(std::iter::once(second))
                    .chain(values)
                {
                    let Ok(v) = v.to_str() else { return false };
                    if !joined.is_empty() {
                        joined.push(',');
                    }
                    joined.push_str(v);
                }
                self.m.matches(&joined)
            }
        }
    }
}

impl QueryCond {
    /// The first occurrence of the parameter decides; a parameter without `=` has the
    /// empty value. Values are compared as sent (not percent-decoded), like Envoy.
    fn holds(&self, query: Option<&str>) -> bool {
        let Some(q) = query else { return false };
        for pair in q.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k == &*self.name {
                return self.m.matches(v);
            }
        }
        false
    }
}

impl MatchRt {
    pub(crate) fn compile(route: &str, m: &RouteMatch) -> Result<MatchRt, Error> {
        let opt =
            |s: &Option<StringMatch>| s.as_ref().map(|s| StrMatch::compile(route, s)).transpose();
        let headers = |hs: &[HeaderMatch]| {
            hs.iter()
                .map(|h| HeaderCond::compile(route, h))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(MatchRt {
            uri: opt(&m.uri)?,
            ignore_uri_case: m.ignore_uri_case,
            method: opt(&m.method)?,
            scheme: opt(&m.scheme)?,
            authority: opt(&m.authority)?,
            headers: headers(&m.headers)?,
            without_headers: headers(&m.without_headers)?,
            query: m
                .query_params
                .iter()
                .map(|q| {
                    Ok(QueryCond {
                        name: q.name.as_str().into(),
                        m: StrMatch::compile(route, &q.value)?,
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?,
            port: m.port,
        })
    }

    /// Does the request satisfy every condition? Cheap checks first.
    #[inline]
    pub(crate) fn matches(&self, req: &RequestView<'_>) -> bool {
        if let Some(p) = self.port
            && p != req.port
        {
            return false;
        }
        if let Some(m) = &self.method
            && !m.matches(req.method.as_str())
        {
            return false;
        }
        if let Some(m) = &self.scheme
            && !m.matches(req.scheme)
        {
            return false;
        }
        if let Some(m) = &self.uri {
            let ok = if self.ignore_uri_case {
                m.matches_ignore_case(req.path)
            } else {
                m.matches(req.path)
            };
            if !ok {
                return false;
            }
        }
        if let Some(m) = &self.authority
            && !m.matches(req.authority)
        {
            return false;
        }
        self.headers.iter().all(|h| h.holds(req.headers))
            && !self.without_headers.iter().any(|h| h.holds(req.headers))
            && self.query.iter().all(|q| q.holds(req.query))
    }

    /// The length of the path prefix this match consumed, for a prefix rewrite: the
    /// prefix's length for a prefix match, the whole path for exact and regex matches
    /// (which replace the whole path), and the leading `/` when the match says nothing
    /// about the path.
    pub(crate) fn rewrite_span(m: Option<&MatchRt>, path: &str) -> usize {
        match m.and_then(|m| m.uri.as_ref()) {
            Some(StrMatch::Prefix(p)) => p.len().min(path.len()),
            Some(StrMatch::Exact(_) | StrMatch::Regex(_)) => path.len(),
            _ => usize::from(path.starts_with('/')),
        }
    }
}
