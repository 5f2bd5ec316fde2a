//! Where a token is: the headers, query parameters and cookies a rule names, and how
//! it is taken out of the request before it goes upstream.

use http::HeaderName;
use http::request::Parts;

/// One place a rule reads a token from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A header; the prefix (`Bearer `) is cut off, compared ignoring ASCII case.
    Header { name: HeaderName, prefix: String },
    /// A query parameter.
    Param(String),
    /// A cookie.
    Cookie(String),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Header { name, .. } => write!(f, "header {name}"),
            Location::Param(p) => write!(f, "query parameter {p}"),
            Location::Cookie(c) => write!(f, "cookie {c}"),
        }
    }
}

impl Location {
    /// The token at this place, if the request has one. A header whose value does not
    /// start with the prefix carries none (as in Envoy); any other bytes are a token,
    /// to be judged.
    pub(crate) fn find(&self, parts: &Parts) -> Option<String> {
        match self {
            Location::Header { name, prefix } => {
                let value = String::from_utf8_lossy(parts.headers.get(name)?.as_bytes());
                let value = value.trim();
                let token = if prefix.is_empty() {
                    value
                } else {
                    let head = value.get(..prefix.len())?;
                    if !head.eq_ignore_ascii_case(prefix) {
                        return None;
                    }
                    &value[prefix.len()..]
                };
                Some(token.trim().to_string())
            }
            Location::Param(name) => parts.uri.query()?.split('&').find_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key) == *name).then(|| percent_decode(value))
            }),
            Location::Cookie(name) => {
                parts
                    .headers
                    .get_all(http::header::COOKIE)
                    .iter()
                    .find_map(|header| {
                        let header = String::from_utf8_lossy(header.as_bytes());
                        header.split(';').find_map(|pair| {
                            let (key, value) = pair.split_once('=')?;
                            (key.trim() == name).then(|| {
                                let value = value.trim();
                                value
                                    .strip_prefix('"')
                                    .and_then(|v| v.strip_suffix('"'))
                                    .unwrap_or(value)
                                    .to_string()
                            })
                        })
                    })
            }
        }
    }

    /// Takes the token out of the request (`forwardOriginalToken: false`): the whole
    /// header, as Envoy does, or the query parameter (Envoy leaves parameters in place;
    /// skiff takes them out too, so the app never sees a credential the proxy consumed).
    /// Cookies stay, as in Envoy: the Cookie header carries the app's other cookies.
    pub(crate) fn remove(&self, parts: &mut Parts) {
        match self {
            Location::Header { name, .. } => {
                parts.headers.remove(name);
            }
            Location::Param(name) => {
                let Some(query) = parts.uri.query() else {
                    return;
                };
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        percent_decode(pair.split_once('=').map_or(*pair, |p| p.0)) != *name
                    })
                    .collect();
                let path = parts.uri.path();
                let path_and_query = if kept.is_empty() {
                    path.to_string()
                } else {
                    format!("{path}?{}", kept.join("&"))
                };
                let mut uri = parts.uri.clone().into_parts();
                uri.path_and_query = path_and_query.parse().ok();
                if let Ok(uri) = http::Uri::from_parts(uri) {
                    parts.uri = uri;
                }
            }
            Location::Cookie(_) => {}
        }
    }
}

/// `%XX` decoded (invalid escapes kept as written); not valid UTF-8: replaced.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2))
            && let (Some(h), Some(l)) = (hex(h), hex(l))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
