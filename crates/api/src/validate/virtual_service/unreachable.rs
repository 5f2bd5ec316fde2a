//! Istio's unreachable-rule and ineffective-match warnings (`analyzeUnreachable*Rules`
//! of `pkg/config/validation`): a rule after one without `match`, a match that repeats
//! an earlier one, and an HTTP URI prefix match covered by an earlier, shorter prefix.
//! `istioctl analyze` reports them as IST0130 VirtualServiceUnreachableRule and IST0131
//! VirtualServiceIneffectiveMatch.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::networking::{HttpMatchRequest, VirtualService};
use crate::types::{HeaderMatch, StringMatch};
use crate::validate::Report;

const UNREACHABLE: &str = "IST0130";
const INEFFECTIVE: &str = "IST0131";

pub(super) fn check(r: &mut Report<'_>, vs: &VirtualService) {
    let http: Vec<Rule<'_, HttpMatchRequest>> = vs
        .http
        .iter()
        .enumerate()
        .map(|(i, h)| Rule {
            path: format!("spec.http[{i}]"),
            name: match &h.name {
                Some(n) if !n.is_empty() => format!("{n:?}"),
                _ => format!("#{i}"),
            },
            matches: h.r#match.iter().collect(),
        })
        .collect();
    let overlapping = rules(
        r,
        &http,
        |m| {
            let mut key = m.clone();
            key.name = None;
            json(&key)
        },
        |m, j| match &m.name {
            Some(n) if !n.is_empty() => format!("{n:?}"),
            _ => format!("#{j}"),
        },
    );
    prefix_overlaps(r, &http, &overlapping);
    let tcp: Vec<Rule<'_, _>> = vs
        .tcp
        .iter()
        .enumerate()
        .map(|(i, t)| Rule {
            path: format!("spec.tcp[{i}]"),
            name: format!("#{i}"),
            matches: t.r#match.iter().collect(),
        })
        .collect();
    rules(r, &tcp, json, |_, j| format!("#{j}"));
    let tls: Vec<Rule<'_, _>> = vs
        .tls
        .iter()
        .enumerate()
        .map(|(i, t)| Rule {
            path: format!("spec.tls[{i}]"),
            name: format!("#{i}"),
            matches: t.r#match.iter().collect(),
        })
        .collect();
    rules(r, &tls, json, |_, j| format!("#{j}"));
}

struct Rule<'a, M> {
    path: String,
    name: String,
    matches: Vec<&'a M>,
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The duplicate checks, the same for HTTP, TCP and TLS. Returns, for HTTP, the
/// (rule, match) pairs that take part in the prefix-overlap check (first occurrences,
/// before any catch-all).
fn rules<M>(
    r: &mut Report<'_>,
    rules: &[Rule<'_, M>],
    key: impl Fn(&M) -> String,
    match_name: impl Fn(&M, usize) -> String,
) -> Vec<(usize, usize)> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut catch_all: Option<usize> = None;
    let mut first = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if rule.matches.is_empty() {
            if let Some(prev) = catch_all {
                unused(r, rule, "only the last rule can have no matches", prev);
            }
            catch_all = Some(i);
            continue;
        }
        let mut dups = 0;
        for (j, m) in rule.matches.iter().enumerate() {
            if let Some(prev) = catch_all {
                unused(r, rule, "route without matches defined before", prev);
                continue;
            }
            let k = key(m);
            if let Some(&prev) = seen.get(&k) {
                let (mn, dn) = (match_name(m, j), rules[prev].name.clone());
                r.warn_code(
                    INEFFECTIVE,
                    vec![rule.name.clone(), mn.clone(), dn.clone()],
                    format!("{}.match[{j}]", rule.path),
                    format!(
                        "virtualService rule {} match {mn} is not used (duplicate/overlapping \
                         match in rule {dn}): remove it, or make it differ from rule {dn}'s",
                        rule.name
                    ),
                );
                dups += 1;
                continue;
            }
            seen.insert(k, i);
            first.push((i, j));
        }
        if dups == rule.matches.len() {
            unused(r, rule, "all matches used by prior rules", usize::MAX);
        }
    }
    first
}

fn unused<M>(r: &mut Report<'_>, rule: &Rule<'_, M>, reason: &str, catch_all: usize) {
    let fix = if catch_all == usize::MAX {
        "remove it, or give it a match no earlier rule has".to_string()
    } else {
        format!("rule #{catch_all} has no match and takes every request: move it last")
    };
    r.warn_code(
        UNREACHABLE,
        vec![rule.name.clone(), reason.to_string()],
        rule.path.clone(),
        format!(
            "virtualService rule {} not used ({reason}): {fix}",
            rule.name
        ),
    );
}

/// An HTTP match reduced to what Istio compares for prefix overlaps.
struct PrefixMatch {
    rule: usize,
    index: usize,
    name: String,
    prefix: String,
    port: Option<u32>,
    method: String,
    authority: String,
    headers: BTreeMap<String, String>,
    query: BTreeMap<String, String>,
    without: BTreeMap<String, String>,
}

fn exact_or_prefix(m: Option<&StringMatch>) -> String {
    match m {
        Some(StringMatch::Exact(v)) if !v.is_empty() => format!("exact:{v}"),
        Some(StringMatch::Prefix(v)) if !v.is_empty() => format!("prefix:{v}"),
        _ => String::new(),
    }
}

fn values(map: &BTreeMap<String, HeaderMatch>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| (k.clone(), exact_or_prefix(v.string_match())))
        .collect()
}

fn prefix_match(rule: usize, j: usize, m: &HttpMatchRequest) -> Option<PrefixMatch> {
    let Some(StringMatch::Prefix(prefix)) = &m.uri else {
        return None;
    };
    if prefix.is_empty() {
        return None;
    }
    let mut method = exact_or_prefix(m.method.as_ref());
    if method.is_empty() {
        // As in Istio: a match without a method counts as GET.
        method = "exact:GET".to_string();
    }
    Some(PrefixMatch {
        rule,
        index: j,
        name: match &m.name {
            Some(n) if !n.is_empty() => format!("{n:?}"),
            _ => format!("#{j}"),
        },
        prefix: prefix.clone(),
        port: m.port,
        method,
        authority: exact_or_prefix(m.authority.as_ref()),
        headers: values(&m.headers),
        query: values(&m.query_params),
        without: values(&m.without_headers),
    })
}

/// Whether every request `b` takes is taken by the earlier `a` (Istio's
/// `coveredValidation`).
fn covers(a: &PrefixMatch, b: &PrefixMatch) -> bool {
    let value = |va: &str, vb: &str| va == vb || va.starts_with(vb);
    let maps = |ma: &BTreeMap<String, String>, mb: &BTreeMap<String, String>| {
        ma.len() == mb.len()
            && ma
                .iter()
                .all(|(k, va)| mb.get(k).is_some_and(|vb| value(va, vb)))
    };
    b.prefix.starts_with(&a.prefix)
        && a.port == b.port
        && value(&a.method, &b.method)
        && value(&a.authority, &b.authority)
        && maps(&a.headers, &b.headers)
        && maps(&a.query, &b.query)
        && maps(&a.without, &b.without)
}

fn prefix_overlaps(
    r: &mut Report<'_>,
    http: &[Rule<'_, HttpMatchRequest>],
    first: &[(usize, usize)],
) {
    let prefixed: Vec<PrefixMatch> = first
        .iter()
        .filter_map(|&(i, j)| prefix_match(i, j, http[i].matches[j]))
        .collect();
    for (ai, a) in prefixed.iter().enumerate() {
        for b in &prefixed[ai + 1..] {
            if b.prefix == a.prefix || !covers(a, b) {
                continue;
            }
            let (rb, ra) = (&http[b.rule], &http[a.rule]);
            let mb = format!("{} of prefix {}", b.name, b.prefix);
            let ma = format!("{} of prefix {} on {}", a.name, a.prefix, ra.name);
            let j = b.index;
            r.warn_code(
                INEFFECTIVE,
                vec![rb.name.clone(), mb.clone(), ma.clone()],
                format!("{}.match[{j}]", rb.path),
                format!(
                    "virtualService rule {} match {mb} is not used (duplicate/overlapping match \
                     in rule {ma}): put the longer prefix first",
                    rb.name
                ),
            );
        }
    }
}
