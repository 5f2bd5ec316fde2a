//! Istio's MeshConfig, the parts skiff reads: the file istiod reads with `--meshConfig`
//! (in a cluster, the `mesh` key of the `istio` ConfigMap, mounted as a file).
//!
//! Read: `accessLogFile`, `accessLogEncoding` (`TEXT` or `JSON`), `accessLogFormat`.
//! Every other field is named in a warning, so nothing is silently taken as applied.

use serde::Deserialize;

/// `accessLogEncoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccessLogEncoding {
    /// Envoy's text line (Istio's default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The MeshConfig fields skiff reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MeshConfig {
    /// `accessLogFile`: where sidecars write access logs; empty (Istio's default) means
    /// none. `/dev/stdout` is the proxy's standard output.
    pub access_log_file: String,
    /// `accessLogEncoding`.
    pub access_log_encoding: AccessLogEncoding,
    /// `accessLogFormat`: an Envoy format string replacing Istio's default fields.
    pub access_log_format: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    access_log_file: String,
    #[serde(default)]
    access_log_encoding: AccessLogEncoding,
    #[serde(default)]
    access_log_format: String,
    #[serde(flatten)]
    other: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Parses a MeshConfig YAML text: the config and the warnings about what skiff does
/// not read, or the reason it is not a MeshConfig.
pub fn parse(text: &str) -> Result<(MeshConfig, Vec<String>), String> {
    let raw: Raw = if text.trim().is_empty() {
        serde_saphyr::from_str("{}").map_err(|e| e.to_string())?
    } else {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())?
    };
    let mut warnings: Vec<String> = raw
        .other
        .keys()
        .map(|k| format!("MeshConfig `{k}` is not read by skiff; it changes nothing"))
        .collect();
    if !matches!(raw.access_log_file.as_str(), "" | "/dev/stdout") {
        warnings.push(format!(
            "MeshConfig `accessLogFile: {}`: skiff's proxies write access logs to their \
             standard output only",
            raw.access_log_file
        ));
    }
    if !raw.access_log_format.is_empty() {
        warnings.push(
            "MeshConfig `accessLogFormat` is not implemented: access logs keep Istio's \
             default fields"
                .to_owned(),
        );
    }
    Ok((
        MeshConfig {
            access_log_file: raw.access_log_file,
            access_log_encoding: raw.access_log_encoding,
            access_log_format: raw.access_log_format,
        },
        warnings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_access_log_fields_and_names_the_rest() {
        let (c, w) = parse(
            "accessLogFile: /dev/stdout\naccessLogEncoding: JSON\ntrustDomain: example.org\n",
        )
        .unwrap();
        assert_eq!(c.access_log_file, "/dev/stdout");
        assert_eq!(c.access_log_encoding, AccessLogEncoding::Json);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("trustDomain"));
        assert_eq!(parse("").unwrap().0, MeshConfig::default());
        assert!(parse("accessLogEncoding: XML\n").is_err());
    }
}
