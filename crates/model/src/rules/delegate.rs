//! VirtualService delegation (`http[].delegate`), with istiod's merge: a root rule hands
//! routing to the rules of a delegate VirtualService (one without hosts); each delegate
//! rule's matches are merged with the root rule's (the delegate's must be narrower, else
//! that rule is dropped), and the root rule's other fields fill in what the delegate
//! rule leaves unset. Only one level: a delegate's own `delegate` is ignored.

use std::collections::HashMap;

use skiff_api::networking::{HttpMatchRequest, HttpRoute, VirtualService};
use skiff_api::{Entry, HeaderMatch, StringMatch};

/// VirtualServices without hosts, which root rules may delegate to, by (namespace, name).
pub(crate) type Delegates<'a> = HashMap<(&'a str, &'a str), Entry<'a, VirtualService>>;

/// The delegates of a resource set.
pub(crate) fn collect<'a>(vss: &[Entry<'a, VirtualService>]) -> Delegates<'a> {
    vss.iter()
        .filter(|v| v.hosts.is_empty())
        .map(|v| ((v.namespace(), v.name()), v.clone()))
        .collect()
}

/// A root rule merged with one delegate rule; `None` when their matches conflict.
pub(crate) fn merge_route(root: &HttpRoute, delegate: &HttpRoute) -> Option<HttpRoute> {
    let mut out = delegate.clone();
    out.delegate = None;
    out.r#match = merge_matches(&root.r#match, &delegate.r#match)?;
    out.name = match (&root.name, &delegate.name) {
        (Some(r), Some(d)) => Some(format!("{r}-{d}")),
        (Some(r), None) => Some(r.clone()),
        (None, d) => d.clone(),
    };
    macro_rules! inherit {
        ($($f:ident),*) => {$(
            if out.$f.is_none() {
                out.$f = root.$f.clone();
            }
        )*};
    }
    inherit!(
        rewrite,
        direct_response,
        timeout,
        retries,
        fault,
        mirror,
        mirror_percent,
        mirror_percentage,
        cors_policy,
        headers
    );
    if out.mirrors.is_empty() {
        out.mirrors = root.mirrors.clone();
    }
    Some(out)
}

/// Every delegate match must be narrower than some root match; each pair that does
/// not conflict gives one merged alternative.
fn merge_matches(
    root: &[HttpMatchRequest],
    delegate: &[HttpMatchRequest],
) -> Option<Vec<HttpMatchRequest>> {
    if root.is_empty() {
        return Some(delegate.to_vec());
    }
    if delegate.is_empty() {
        return Some(root.to_vec());
    }
    let mut out = Vec::new();
    for leaf in delegate {
        let before = out.len();
        for r in root {
            if !conflicts(r, leaf) {
                out.push(merge_match(r, leaf));
            }
        }
        if out.len() == before {
            return None;
        }
    }
    Some(out)
}

fn merge_match(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> HttpMatchRequest {
    let mut out = leaf.clone();
    out.name = match (&root.name, &leaf.name) {
        (Some(r), Some(l)) => Some(format!("{r}-{l}")),
        (Some(r), None) => Some(r.clone()),
        (None, l) => l.clone(),
    };
    for (mine, theirs) in [
        (&mut out.uri, &root.uri),
        (&mut out.scheme, &root.scheme),
        (&mut out.method, &root.method),
        (&mut out.authority, &root.authority),
    ] {
        if mine.is_none() {
            mine.clone_from(theirs);
        }
    }
    for (mine, theirs) in [
        (&mut out.headers, &root.headers),
        (&mut out.query_params, &root.query_params),
        (&mut out.without_headers, &root.without_headers),
    ] {
        for (k, v) in theirs {
            mine.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    for (k, v) in &root.source_labels {
        out.source_labels
            .entry(k.clone())
            .or_insert_with(|| v.clone());
    }
    if out.port.is_none() {
        out.port = root.port;
    }
    if out.gateways.is_empty() {
        out.gateways.clone_from(&root.gateways);
    }
    if out.source_namespace.is_none() {
        out.source_namespace.clone_from(&root.source_namespace);
    }
    out
}

/// istiod's `hasConflict`: the leaf must not widen or contradict the root.
fn conflicts(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> bool {
    let pairs = [
        (&root.uri, &leaf.uri),
        (&root.scheme, &leaf.scheme),
        (&root.method, &leaf.method),
        (&root.authority, &leaf.authority),
    ];
    if pairs
        .iter()
        .any(|(r, l)| string_conflict(r.as_ref(), l.as_ref()))
    {
        return true;
    }
    let header_conflict =
        |r: &std::collections::BTreeMap<String, HeaderMatch>,
         l: &std::collections::BTreeMap<String, HeaderMatch>| {
            l.iter().any(|(k, lv)| match (r.get(k), lv) {
                (None, _) => false,
                (Some(HeaderMatch::Value(rv)), HeaderMatch::Value(lv)) => {
                    string_conflict(Some(rv), Some(lv))
                }
                (Some(rv), lv) => rv != lv,
            })
        };
    if header_conflict(&root.headers, &leaf.headers)
        || header_conflict(&root.without_headers, &leaf.without_headers)
        || header_conflict(&root.query_params, &leaf.query_params)
    {
        return true;
    }
    if root.ignore_uri_case != leaf.ignore_uri_case {
        return true;
    }
    if let (Some(r), Some(l)) = (root.port, leaf.port)
        && r != l
    {
        return true;
    }
    if root
        .source_namespace
        .as_ref()
        .is_some_and(|r| leaf.source_namespace.as_ref() != Some(r))
    {
        return true;
    }
    if leaf
        .source_labels
        .iter()
        .any(|(k, v)| root.source_labels.get(k).is_some_and(|r| r != v))
    {
        return true;
    }
    !root.gateways.is_empty()
        && !leaf.gateways.is_empty()
        && !leaf.gateways.iter().all(|g| root.gateways.contains(g))
}

/// A leaf string match must be narrower than the root's: the same exact value, or a
/// prefix or exact value under the root's prefix. Regexes only when equal.
fn string_conflict(root: Option<&StringMatch>, leaf: Option<&StringMatch>) -> bool {
    let (Some(root), Some(leaf)) = (root, leaf) else {
        return false;
    };
    match (root, leaf) {
        (StringMatch::Regex(r), StringMatch::Regex(l)) => r != l,
        (StringMatch::Regex(_), _) | (_, StringMatch::Regex(_)) => true,
        (StringMatch::Exact(r), StringMatch::Exact(l)) => r != l,
        (StringMatch::Exact(_), StringMatch::Prefix(_)) => true,
        (StringMatch::Prefix(r), StringMatch::Prefix(l) | StringMatch::Exact(l)) => {
            !l.starts_with(r.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(uri: StringMatch) -> HttpMatchRequest {
        HttpMatchRequest {
            uri: Some(uri),
            ..HttpMatchRequest::default()
        }
    }

    #[test]
    fn matches_merge_when_the_delegate_is_narrower() {
        let root = [m(StringMatch::Prefix("/shop".into()))];
        let leaf = [m(StringMatch::Prefix("/shop/cart".into()))];
        assert_eq!(merge_matches(&root, &leaf).unwrap(), leaf);
        let wider = [m(StringMatch::Prefix("/".into()))];
        assert!(merge_matches(&root, &wider).is_none());
        let exact = [m(StringMatch::Exact("/other".into()))];
        assert!(merge_matches(&root, &exact).is_none());
        // A delegate match without a uri takes the root's.
        let header = HttpMatchRequest {
            headers: [("x".to_string(), HeaderMatch::Present)].into(),
            ..HttpMatchRequest::default()
        };
        let merged = merge_matches(&root, std::slice::from_ref(&header)).unwrap();
        assert_eq!(merged[0].uri, root[0].uri);
        assert!(merged[0].headers.contains_key("x"));
    }
}
