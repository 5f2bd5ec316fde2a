//! Host names as Istio reads them: resolving short names, matching wildcards, and the
//! list of names an application may use to reach a service.
//!
//! Three different questions live here, and they have different answers:
//!
//! * **What does a `host` field in a config resource mean?** ([`resolve`]) Istio expands a
//!   name without dots (`backend`) relative to the resource's namespace
//!   (`backend.prod.svc.cluster.local`) and takes every other name as written. skiff also
//!   understands the Kubernetes DNS forms `backend.prod` and `backend.prod.svc` when such a
//!   service exists ([`kubernetes_expansion`]); the registry decides that, since it knows
//!   which services exist.
//! * **Does a host pattern cover a name?** ([`covers`], [`intersect`]) `*` covers all names,
//!   `*.example.com` covers every name that ends in `.example.com` (at any depth), and a
//!   plain name covers only itself.
//! * **Which names does an app use?** ([`service_domains`]) Kubernetes DNS lets a pod reach
//!   `backend.prod.svc.cluster.local` as `backend.prod`, `backend.prod.svc`, and, from the
//!   same namespace only, `backend`; each with or without the port.

use std::net::IpAddr;

/// The wildcard that stands for every host.
pub const ANY: &str = "*";

/// Resolves a `host` written in a resource of namespace `namespace` the way Istio does.
///
/// A name without a dot is a Kubernetes service of that namespace:
/// `backend` → `backend.<namespace>.svc.<domain_suffix>`. `*`, wildcards, IP addresses and
/// names with a dot are taken as written (lower-cased).
pub fn resolve(host: &str, namespace: &str, domain_suffix: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == ANY || host.contains('.') || host.contains(':') || host.is_empty() {
        return host;
    }
    format!("{host}.{namespace}.svc.{domain_suffix}")
}

/// The Kubernetes DNS reading of a partly qualified service name: `name.namespace` and
/// `name.namespace.svc` both mean `name.namespace.svc.<domain_suffix>`.
///
/// Istio itself takes such names literally; callers use this as a second reading when the
/// literal name is not a known host. Returns `None` for every other shape of name.
pub fn kubernetes_expansion(host: &str, domain_suffix: &str) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if is_wildcard(&host) || host.parse::<IpAddr>().is_ok() {
        return None;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let (name, namespace) = match labels.as_slice() {
        [name, namespace] => (*name, *namespace),
        [name, namespace, "svc"] => (*name, *namespace),
        _ => return None,
    };
    if !is_dns_label(name) || !is_dns_label(namespace) {
        return None;
    }
    Some(format!("{name}.{namespace}.svc.{domain_suffix}"))
}

/// Splits `name.namespace.svc.<domain_suffix>` into its service name and namespace.
pub fn split_kubernetes_fqdn<'a>(fqdn: &'a str, domain_suffix: &str) -> Option<(&'a str, &'a str)> {
    let rest = fqdn.strip_suffix(domain_suffix)?.strip_suffix(".svc.")?;
    let (name, namespace) = rest.split_once('.')?;
    if is_dns_label(name) && is_dns_label(namespace) {
        Some((name, namespace))
    } else {
        None
    }
}

/// A short form of a host for messages: `backend.prod` for a Kubernetes service, the host
/// itself otherwise.
pub fn display_name(fqdn: &str, domain_suffix: &str) -> String {
    match split_kubernetes_fqdn(fqdn, domain_suffix) {
        Some((name, namespace)) => format!("{name}.{namespace}"),
        None => fqdn.to_string(),
    }
}

/// True when `host` is `*` or starts with `*.`.
pub fn is_wildcard(host: &str) -> bool {
    host.starts_with('*')
}

/// True when the host pattern `pattern` covers the host (or narrower pattern) `name`:
/// every name `name` stands for is also one `pattern` stands for.
///
/// `*` covers everything; `*.example.com` covers `a.example.com`, `a.b.example.com` and
/// `*.b.example.com`, but not `example.com`; a plain name covers only itself. Comparison
/// ignores ASCII case.
pub fn covers(pattern: &str, name: &str) -> bool {
    if pattern == ANY {
        return true;
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        // `suffix` starts with '.'; `name` must be longer than it and end with it.
        if name == ANY {
            return false;
        }
        let name_rest = name.strip_prefix('*').unwrap_or(name);
        return (name_rest.len() > suffix.len() && ends_with_ignore_case(name_rest, suffix))
            || (name.starts_with('*') && name_rest.eq_ignore_ascii_case(suffix));
    }
    !is_wildcard(name) && pattern.eq_ignore_ascii_case(name)
}

/// The names two host patterns have in common, as one pattern: the narrower of the two
/// when one covers the other, `None` when they are disjoint. (Two wildcards either nest or
/// are disjoint, so the result is always one pattern.)
pub fn intersect(a: &str, b: &str) -> Option<String> {
    if covers(a, b) {
        Some(b.to_ascii_lowercase())
    } else if covers(b, a) {
        Some(a.to_ascii_lowercase())
    } else {
        None
    }
}

/// The names an application in namespace `from_namespace` may use to reach service
/// `fqdn` on `port`, lower-case, each with and without `:port`.
///
/// For a Kubernetes service (`name.ns.svc.<domain_suffix>`) these are the FQDN,
/// `name.ns.svc`, `name.ns`, and `name` when `from_namespace` is `ns`. Other hosts
/// (ServiceEntry names, wildcards) are used as written. Service addresses (VIPs) are
/// added too, IPv6 ones in brackets when a port follows.
pub fn service_domains(
    fqdn: &str,
    port: u16,
    from_namespace: &str,
    domain_suffix: &str,
    addresses: &[IpAddr],
) -> Vec<String> {
    let fqdn = fqdn.to_ascii_lowercase();
    let mut names = Vec::with_capacity(4);
    if let Some((name, namespace)) = split_kubernetes_fqdn(&fqdn, domain_suffix) {
        names.push(format!("{name}.{namespace}.svc"));
        names.push(format!("{name}.{namespace}"));
        if namespace == from_namespace {
            names.push(name.to_string());
        }
    }
    let mut domains = Vec::with_capacity(2 * (1 + names.len()) + 3 * addresses.len());
    for name in std::iter::once(fqdn).chain(names) {
        let with_port = format!("{name}:{port}");
        domains.push(name);
        domains.push(with_port);
    }
    for address in addresses {
        match address {
            IpAddr::V4(v4) => {
                domains.push(v4.to_string());
                domains.push(format!("{v4}:{port}"));
            }
            IpAddr::V6(v6) => {
                domains.push(v6.to_string());
                domains.push(format!("[{v6}]"));
                domains.push(format!("[{v6}]:{port}"));
            }
        }
    }
    domains
}

/// True for an RFC 1123 label: 1–63 of `a-z0-9-`, not starting or ending with `-`.
pub fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.is_char_boundary(s.len() - suffix.len())
        && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

#[cfg(test)]
mod tests;
