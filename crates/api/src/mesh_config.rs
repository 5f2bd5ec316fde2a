//! Istio's MeshConfig, the parts skiff reads: the file istiod reads with `--meshConfig`
//! (in a cluster, the `mesh` key of the `istio` ConfigMap, mounted as a file).
//!
//! Read: `accessLogFile`, `accessLogEncoding` (`TEXT` or `JSON`), `accessLogFormat`;
//! for tracing, `extensionProviders[].opentelemetry` (`service`, `port`),
//! `defaultProviders.tracing` and `defaultConfig.tracing.sampling` (`enableTracing`
//! switches only Istio's legacy tracer, which skiff does not have: `true` is a warning).
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
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MeshConfig {
    /// `accessLogFile`: where sidecars write access logs; empty (Istio's default) means
    /// none. `/dev/stdout` is the proxy's standard output.
    pub access_log_file: String,
    /// `accessLogEncoding`.
    pub access_log_encoding: AccessLogEncoding,
    /// `accessLogFormat`: an Envoy format string replacing Istio's default fields.
    pub access_log_format: String,
    /// `extensionProviders`: the named providers Telemetry resources refer to.
    pub extension_providers: Vec<ExtensionProvider>,
    /// `defaultProviders.tracing`: the tracing providers where no Telemetry names one.
    pub default_tracing_providers: Vec<String>,
    /// `defaultConfig.tracing.sampling`: the sampling percentage (0 to 100) where no
    /// Telemetry sets `randomSamplingPercentage` (Istio's default: 1).
    pub default_tracing_sampling: Option<f64>,
    /// `localityLbSetting`: locality load balancing where no DestinationRule sets it;
    /// `None` when not written (Istio's default then applies: on).
    pub locality_lb_setting: Option<crate::networking::LocalityLoadBalancerSetting>,
}

// The sampling is checked to lie in [0, 100] when read: never NaN.
impl Eq for MeshConfig {}

/// One `extensionProviders` entry: a name and, for the kind skiff has, its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionProvider {
    /// The name Telemetry `providers[].name` uses.
    pub name: String,
    /// `opentelemetry`: an OTLP/gRPC collector. `None` for the other kinds.
    pub opentelemetry: Option<OpenTelemetryProvider>,
}

/// `extensionProviders[].opentelemetry`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OpenTelemetryProvider {
    /// The collector's host (`otel-collector.observability.svc.cluster.local`, or an
    /// address).
    pub service: String,
    /// Its OTLP/gRPC port (4317 by convention).
    pub port: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProvider {
    name: String,
    #[serde(default)]
    opentelemetry: Option<RawOtel>,
    #[serde(flatten)]
    other: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct RawOtel {
    service: String,
    port: u16,
    #[serde(flatten)]
    other: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawDefaultProviders {
    #[serde(default)]
    tracing: Vec<String>,
    #[serde(flatten)]
    other: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct RawDefaultConfig {
    #[serde(default)]
    tracing: Option<RawProxyTracing>,
    #[serde(flatten)]
    other: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct RawProxyTracing {
    #[serde(default)]
    sampling: Option<f64>,
    #[serde(flatten)]
    other: std::collections::BTreeMap<String, serde_json::Value>,
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
    #[serde(default)]
    extension_providers: Vec<RawProvider>,
    #[serde(default)]
    default_providers: RawDefaultProviders,
    #[serde(default)]
    default_config: RawDefaultConfig,
    #[serde(default)]
    enable_tracing: Option<bool>,
    #[serde(default)]
    locality_lb_setting: Option<crate::networking::LocalityLoadBalancerSetting>,
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
    if raw.enable_tracing == Some(true) {
        // Istio's `enableTracing` (default true) only switches the legacy tracer of the
        // proxies' bootstrap (`defaultConfig.tracing.zipkin` and the like), used where
        // no Telemetry and no `defaultProviders.tracing` configure tracing.
        warnings.push(
            "MeshConfig `enableTracing: true`: the legacy tracer (`defaultConfig.tracing.zipkin` \
             and the like) is not implemented; skiff traces through Telemetry `tracing` \
             providers and `defaultProviders.tracing` only"
                .to_owned(),
        );
    }
    let mut extension_providers = Vec::new();
    for p in raw.extension_providers {
        for k in p.other.keys() {
            warnings.push(format!(
                "MeshConfig `extensionProviders` {:?}: the `{k}` provider kind is not \
                 implemented (skiff exports traces over `opentelemetry` only)",
                p.name
            ));
        }
        let opentelemetry = p.opentelemetry.map(|o| {
            for k in o.other.keys() {
                warnings.push(format!(
                    "MeshConfig `extensionProviders` {:?}: `opentelemetry.{k}` is not read \
                     by skiff (spans go over OTLP/gRPC to service:port)",
                    p.name
                ));
            }
            OpenTelemetryProvider {
                service: o.service,
                port: o.port,
            }
        });
        extension_providers.push(ExtensionProvider {
            name: p.name,
            opentelemetry,
        });
    }
    for k in raw.default_providers.other.keys() {
        warnings.push(format!(
            "MeshConfig `defaultProviders.{k}` is not read by skiff; it changes nothing"
        ));
    }
    for k in raw.default_config.other.keys() {
        warnings.push(format!(
            "MeshConfig `defaultConfig.{k}` is not read by skiff; it changes nothing"
        ));
    }
    let tracing = raw.default_config.tracing.unwrap_or_default();
    for k in tracing.other.keys() {
        warnings.push(format!(
            "MeshConfig `defaultConfig.tracing.{k}` is not read by skiff; it changes nothing"
        ));
    }
    if let Some(s) = tracing.sampling
        && !(0.0..=100.0).contains(&s)
    {
        return Err(format!(
            "defaultConfig.tracing.sampling: {s} is not a percentage between 0 and 100"
        ));
    }
    if let Some(l) = &raw.locality_lb_setting {
        check_locality(l)?;
    }
    Ok((
        MeshConfig {
            access_log_file: raw.access_log_file,
            access_log_encoding: raw.access_log_encoding,
            access_log_format: raw.access_log_format,
            extension_providers,
            default_tracing_providers: raw.default_providers.tracing,
            default_tracing_sampling: tracing.sampling,
            locality_lb_setting: raw.locality_lb_setting,
        },
        warnings,
    ))
}

/// What Istio's MeshConfig validation refuses in `localityLbSetting` (the checks a
/// DestinationRule's setting gets too).
fn check_locality(l: &crate::networking::LocalityLoadBalancerSetting) -> Result<(), String> {
    let p = "localityLbSetting";
    if !l.distribute.is_empty() && !l.failover.is_empty() {
        return Err(format!(
            "{p}: can not simultaneously specify 'distribute' and 'failover'"
        ));
    }
    for (i, d) in l.distribute.iter().enumerate() {
        let total: u32 = d.to.values().sum();
        if d.to.values().any(|w| *w == 0 || *w > 100) {
            return Err(format!(
                "{p}.distribute[{i}].to: locality weight must be in range [1, 100]"
            ));
        }
        if total != 100 {
            return Err(format!(
                "{p}.distribute[{i}].to: total locality weight {total} != 100"
            ));
        }
    }
    for (i, f) in l.failover.iter().enumerate() {
        let (from, to) = (
            f.from.as_deref().unwrap_or(""),
            f.to.as_deref().unwrap_or(""),
        );
        if from == to {
            return Err(format!(
                "{p}.failover[{i}]: locality lb failover settings must specify different regions"
            ));
        }
        if [from, to]
            .iter()
            .any(|s| s.contains('/') || s.contains('*'))
        {
            return Err(format!(
                "{p}.failover[{i}]: locality lb failover only specifies regions, without '/' or '*'"
            ));
        }
    }
    Ok(())
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

    #[test]
    fn reads_the_locality_setting_and_refuses_what_istio_refuses() {
        let (c, w) = parse(
            "localityLbSetting:\n  enabled: true\n  distribute:\n  - from: r1/*\n    to:\n      r1/*: 80\n      r2/*: 20\n",
        )
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
        let l = c.locality_lb_setting.expect("read");
        assert_eq!(l.enabled, Some(true));
        assert_eq!(l.distribute[0].to["r2/*"], 20);
        let e =
            parse("localityLbSetting:\n  distribute:\n  - from: r1/*\n    to:\n      r1/*: 80\n")
                .unwrap_err();
        assert!(e.contains("total locality weight 80 != 100"), "{e}");
        let e = parse("localityLbSetting:\n  failover:\n  - from: r1\n    to: r1\n").unwrap_err();
        assert!(e.contains("different regions"), "{e}");
        assert!(parse("localityLbSetting:\n  bogus: 1\n").is_err());
        assert_eq!(parse("").unwrap().0.locality_lb_setting, None);
    }

    #[test]
    fn reads_the_opentelemetry_providers_and_the_default_sampling() {
        let (c, w) = parse(
            "extensionProviders:\n- name: otel\n  opentelemetry:\n    service: collector.obs\n    port: 4317\n\
             - name: zipkin\n  zipkin:\n    service: z\n    port: 9411\n\
             defaultProviders:\n  tracing: [otel]\n\
             defaultConfig:\n  tracing:\n    sampling: 25\n",
        )
        .unwrap();
        assert_eq!(
            c.extension_providers[0].opentelemetry,
            Some(OpenTelemetryProvider {
                service: "collector.obs".into(),
                port: 4317
            })
        );
        assert_eq!(c.extension_providers[1].opentelemetry, None);
        assert_eq!(c.default_tracing_providers, ["otel"]);
        assert_eq!(c.default_tracing_sampling, Some(25.0));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("zipkin"));
        assert!(parse("defaultConfig:\n  tracing:\n    sampling: 101\n").is_err());
        // `enableTracing: false` is what skiff does without a tracing provider.
        assert!(parse("enableTracing: false\n").unwrap().1.is_empty());
        assert!(parse("enableTracing: true\n").unwrap().1[0].contains("legacy tracer"));
    }
}
