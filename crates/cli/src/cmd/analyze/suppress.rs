//! `--suppress CODE=Kind name[.namespace]`, with `*` as a wildcard (as istioctl's).

use skiff_model::analyze::Message;

/// One `--suppress` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Suppression {
    code: String,
    kind: String,
    name: String,
}

impl Suppression {
    pub(crate) fn parse(s: &str) -> anyhow::Result<Suppression> {
        let bad = || {
            anyhow::anyhow!(
                "{s:?} is not a valid suppression: write CODE=Kind name[.namespace], e.g. \
                 \"IST0118=Service productpage.default\" (`*` matches any text)"
            )
        };
        let (code, resource) = s.split_once('=').ok_or_else(bad)?;
        let (kind, name) = resource.trim().split_once(' ').ok_or_else(bad)?;
        if code.trim().is_empty() || kind.is_empty() || name.trim().is_empty() {
            return Err(bad());
        }
        Ok(Suppression {
            code: code.trim().to_string(),
            kind: kind.to_string(),
            name: name.trim().to_string(),
        })
    }

    /// Whether the message is one this suppression leaves out.
    pub(crate) fn matches(&self, m: &Message) -> bool {
        let Some(r) = &m.resource else { return false };
        glob(&self.code, m.code)
            && glob(&self.kind, &r.kind)
            && (glob(&self.name, &format!("{}.{}", r.name, r.namespace))
                || glob(&self.name, &r.name))
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("*.default", "reviews.default"));
        assert!(!glob("*.default", "reviews.prod"));
        assert!(glob("rev*ws", "reviews"));
        assert!(!glob("rev*x", "reviews"));
        assert!(glob("IST0118", "IST0118"));
    }
}
