//! Gateway rules.

use crate::networking::{Gateway, Server, ServerTlsMode, ServerTlsSettings};
use crate::validate::Report;
use crate::validate::common::{is_dns1123_label, is_ip, validate_host, validate_port};

/// Istio's protocol names (case-insensitive); `None` when unsupported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Http,
    Tls,
    Tcp,
    Udp,
}

pub(super) fn parse_protocol(s: &str) -> Option<Protocol> {
    match s.to_ascii_lowercase().as_str() {
        "http" | "http2" | "grpc" | "grpc-web" | "http_proxy" => Some(Protocol::Http),
        "https" | "tls" => Some(Protocol::Tls),
        "tcp" | "mongo" | "redis" | "mysql" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        _ => None,
    }
}

pub(super) const PROTOCOLS: &str =
    "HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TLS, TCP, MONGO, REDIS, MYSQL, UDP";

pub(super) fn validate(r: &mut Report<'_>, g: &Gateway) {
    if g.servers.is_empty() {
        r.error("spec.servers", "gateway must have at least one server");
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, s) in g.servers.iter().enumerate() {
        let path = format!("spec.servers[{i}]");
        server(r, &path, s);
        if names.contains(&s.port.name.as_str()) {
            r.error(
                format!("{path}.port.name"),
                format!(
                    "port names in servers must be unique: duplicate name {}",
                    s.port.name
                ),
            );
        }
        names.push(&s.port.name);
    }
}

fn server(r: &mut Report<'_>, path: &str, s: &Server) {
    if s.hosts.is_empty() {
        r.error(
            format!("{path}.hosts"),
            "server config must contain at least one host",
        );
    }
    for (i, h) in s.hosts.iter().enumerate() {
        if let Err(e) = gateway_host(h) {
            r.error(format!("{path}.hosts[{i}]"), e);
        }
    }
    let pp = format!("{path}.port");
    let protocol = parse_protocol(&s.port.protocol);
    if protocol.is_none() {
        r.error(
            format!("{pp}.protocol"),
            format!(
                "invalid protocol {:?}, supported protocols are {PROTOCOLS}",
                s.port.protocol
            ),
        );
    }
    let unix = s.bind.as_deref().is_some_and(|b| b.starts_with("unix://"));
    if !unix || s.port.number != 0 {
        r.check(format!("{pp}.number"), validate_port(s.port.number.into()));
    }
    if s.port.target_port.is_some_and(|t| t > 0) {
        r.error(
            format!("{pp}.targetPort"),
            "targetPort has no impact on Gateways",
        );
    }
    if s.port.name.is_empty() {
        r.error(format!("{pp}.name"), "port name must be set");
    }
    if let Some(b) = &s.bind
        && !unix
        && !is_ip(b)
    {
        r.error(format!("{path}.bind"), format!("{b} is not a valid IP"));
    }
    if let Some(tls) = &s.tls {
        tls_options(r, &format!("{path}.tls"), tls);
    }
    match (protocol, &s.tls) {
        (Some(Protocol::Tls), None) => r.error(
            path,
            format!(
                "server must have TLS settings for HTTPS/TLS protocols (port {} is {})",
                s.port.number, s.port.protocol
            ),
        ),
        (Some(Protocol::Http), Some(tls)) => {
            let only_redirect = tls.https_redirect
                && tls.server_certificate.is_none()
                && tls.private_key.is_none()
                && tls.ca_certificates.is_none();
            if !only_redirect {
                r.error(format!("{path}.tls"), "server cannot have TLS settings for plain text HTTP ports (only httpsRedirect)");
            }
        }
        (Some(Protocol::Tcp | Protocol::Udp), Some(_)) => {
            r.error(
                format!("{path}.tls"),
                "server cannot have TLS settings for non HTTPS/TLS ports",
            );
        }
        _ => {}
    }
    if let Some(tls) = &s.tls
        && tls.https_redirect
        && protocol != Some(Protocol::Http)
    {
        r.warn(
            format!("{path}.tls.httpsRedirect"),
            "tls.httpsRedirect should only be used with http servers",
        );
    }
}

/// A gateway host: `namespace/dnsName` or a bare `dnsName` (IPs allowed, short names not).
fn gateway_host(host: &str) -> Result<(), String> {
    let name = match host.split_once('/') {
        Some((ns, name)) => {
            if ns.is_empty() || name.is_empty() {
                return Err("config namespace and dnsName in host entry cannot be empty".to_owned());
            }
            if ns != "*" && ns != "." && !is_dns1123_label(ns) {
                return Err(format!("invalid namespace value {ns:?} in gateway"));
            }
            name
        }
        None => host,
    };
    if name != "*" && !name.contains('.') {
        return Err(format!("short names (non FQDN) are not allowed: {name:?}"));
    }
    if validate_host(name).is_err() && !is_ip(name) {
        validate_host(name)?;
    }
    if name.contains('*') && name != "*" && !name.starts_with("*.") {
        return Err(format!("partial wildcard {name:?} not allowed"));
    }
    Ok(())
}

pub(super) fn tls_options(r: &mut Report<'_>, path: &str, tls: &ServerTlsSettings) {
    let Some(mode) = tls.mode else { return };
    match mode {
        ServerTlsMode::IstioMutual => {
            for (field, set) in [
                ("serverCertificate", tls.server_certificate.is_some()),
                ("privateKey", tls.private_key.is_some()),
                ("caCertificates", tls.ca_certificates.is_some()),
                ("credentialName", tls.credential_name.is_some()),
            ] {
                if set {
                    r.error(
                        format!("{path}.{field}"),
                        format!("ISTIO_MUTUAL TLS cannot have {field}"),
                    );
                }
            }
        }
        ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough => {
            if tls.ca_crl.is_some()
                || tls.server_certificate.is_some()
                || tls.private_key.is_some()
                || tls.ca_certificates.is_some()
                || tls.credential_name.is_some()
            {
                r.warn(
                    path,
                    format!(
                        "{} mode does not use certificates, they will be ignored",
                        crate::validate::common::istio_name(&mode)
                    ),
                );
            }
        }
        ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {
            let has_credential = tls.credential_name.is_some()
                || !tls.credential_names.is_empty()
                || !tls.tls_certificates.is_empty();
            if !has_credential {
                let what = if mode == ServerTlsMode::Simple {
                    "SIMPLE"
                } else {
                    "MUTUAL"
                };
                if tls.server_certificate.is_none() {
                    r.error(path, format!("{what} TLS requires a server certificate (serverCertificate or credentialName)"));
                }
                if tls.private_key.is_none() {
                    r.error(
                        path,
                        format!("{what} TLS requires a private key (privateKey or credentialName)"),
                    );
                }
                if mode != ServerTlsMode::Simple && tls.ca_certificates.is_none() {
                    r.error(
                        path,
                        "MUTUAL TLS requires a client CA bundle (caCertificates)",
                    );
                }
            }
            if tls.ca_crl.is_some() {
                if tls.credential_name.is_some() {
                    r.error(
                        format!("{path}.caCrl"),
                        "CRL is not supported with credentialName; put the CRL in the credential",
                    );
                }
                if mode == ServerTlsMode::Simple {
                    r.error(
                        format!("{path}.caCrl"),
                        "CRL is not supported with SIMPLE TLS",
                    );
                }
            }
        }
    }
}
