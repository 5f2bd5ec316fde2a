//! Validation with Istio's rules and messages (from Istio's `pkg/config/validation`),
//! reported per field with its position.
//!
//! Each kind has its own module. Everything is checked and every problem reported;
//! nothing stops at the first error.

mod common;
mod destination_rule;
mod gateway;
mod security;
mod service_entry;
mod set;
mod sidecar;
mod telemetry;
mod virtual_service;

use crate::diagnostic::{Diagnostic, Severity};
use crate::resource::{Resource, ResourceSet, Spec};

pub use common::{RETRY_ON_POLICIES, validate_duration, validate_host, validate_port};

/// Collects the diagnostics about one resource.
pub(crate) struct Report<'a> {
    resource: &'a Resource,
    out: Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    fn new(resource: &'a Resource) -> Self {
        Report {
            resource,
            out: Vec::new(),
        }
    }

    /// An error about the value at `path`.
    pub(crate) fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.out.push(Diagnostic::for_field(
            Severity::Error,
            self.resource,
            path,
            message,
        ));
    }

    /// A warning about the value at `path`.
    pub(crate) fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.out.push(Diagnostic::for_field(
            Severity::Warning,
            self.resource,
            path,
            message,
        ));
    }

    /// A warning that `istioctl analyze` reports with message `code` and these values.
    pub(crate) fn warn_code(
        &mut self,
        code: &'static str,
        args: Vec<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        let mut d = Diagnostic::for_field(Severity::Warning, self.resource, path, message);
        d.analysis = Some(Box::new(crate::diagnostic::AnalysisCode { code, args }));
        self.out.push(d);
    }

    /// An error about the key at `path` (the field should not be there).
    pub(crate) fn error_at_key(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.out.push(Diagnostic::for_key(
            Severity::Error,
            self.resource,
            path,
            message,
        ));
    }

    /// Reports `Err(message)` as an error at `path`.
    pub(crate) fn check(&mut self, path: impl Into<String>, result: Result<(), String>) {
        if let Err(message) = result {
            self.error(path, message);
        }
    }

    /// Whether the resource's document writes the field at `path` (even as `{}`).
    pub(crate) fn written(&self, path: &str) -> bool {
        self.resource.origin.fields.get(path).is_some()
    }

    /// The namespace of the resource.
    pub(crate) fn namespace(&self) -> &str {
        self.resource.namespace()
    }

    /// An annotation of the resource, when set.
    pub(crate) fn annotation(&self, key: &str) -> Option<&str> {
        self.resource
            .metadata
            .annotations
            .get(key)
            .map(String::as_str)
    }
}

/// Validates one resource alone: its metadata and its spec, with Istio's rules for its
/// kind.
pub fn validate(resource: &Resource) -> Vec<Diagnostic> {
    let mut r = Report::new(resource);
    common::metadata(&mut r, resource);
    match &resource.spec {
        Spec::VirtualService(s) => virtual_service::validate(&mut r, s),
        Spec::DestinationRule(s) => destination_rule::validate(&mut r, s),
        Spec::Gateway(s) => gateway::validate(&mut r, s),
        Spec::ServiceEntry(s) => service_entry::validate(&mut r, s),
        Spec::WorkloadEntry(s) => service_entry::workload_entry(&mut r, "spec", s, None, true),
        Spec::WorkloadGroup(s) => service_entry::workload_group(&mut r, s),
        Spec::Sidecar(s) => sidecar::validate(&mut r, s),
        Spec::PeerAuthentication(s) => security::peer_authentication(&mut r, s),
        Spec::AuthorizationPolicy(s) => security::authorization_policy(&mut r, s),
        Spec::RequestAuthentication(s) => security::request_authentication(&mut r, s),
        Spec::Telemetry(s) => telemetry::validate(&mut r, s),
        Spec::Service(s) => common::service(&mut r, s),
        Spec::Pod(s) => common::pod(&mut r, "spec", s),
        Spec::Deployment(s) => common::deployment(&mut r, s),
        Spec::Job(s) => common::job(&mut r, "spec", s),
        Spec::CronJob(s) => common::cron_job(&mut r, s),
        Spec::Namespace(_) => {}
    }
    r.out
}

/// Validates resources against each other (for now: the same kind, namespace and name
/// defined twice). Returns the set without the rejected resources, and the diagnostics.
pub fn validate_set(set: ResourceSet) -> (ResourceSet, Vec<Diagnostic>) {
    set::validate(set)
}
