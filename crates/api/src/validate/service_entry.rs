//! ServiceEntry, WorkloadEntry and WorkloadGroup rules.

use std::collections::BTreeMap;

use crate::networking::{Resolution, ServiceEntry, WorkloadEntry, WorkloadGroup};
use crate::validate::Report;
use crate::validate::common::istio_name;
use crate::validate::common::{
    export_to, is_dns1123_label, is_ip, labels, selector_labels, validate_fqdn, validate_host,
    validate_ip_subnet, validate_port,
};
use crate::validate::gateway::{PROTOCOLS, Protocol, parse_protocol};

pub(super) fn validate(r: &mut Report<'_>, se: &ServiceEntry) {
    if let Some(sel) = &se.workload_selector {
        selector_labels(
            r,
            "spec.workloadSelector.labels",
            "spec.workloadSelector",
            &sel.labels,
        );
        if !se.endpoints.is_empty() {
            r.error(
                "spec.workloadSelector",
                "only one of workloadSelector or endpoints is allowed in a ServiceEntry",
            );
        }
    }
    if se.hosts.is_empty() {
        r.error("spec.hosts", "service entry must have at least one host");
    }
    for (i, h) in se.hosts.iter().enumerate() {
        let p = format!("spec.hosts[{i}]");
        if h == "*" {
            r.error(p, "invalid host *: a ServiceEntry cannot cover every host");
            continue;
        }
        r.check(p.clone(), validate_host(h));
        if h.contains('*') && !h.starts_with("*.") {
            r.warn(p, format!("partial wildcard {h:?} not allowed"));
        }
    }
    let mut cidr = false;
    for (i, a) in se.addresses.iter().enumerate() {
        cidr |= a.contains('/');
        r.check(format!("spec.addresses[{i}]"), validate_ip_subnet(a));
    }
    let resolution = se.resolution.unwrap_or(Resolution::None);
    if cidr && !matches!(resolution, Resolution::None | Resolution::Static) {
        r.error(
            "spec.resolution",
            "CIDR addresses are allowed only for NONE/STATIC resolution types",
        );
    }
    let mut names: Vec<&str> = Vec::new();
    let mut numbers: Vec<u32> = Vec::new();
    for (i, p) in se.ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        if names.contains(&p.name.as_str()) {
            r.error(
                format!("{pp}.name"),
                format!("service entry port name {:?} already defined", p.name),
            );
        }
        names.push(&p.name);
        if numbers.contains(&p.number) {
            r.error(
                format!("{pp}.number"),
                format!("service entry port {} already defined", p.number),
            );
        }
        numbers.push(p.number);
        if let Some(t) = p.target_port
            && t != 0
        {
            r.check(format!("{pp}.targetPort"), validate_port(t.into()));
            if resolution == Resolution::None {
                r.warn(
                    format!("{pp}.targetPort"),
                    "targetPort has no effect when resolution mode is NONE",
                );
            }
        }
        if !is_dns1123_label(&p.name) {
            r.error(
                format!("{pp}.name"),
                format!("invalid port name: {:?}", p.name),
            );
        }
        // An empty protocol asks for detection (Istio's `ValidateProtocol`).
        if let Some(proto) = &p.protocol
            && !proto.is_empty()
            && parse_protocol(proto).is_none()
        {
            r.error(
                format!("{pp}.protocol"),
                format!("unsupported protocol {proto:?}; supported protocols are {PROTOCOLS}"),
            );
        }
        r.check(format!("{pp}.number"), validate_port(p.number.into()));
    }
    let port_names: Vec<&str> = se.ports.iter().map(|p| p.name.as_str()).collect();
    match resolution {
        Resolution::None => {
            if !se.endpoints.is_empty() {
                r.error(
                    "spec.endpoints",
                    "no endpoints should be provided for resolution type NONE",
                );
            }
            if se.workload_selector.is_some() {
                r.warn(
                    "spec.workloadSelector",
                    "workloadSelector should not be set when resolution mode is NONE",
                );
            }
        }
        Resolution::Static => {
            for (i, e) in se.endpoints.iter().enumerate() {
                workload_entry(
                    r,
                    &format!("spec.endpoints[{i}]"),
                    e,
                    Some(&port_names),
                    false,
                );
            }
        }
        Resolution::Dns | Resolution::DnsRoundRobin => {
            if se.endpoints.is_empty() {
                for (i, h) in se.hosts.iter().enumerate() {
                    if validate_fqdn(h).is_err() {
                        r.error(format!("spec.hosts[{i}]"), format!("hosts must be FQDN if no endpoints are provided for resolution mode {}", istio_name(&resolution)));
                    }
                }
            }
            if resolution == Resolution::DnsRoundRobin && se.endpoints.len() > 1 {
                r.error(
                    "spec.endpoints",
                    "there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN",
                );
            }
            for (i, e) in se.endpoints.iter().enumerate() {
                let p = format!("spec.endpoints[{i}]");
                match &e.address {
                    Some(a) if is_ip(a) || validate_fqdn(a).is_ok() => {}
                    Some(a) => r.error(
                        format!("{p}.address"),
                        format!("endpoint address {a:?} is not a valid FQDN or an IP address"),
                    ),
                    None => r.error(format!("{p}.address"), "endpoint address is required"),
                }
                labels(r, &format!("{p}.labels"), &e.labels);
                endpoint_ports(r, &p, &e.ports, Some(&port_names));
            }
            if se.workload_selector.is_some() {
                r.warn(
                    "spec.workloadSelector",
                    format!(
                        "workloadSelector should not be set when resolution mode is {}",
                        istio_name(&resolution)
                    ),
                );
            }
        }
        Resolution::DynamicDns => {
            if !se.endpoints.is_empty() {
                r.error(
                    "spec.endpoints",
                    "no endpoints should be provided for resolution type DYNAMIC_DNS",
                );
            }
        }
    }
    if resolution != Resolution::None && se.hosts.len() > 1 {
        let opaque = se.ports.iter().any(|p| {
            !matches!(
                p.protocol.as_deref().and_then(parse_protocol),
                Some(Protocol::Http | Protocol::Tls)
            )
        });
        if opaque {
            r.error("spec.hosts", "multiple hosts provided with non-HTTP, non-TLS ports: plain TCP cannot tell the hosts apart");
        }
    }
    export_to(r, "spec.exportTo", &se.export_to, true);
}

fn endpoint_ports(
    r: &mut Report<'_>,
    path: &str,
    ports: &BTreeMap<String, u32>,
    service_ports: Option<&[&str]>,
) {
    for (name, port) in ports {
        let p = crate::yaml::join_key(&format!("{path}.ports"), name);
        if let Some(sp) = service_ports
            && !sp.contains(&name.as_str())
        {
            r.error(
                p.clone(),
                format!("endpoint port {name:?} is not defined by the service entry"),
            );
        }
        if !is_dns1123_label(name) {
            r.error(p.clone(), format!("invalid port name: {name:?}"));
        }
        r.check(p, validate_port((*port).into()));
    }
}

/// A WorkloadEntry (the kind, or a ServiceEntry endpoint at `path`).
pub(super) fn workload_entry(
    r: &mut Report<'_>,
    path: &str,
    we: &WorkloadEntry,
    service_ports: Option<&[&str]>,
    allow_fqdn: bool,
) {
    match we.address.as_deref() {
        None | Some("") => {
            if we.network.is_none() {
                r.error(format!("{path}.address"), "address is required");
            } else {
                r.warn(
                    format!("{path}.address"),
                    format!(
                        "address is unset with network {:?}",
                        we.network.as_deref().unwrap_or_default()
                    ),
                );
            }
        }
        Some(a) if a.starts_with("unix://") => {
            let socket = &a["unix://".len()..];
            if !socket.starts_with('@') && (!socket.starts_with('/') || socket.ends_with('/')) {
                r.error(
                    format!("{path}.address"),
                    format!("{socket} is not an absolute path to a file"),
                );
            }
            if !we.ports.is_empty() {
                r.error(
                    format!("{path}.ports"),
                    format!("unix endpoint {a} must not include ports"),
                );
            }
        }
        Some(a) if is_ip(a) => {}
        Some(a) if !allow_fqdn => r.error(
            format!("{path}.address"),
            format!("endpoint address {a:?} is not a valid IP address"),
        ),
        Some(a) => {
            if validate_fqdn(a).is_err() {
                r.error(
                    format!("{path}.address"),
                    format!("endpoint address {a:?} is not a valid FQDN or an IP address"),
                );
            }
        }
    }
    endpoint_ports(r, path, &we.ports, service_ports);
    labels(r, &format!("{path}.labels"), &we.labels);
}

pub(super) fn workload_group(r: &mut Report<'_>, wg: &WorkloadGroup) {
    if let Some(m) = &wg.metadata {
        labels(r, "spec.metadata.labels", &m.labels);
    }
    labels(r, "spec.template.labels", &wg.template.labels);
    if let Some(p) = &wg.probe {
        for (field, v) in [
            ("periodSeconds", p.period_seconds),
            ("initialDelaySeconds", p.initial_delay_seconds),
            ("timeoutSeconds", p.timeout_seconds),
            ("successThreshold", p.success_threshold),
            ("failureThreshold", p.failure_threshold),
        ] {
            if v.is_some_and(|v| v < 0) {
                r.error(
                    format!("spec.probe.{field}"),
                    format!("{field} must be non-negative"),
                );
            }
        }
        let methods = [
            p.http_get.is_some(),
            p.tcp_socket.is_some(),
            p.exec.is_some(),
            p.grpc.is_some(),
        ];
        match methods.iter().filter(|m| **m).count() {
            0 => r.error(
                "spec.probe",
                "a probe needs one of httpGet, tcpSocket, exec or grpc",
            ),
            1 => {}
            _ => r.error(
                "spec.probe",
                "set only one of httpGet, tcpSocket, exec or grpc",
            ),
        }
        if let Some(h) = &p.http_get {
            r.check("spec.probe.httpGet.port", validate_port(h.port.into()));
            for (i, header) in h.http_headers.iter().enumerate() {
                if let Some(name) = &header.name
                    && (name.is_empty()
                        || !name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                {
                    r.error(
                        format!("spec.probe.httpGet.httpHeaders[{i}].name"),
                        format!(
                            "header name {name:?} is invalid: it should match ^[-_A-Za-z0-9]+$"
                        ),
                    );
                }
            }
            if let Some(s) = &h.scheme
                && s != "HTTP"
                && s != "HTTPS"
            {
                r.error(
                    "spec.probe.httpGet.scheme",
                    "httpGet.scheme must be one of \"HTTPS\", \"HTTP\"",
                );
            }
        }
        if let Some(t) = &p.tcp_socket {
            r.check("spec.probe.tcpSocket.port", validate_port(t.port.into()));
        }
        if let Some(e) = &p.exec
            && e.command.is_empty()
        {
            r.error("spec.probe.exec.command", "exec.command is required");
        }
    }
}
