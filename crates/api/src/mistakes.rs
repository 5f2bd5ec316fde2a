//! Mistakes common enough in published examples that skiff names them precisely.
//!
//! A field listed here is not part of Istio's API, and Istio rejects it. skiff reports
//! it as a loud warning with the right fix instead of a bare "unknown field" error, and
//! ignores the field. Keep this list short: anything else unknown is an error.

/// (Rust type name as serde reports it, field, hint).
const KNOWN_MISTAKES: &[(&str, &str, &str)] = &[(
    "AccessLogging",
    "format",
    "`format` is not a field of Telemetry accessLogging and Istio rejects it; skiff ignores \
     it. The access log format belongs to the provider, in MeshConfig \
     (extensionProviders[].envoyFileAccessLog.logFormat or envoyOtelAls.logFormat)",
)];

/// The hint for a known mistake, if `field` of `type_name` is one.
pub(crate) fn known_mistake(type_name: &str, field: &str) -> Option<&'static str> {
    KNOWN_MISTAKES
        .iter()
        .find(|(t, f, _)| *t == type_name && *f == field)
        .map(|(_, _, hint)| *hint)
}
