//! SPIFFE ids of workloads: `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.

use std::fmt;
use std::str::FromStr;

use crate::IdentityError;

/// The namespace the control plane's own identity lives in.
pub const CONTROL_PLANE_NAMESPACE: &str = "skiff-system";
/// The service account of the control plane's own identity.
pub const CONTROL_PLANE_SERVICE_ACCOUNT: &str = "skiff-control";

const SCHEME: &str = "spiffe://";

/// The identity of a workload, in the form Istio gives Kubernetes workloads:
/// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
///
/// Always valid: the constructor and [`FromStr`] check the SPIFFE rules (lower-case
/// trust domain of `a-z 0-9 . - _`, path segments of `A-Z a-z 0-9 . - _`, no empty,
/// `.` or `..` segment). Ordered and hashable, so it can key maps and sets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: String,
    namespace: String,
    service_account: String,
}

impl SpiffeId {
    /// The id of service account `service_account` in `namespace` of `trust_domain`.
    pub fn new(
        trust_domain: impl Into<String>,
        namespace: impl Into<String>,
        service_account: impl Into<String>,
    ) -> Result<Self, IdentityError> {
        let id = SpiffeId {
            trust_domain: trust_domain.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        };
        let fail = |reason: String| IdentityError::InvalidSpiffeId {
            input: id.to_string(),
            reason,
        };
        check_trust_domain(&id.trust_domain).map_err(fail)?;
        check_segment("namespace", &id.namespace).map_err(fail)?;
        check_segment("service account", &id.service_account).map_err(fail)?;
        Ok(id)
    }

    /// The identity of the control plane in `trust_domain`:
    /// `spiffe://<trust domain>/ns/skiff-system/sa/skiff-control`. Proxies expect it
    /// on the control plane's serving certificate.
    pub fn control_plane(trust_domain: &str) -> Result<Self, IdentityError> {
        Self::new(
            trust_domain,
            CONTROL_PLANE_NAMESPACE,
            CONTROL_PLANE_SERVICE_ACCOUNT,
        )
    }

    /// The trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The service account.
    pub fn service_account(&self) -> &str {
        &self.service_account
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl FromStr for SpiffeId {
    type Err = IdentityError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| IdentityError::InvalidSpiffeId {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let rest = match input.get(..SCHEME.len()) {
            Some(scheme) if scheme == SCHEME => &input[SCHEME.len()..],
            Some(scheme) if scheme.eq_ignore_ascii_case(SCHEME) => {
                return Err(fail(
                    "the scheme must be written `spiffe://`, in lower case",
                ));
            }
            _ => return Err(fail("it does not start with `spiffe://`")),
        };
        let (trust_domain, path) = rest.split_once('/').unwrap_or((rest, ""));
        let segments: Vec<&str> = path.split('/').collect();
        match segments.as_slice() {
            ["ns", namespace, "sa", service_account] => {
                SpiffeId::new(trust_domain, *namespace, *service_account).map_err(|err| match err {
                    IdentityError::InvalidSpiffeId { reason, .. } => fail(&reason),
                    other => other,
                })
            }
            _ => {
                // Say what is wrong with the trust domain first: it is the likelier typo.
                check_trust_domain(trust_domain).map_err(|reason| fail(&reason))?;
                Err(fail(&format!(
                    "the path is `/{path}`, not `/ns/<namespace>/sa/<service account>`"
                )))
            }
        }
    }
}

pub(crate) fn check_trust_domain(td: &str) -> Result<(), String> {
    if td.is_empty() {
        return Err("the trust domain is empty".into());
    }
    if td.len() > 255 {
        return Err("the trust domain is longer than 255 characters".into());
    }
    match td
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        Some(c) => Err(format!(
            "the trust domain `{td}` has `{c}`; only a-z, 0-9, `.`, `-` and `_` are allowed (no port, no user, lower case)"
        )),
        None => Ok(()),
    }
}

fn check_segment(what: &str, segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if segment == "." || segment == ".." {
        return Err(format!("the {what} cannot be `{segment}`"));
    }
    match segment
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_'))
    {
        Some(c) => Err(format!(
            "the {what} `{segment}` has `{c}`; only letters, digits, `.`, `-` and `_` are allowed"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
