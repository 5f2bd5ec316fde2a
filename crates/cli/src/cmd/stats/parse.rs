//! A reader of the Prometheus text exposition format (version 0.0.4), as far as the
//! golden metrics need it: every sample line, with its metric name, labels and value.
//! Comments (`# HELP`, `# TYPE`, `# EOF`) and timestamps are skipped.

/// One sample: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: Labels,
    pub(crate) value: f64,
}

impl Sample {
    /// The value of label `name`, or `""` (Prometheus treats a missing label as empty).
    pub(crate) fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Every sample of `text` whose metric name `keep` accepts. A line that is not a
/// sample is an error naming its line number.
pub(crate) fn parse(text: &str, keep: impl Fn(&str) -> bool) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .ok_or_else(|| format!("line {}: a sample without a value: {line:?}", i + 1))?;
        let name = &line[..name_end];
        if !keep(name) {
            continue;
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            labels(&line[name_end + 1..]).map_err(|e| format!("line {}: {e}", i + 1))?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let value = rest
            .split_whitespace()
            .next()
            .ok_or_else(|| format!("line {}: no value: {line:?}", i + 1))?;
        let value = number(value).ok_or_else(|| format!("line {}: bad value {value:?}", i + 1))?;
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(out)
}

/// A sample value or `le` bound: Go's float syntax, `+Inf`, `-Inf`, `NaN`.
pub(crate) fn number(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// A sample's labels, in the order written.
type Labels = Vec<(String, String)>;

/// The labels after `{`, up to and including `}`; returns them and the rest of the line.
fn labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((out, rest));
        }
        let eq = s.find('=').ok_or("a label without '='")?;
        let key = s[..eq].trim().to_owned();
        s = s[eq + 1..].trim_start();
        s = s.strip_prefix('"').ok_or("a label value without quotes")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("an unfinished escape".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("an unterminated label value".into()),
            }
        };
        out.push((key, value));
        s = s[end + 1..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}
