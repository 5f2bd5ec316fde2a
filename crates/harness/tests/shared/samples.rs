//! The samples of a Prometheus text exposition, to look series up by their labels.

#![allow(dead_code, reason = "each test uses a part")]

use std::collections::BTreeMap;

/// One sample of the text format: name, labels, value.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

pub(crate) fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once("=\"").expect("label");
                (k.to_owned(), v.trim_end_matches('"').to_owned())
            })
            .collect();
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value: value.parse().expect("value"),
        });
    }
    out
}

/// The samples of `name` with (at least) the labels `want`.
pub(crate) fn find<'a>(
    samples: &'a [Sample],
    name: &str,
    want: &[(&str, &str)],
) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}
