//! Sidecar rules.

use crate::networking::{CaptureMode, OutboundTrafficMode, ServerTlsMode, Sidecar};
use crate::validate::Report;
use crate::validate::common::{is_dns1123_label, is_ip, selector_labels, validate_port};
use crate::validate::gateway::{PROTOCOLS, parse_protocol, tls_options};
use crate::validate::virtual_service::destination;

pub(super) fn validate(r: &mut Report<'_>, s: &Sidecar) {
    if let Some(sel) = &s.workload_selector {
        selector_labels(
            r,
            "spec.workloadSelector.labels",
            "spec.workloadSelector",
            &sel.labels,
        );
    }
    if s.egress.is_empty()
        && s.ingress.is_empty()
        && s.outbound_traffic_policy.is_none()
        && s.inbound_connection_pool.is_none()
    {
        r.error("spec", "sidecar: empty configuration provided");
        return;
    }
    let mut ports: Vec<u32> = Vec::new();
    for (i, l) in s.ingress.iter().enumerate() {
        let p = format!("spec.ingress[{i}]");
        if l.port.target_port.is_some_and(|t| t > 0) {
            r.error(
                format!("{p}.port.targetPort"),
                "targetPort has no impact on Sidecars",
            );
        }
        port(
            r,
            &format!("{p}.port"),
            l.port.name.as_deref(),
            l.port.protocol.as_deref(),
            l.port.number.unwrap_or(0),
        );
        let number = l.port.number.unwrap_or(0);
        if ports.contains(&number) {
            r.error(
                format!("{p}.port.number"),
                "sidecar: ports on IP bound listeners must be unique",
            );
        }
        ports.push(number);
        if let Some(b) = &l.bind
            && !is_ip(b)
        {
            r.error(format!("{p}.bind"), format!("{b} is not a valid IP"));
        }
        if let Some(ep) = &l.default_endpoint
            && !ep.starts_with("unix://")
        {
            let ok = ep.rsplit_once(':').is_some_and(|(host, port)| {
                matches!(host, "" | "127.0.0.1" | "0.0.0.0" | "[::1]" | "[::]")
                    && port.parse::<i64>().is_ok_and(|n| validate_port(n).is_ok())
            });
            if !ok {
                r.error(format!("{p}.defaultEndpoint"), "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>, 0.0.0.0:<port>, [::1]:<port>, [::]:<port>, unix://<path> or unset");
            }
        }
        if let Some(tls) = &l.tls {
            let tp = format!("{p}.tls");
            if !tls.subject_alt_names.is_empty() {
                r.error(
                    format!("{tp}.subjectAltNames"),
                    "sidecar: subjectAltNames is not supported in ingress tls",
                );
            }
            if tls.https_redirect {
                r.error(
                    format!("{tp}.httpsRedirect"),
                    "sidecar: httpsRedirect is not supported",
                );
            }
            if tls.credential_name.is_some() {
                r.error(
                    format!("{tp}.credentialName"),
                    "sidecar: credentialName is not currently supported",
                );
            }
            if matches!(
                tls.mode,
                Some(ServerTlsMode::IstioMutual | ServerTlsMode::AutoPassthrough)
            ) {
                r.error(
                    format!("{tp}.mode"),
                    "cannot set mode to ISTIO_MUTUAL or AUTO_PASSTHROUGH in sidecar ingress tls",
                );
            }
            tls_options(r, &tp, tls);
        }
    }
    let mut ports: Vec<u32> = Vec::new();
    let mut catch_all = false;
    for (i, e) in s.egress.iter().enumerate() {
        let p = format!("spec.egress[{i}]");
        match &e.port {
            None => {
                if catch_all {
                    r.error(
                        p.clone(),
                        "sidecar: egress can have only one listener with empty port",
                    );
                } else if i != s.egress.len() - 1 {
                    r.error(p.clone(), "sidecar: the egress listener with empty port should be the last listener in the list");
                }
                catch_all = true;
            }
            Some(sp) => {
                let number = sp.number.unwrap_or(0);
                let unix = e.bind.as_deref().is_some_and(|b| b.starts_with("unix://"));
                if number == 0 {
                    if !unix {
                        r.error(format!("{p}.bind"), "sidecar: ports with 0 value must have a unix domain socket bind address");
                    }
                    if !matches!(
                        e.capture_mode,
                        None | Some(CaptureMode::Default | CaptureMode::None)
                    ) {
                        r.error(format!("{p}.captureMode"), "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners");
                    }
                } else {
                    port(
                        r,
                        &format!("{p}.port"),
                        sp.name.as_deref(),
                        sp.protocol.as_deref(),
                        number,
                    );
                    if ports.contains(&number) {
                        r.error(
                            format!("{p}.port.number"),
                            "sidecar: ports on IP bound listeners must be unique",
                        );
                    }
                    ports.push(number);
                    if let Some(b) = &e.bind
                        && !is_ip(b)
                    {
                        r.error(format!("{p}.bind"), format!("{b} is not a valid IP"));
                    }
                }
            }
        }
        if e.hosts.is_empty() {
            r.error(
                format!("{p}.hosts"),
                "sidecar: egress listener must contain at least one host",
            );
        }
        for (j, h) in e.hosts.iter().enumerate() {
            let hp = format!("{p}.hosts[{j}]");
            match h.split_once('/') {
                None => r.error(hp, format!("host {h:?} must be of form namespace/dnsName")),
                Some((ns, name)) => {
                    if ns.is_empty() || name.is_empty() {
                        r.error(
                            hp,
                            "config namespace and dnsName in host entry cannot be empty",
                        );
                        continue;
                    }
                    if !matches!(ns, "*" | "." | "~") && !is_dns1123_label(ns) {
                        r.error(
                            hp.clone(),
                            format!("invalid namespace value {ns:?} in sidecar"),
                        );
                    }
                    if name != "*" && !name.contains('.') {
                        r.error(
                            hp.clone(),
                            format!("short names (non FQDN) are not allowed: {name:?}"),
                        );
                    }
                    if name != "*" {
                        r.check(hp.clone(), crate::validate::common::validate_host(name));
                    }
                    if name.contains('*') && name != "*" && !name.starts_with("*.") {
                        r.error(hp, format!("partial wildcard {name:?} not allowed"));
                    }
                }
            }
        }
    }
    if let Some(otp) = &s.outbound_traffic_policy
        && let Some(proxy) = &otp.egress_proxy
    {
        if otp.mode != Some(OutboundTrafficMode::AllowAny) {
            r.error(
                "spec.outboundTrafficPolicy.egressProxy",
                "sidecar: egressProxy must be set only with ALLOW_ANY outboundTrafficPolicy mode",
            );
        } else if proxy.port.is_none() {
            r.error(
                "spec.outboundTrafficPolicy.egressProxy",
                "sidecar: egressProxy port must be set",
            );
        } else {
            destination(r, "spec.outboundTrafficPolicy.egressProxy", proxy);
        }
    }
}

fn port(r: &mut Report<'_>, path: &str, name: Option<&str>, protocol: Option<&str>, number: u32) {
    if let Some(n) = name
        && !n.is_empty()
        && !is_dns1123_label(n)
    {
        r.error(format!("{path}.name"), format!("invalid port name: {n:?}"));
    }
    if let Some(p) = protocol
        && !p.is_empty()
        && parse_protocol(p).is_none()
    {
        r.error(
            format!("{path}.protocol"),
            format!("unsupported protocol {p:?}; supported protocols are {PROTOCOLS}"),
        );
    }
    r.check(format!("{path}.number"), validate_port(number.into()));
}
