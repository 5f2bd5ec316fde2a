//! Diagnostics: errors and warnings with the file, line and column, the resource and
//! the field path they are about.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::resource::{Origin, Position, Resource};

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The resource is rejected.
    Error,
    /// The resource is used, but something in it is ignored or suspicious.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem, placed as precisely as skiff can.
///
/// Displays as `file:line:column: Kind namespace/name: field.path: message`; parts that
/// are not known are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file, as named to the loader.
    #[serde(serialize_with = "serialize_path")]
    pub file: Arc<Path>,
    /// Where in the file.
    pub position: Option<Position>,
    /// `Kind namespace/name`, when known.
    pub resource: Option<String>,
    /// The field path, e.g. `spec.http[0].route[1].weight`.
    pub path: Option<String>,
    /// What is wrong, and when possible what was expected.
    pub message: String,
    /// The `istioctl analyze` message Istio gives this finding, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Box<AnalysisCode>>,
}

/// An `istioctl analyze` message code with the values of its template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnalysisCode {
    /// The code, e.g. `IST0130`.
    pub code: &'static str,
    /// The values the code's message template names, in order.
    pub args: Vec<String>,
}

fn serialize_path<S: serde::Serializer>(p: &Arc<Path>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.display().to_string())
}

impl Diagnostic {
    /// A diagnostic about a field of a loaded resource; the position comes from the
    /// resource's field index (the nearest written parent when the field itself is not
    /// written).
    pub fn for_field(
        severity: Severity,
        resource: &Resource,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let path = path.into();
        Diagnostic {
            severity,
            file: resource.origin.file.clone(),
            position: Some(field_position(&resource.origin, &path, false)),
            resource: Some(resource.display_name()),
            path: (!path.is_empty()).then_some(path),
            message: message.into(),
            analysis: None,
        }
    }

    /// Like [`Diagnostic::for_field`] but pointing at the field's key rather than its
    /// value (for "this field should not be here" messages).
    pub fn for_key(
        severity: Severity,
        resource: &Resource,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let path = path.into();
        Diagnostic {
            position: Some(field_position(&resource.origin, &path, true)),
            ..Diagnostic::for_field(severity, resource, path.clone(), message)
        }
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

fn field_position(origin: &Origin, path: &str, prefer_key: bool) -> Position {
    match origin.fields.lookup(path) {
        Some(p) if prefer_key => p.key.unwrap_or(p.value),
        Some(p) => p.value,
        None => origin.position,
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.position {
            write!(f, ":{p}")?;
        }
        if let Some(r) = &self.resource {
            write!(f, ": {r}")?;
        }
        if let Some(p) = &self.path {
            write!(f, ": {p}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The diagnostics of a load, in file and position order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Number of errors.
    pub fn errors(&self) -> usize {
        self.0.iter().filter(|d| d.is_error()).count()
    }

    /// Number of warnings.
    pub fn warnings(&self) -> usize {
        self.0.len() - self.errors()
    }

    /// True when there is at least one error.
    pub fn has_errors(&self) -> bool {
        self.errors() > 0
    }

    /// Iterates over the diagnostics.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// Sorts by file, position, then severity (errors first).
    pub(crate) fn sort(&mut self) {
        self.0.sort_by(|a, b| {
            (&a.file, a.position, a.severity).cmp(&(&b.file, b.position, b.severity))
        });
        self.0.dedup();
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
