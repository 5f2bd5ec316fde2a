//! DestinationRule rules.

use crate::networking::{
    ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, DestinationRule, H2UpgradePolicy,
    LoadBalancerSettings, OutlierDetection, TrafficPolicy,
};
use crate::validate::Report;
use crate::validate::common::{
    export_to, is_dns1123_label, is_ip, labels, validate_duration, validate_fqdn, validate_host,
    validate_port, workload_selector,
};

pub(super) fn validate(r: &mut Report<'_>, dr: &DestinationRule) {
    r.check("spec.host", validate_host(&dr.host));
    if let Some(tp) = &dr.traffic_policy {
        traffic_policy(r, "spec.trafficPolicy", tp);
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, s) in dr.subsets.iter().enumerate() {
        let p = format!("spec.subsets[{i}]");
        if names.contains(&s.name.as_str()) {
            r.error(
                format!("{p}.name"),
                format!("duplicate subset names: {}", s.name),
            );
        }
        names.push(&s.name);
        if s.name.is_empty() {
            r.error(format!("{p}.name"), "subset name cannot be empty");
        } else if !is_dns1123_label(&s.name) {
            r.error(
                format!("{p}.name"),
                format!("subset name is invalid: {}", s.name),
            );
        }
        labels(r, &format!("{p}.labels"), &s.labels);
        if let Some(tp) = &s.traffic_policy {
            traffic_policy(r, &format!("{p}.trafficPolicy"), tp);
        }
    }
    export_to(r, "spec.exportTo", &dr.export_to, false);
    if let Some(sel) = &dr.workload_selector {
        workload_selector(r, "spec.workloadSelector", sel);
        let ns = r.namespace().to_owned();
        if dr.export_to.iter().any(|e| e != "." && *e != ns) {
            r.error("spec.exportTo", "destination rule with workload selector cannot have exportTo beyond current namespace");
        }
    }
}

fn traffic_policy(r: &mut Report<'_>, path: &str, tp: &TrafficPolicy) {
    if tp.load_balancer.is_none()
        && tp.connection_pool.is_none()
        && tp.outlier_detection.is_none()
        && tp.tls.is_none()
        && tp.port_level_settings.is_empty()
        && tp.tunnel.is_none()
        && tp.proxy_protocol.is_none()
        && tp.retry_budget.is_none()
    {
        r.error(path, "traffic policy must have at least one field");
        return;
    }
    if tp.tunnel.is_some() && tp.proxy_protocol.is_some() {
        r.error(path, "tunnel and proxyProtocol must not be set together");
    }
    if let Some(od) = &tp.outlier_detection {
        outlier(r, &format!("{path}.outlierDetection"), od);
    }
    if let Some(cp) = &tp.connection_pool {
        connection_pool(r, &format!("{path}.connectionPool"), cp);
    }
    if let Some(lb) = &tp.load_balancer {
        load_balancer(
            r,
            &format!("{path}.loadBalancer"),
            lb,
            tp.outlier_detection.is_some(),
        );
    }
    if let Some(tls) = &tp.tls {
        client_tls(r, &format!("{path}.tls"), tls);
    }
    for (i, pl) in tp.port_level_settings.iter().enumerate() {
        let p = format!("{path}.portLevelSettings[{i}]");
        match &pl.port {
            None => r.error(p.clone(), "portLevelSettings entries must have a port"),
            Some(port) => r.check(
                format!("{p}.port.number"),
                validate_port(port.number.unwrap_or(0).into()),
            ),
        }
        if pl.load_balancer.is_none()
            && pl.connection_pool.is_none()
            && pl.outlier_detection.is_none()
            && pl.tls.is_none()
        {
            r.error(
                p.clone(),
                "port traffic policy must have at least one field",
            );
        }
        if let Some(od) = &pl.outlier_detection {
            outlier(r, &format!("{p}.outlierDetection"), od);
        }
        if let Some(cp) = &pl.connection_pool {
            connection_pool(r, &format!("{p}.connectionPool"), cp);
        }
        if let Some(lb) = &pl.load_balancer {
            load_balancer(
                r,
                &format!("{p}.loadBalancer"),
                lb,
                pl.outlier_detection.is_some(),
            );
        }
        if let Some(tls) = &pl.tls {
            client_tls(r, &format!("{p}.tls"), tls);
        }
    }
    if let Some(t) = &tp.tunnel {
        let p = format!("{path}.tunnel");
        if let Some(proto) = &t.protocol
            && proto != "CONNECT"
            && proto != "POST"
        {
            r.error(
                format!("{p}.protocol"),
                "tunnel protocol must be \"CONNECT\" or \"POST\"",
            );
        }
        if validate_fqdn(&t.target_host).is_err() && !is_ip(&t.target_host) {
            r.error(
                format!("{p}.targetHost"),
                format!(
                    "tunnel target host {:?} must be a valid FQDN or IP address",
                    t.target_host
                ),
            );
        }
        r.check(
            format!("{p}.targetPort"),
            validate_port(t.target_port.into()),
        );
    }
    if let Some(rb) = &tp.retry_budget
        && let Some(pct) = rb.percent
        && !(0.0..=100.0).contains(&pct)
    {
        r.error(
            format!("{path}.retryBudget.percent"),
            format!("retry budget percent {pct} is not in range 0..100"),
        );
    }
}

fn outlier(r: &mut Report<'_>, path: &str, od: &OutlierDetection) {
    if let Some(d) = &od.base_ejection_time {
        r.check(format!("{path}.baseEjectionTime"), validate_duration(d));
    }
    if let Some(d) = &od.interval {
        r.check(format!("{path}.interval"), validate_duration(d));
    }
    if od.consecutive_errors.is_some_and(|c| c != 0) {
        r.warn(format!("{path}.consecutiveErrors"), "outlier detection consecutiveErrors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead");
    }
    if !od.split_external_local_origin_errors.unwrap_or(false)
        && od.consecutive_local_origin_failures.unwrap_or(0) > 0
    {
        r.error(
            format!("{path}.consecutiveLocalOriginFailures"),
            "consecutiveLocalOriginFailures is set, but splitExternalLocalOriginErrors is false",
        );
    }
    for (field, v) in [
        ("maxEjectionPercent", od.max_ejection_percent),
        ("minHealthPercent", od.min_health_percent),
    ] {
        if let Some(v) = v
            && !(0..=100).contains(&v)
        {
            r.error(
                format!("{path}.{field}"),
                format!("percentage {v} is not in range 0..100"),
            );
        }
    }
}

fn connection_pool(r: &mut Report<'_>, path: &str, cp: &ConnectionPoolSettings) {
    if cp.http.is_none() && cp.tcp.is_none() {
        r.error(path, "connection pool must have at least one field");
        return;
    }
    if let Some(h) = &cp.http {
        let p = format!("{path}.http");
        for (field, v) in [
            ("http1MaxPendingRequests", h.http1_max_pending_requests),
            ("http2MaxRequests", h.http2_max_requests),
            ("maxRequestsPerConnection", h.max_requests_per_connection),
            ("maxRetries", h.max_retries),
            ("maxConcurrentStreams", h.max_concurrent_streams),
        ] {
            if v.is_some_and(|v| v < 0) {
                r.error(
                    format!("{p}.{field}"),
                    format!("{field} must be non-negative"),
                );
            }
        }
        if let Some(d) = &h.idle_timeout {
            r.check(format!("{p}.idleTimeout"), validate_duration(d));
        }
        if let Some(k) = &h.http2_keep_alive {
            let kp = format!("{p}.http2KeepAlive");
            for (field, v) in [("interval", &k.interval), ("timeout", &k.timeout)] {
                match v {
                    None => r.error(kp.clone(), format!("http2 keepalive {field} is required")),
                    Some(d) => r.check(format!("{kp}.{field}"), validate_duration(d)),
                }
            }
        }
        if h.h2_upgrade_policy == Some(H2UpgradePolicy::Upgrade)
            && h.use_client_protocol == Some(true)
        {
            r.error(
                format!("{p}.useClientProtocol"),
                "useClientProtocol must not be true when h2UpgradePolicy is UPGRADE",
            );
        }
    }
    if let Some(t) = &cp.tcp {
        let p = format!("{path}.tcp");
        if t.max_connections.is_some_and(|v| v < 0) {
            r.error(
                format!("{p}.maxConnections"),
                "maxConnections must be non-negative",
            );
        }
        for (field, d) in [
            ("connectTimeout", &t.connect_timeout),
            ("maxConnectionDuration", &t.max_connection_duration),
            ("idleTimeout", &t.idle_timeout),
        ] {
            if let Some(d) = d {
                r.check(format!("{p}.{field}"), validate_duration(d));
            }
        }
        if let Some(ka) = &t.tcp_keepalive {
            for (field, d) in [("time", &ka.time), ("interval", &ka.interval)] {
                if let Some(d) = d {
                    r.check(format!("{p}.tcpKeepalive.{field}"), validate_duration(d));
                }
            }
        }
    }
}

fn load_balancer(r: &mut Report<'_>, path: &str, lb: &LoadBalancerSettings, has_outlier: bool) {
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        r.error(path, "set only one of simple or consistentHash");
    }
    if let Some(ch) = &lb.consistent_hash {
        let p = format!("{path}.consistentHash");
        let keys = [
            ch.http_header_name.is_some(),
            ch.http_cookie.is_some(),
            ch.use_source_ip.is_some(),
            ch.http_query_parameter_name.is_some(),
        ];
        if keys.iter().filter(|k| **k).count() > 1 {
            r.error(
                p.clone(),
                "set only one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName",
            );
        }
        if ch.minimum_ring_size.is_some_and(|v| v != 0) {
            r.warn(
                format!("{p}.minimumRingSize"),
                "minimumRingSize is deprecated, use ringHash.minimumRingSize instead",
            );
            if ch.ring_hash.is_some() || ch.maglev.is_some() {
                r.error(
                    format!("{p}.minimumRingSize"),
                    "only one of minimumRingSize or maglev/ringHash can be specified",
                );
            }
        }
        if ch.ring_hash.is_some() && ch.maglev.is_some() {
            r.error(p.clone(), "set only one of ringHash or maglev");
        }
        if let Some(m) = &ch.maglev {
            let size = m.table_size.unwrap_or(0);
            if size == 0 {
                r.error(
                    format!("{p}.maglev.tableSize"),
                    "tableSize must be set for maglev",
                );
            } else if size >= 5_000_011 {
                r.error(
                    format!("{p}.maglev.tableSize"),
                    "tableSize must be less than 5000011 for maglev",
                );
            } else if !is_prime(size) {
                r.error(
                    format!("{p}.maglev.tableSize"),
                    "tableSize must be a prime number for maglev",
                );
            }
        }
        if let Some(c) = &ch.http_cookie {
            if c.name.is_empty() {
                r.error(
                    format!("{p}.httpCookie.name"),
                    "name required for httpCookie",
                );
            }
            if let Some(d) = &c.ttl
                && !d.value().is_zero()
            {
                r.check(format!("{p}.httpCookie.ttl"), validate_duration(d));
            }
        }
    }
    if let Some(l) = &lb.locality_lb_setting {
        let p = format!("{path}.localityLbSetting");
        if !l.distribute.is_empty() && !l.failover.is_empty() {
            r.error(
                p.clone(),
                "can not simultaneously specify 'distribute' and 'failover'",
            );
        }
        for (i, d) in l.distribute.iter().enumerate() {
            let total: u32 = d.to.values().sum();
            if d.to.values().any(|w| *w == 0 || *w > 100) {
                r.error(
                    format!("{p}.distribute[{i}].to"),
                    "locality weight must be in range [1, 100]",
                );
            } else if total != 100 {
                r.error(
                    format!("{p}.distribute[{i}].to"),
                    format!("total locality weight {total} != 100"),
                );
            }
        }
        for (i, f) in l.failover.iter().enumerate() {
            let fp = format!("{p}.failover[{i}]");
            if f.from == f.to {
                r.error(
                    fp.clone(),
                    "locality lb failover settings must specify different regions",
                );
            }
            let parts = [
                f.from.as_deref().unwrap_or(""),
                f.to.as_deref().unwrap_or(""),
            ];
            if parts.iter().any(|s| s.contains('/')) {
                r.error(fp.clone(), "locality lb failover only specify region");
            }
            if parts.iter().any(|s| s.contains('*')) {
                r.error(
                    fp,
                    "locality lb failover region should not contain '*' wildcard",
                );
            }
        }
        if (!l.failover.is_empty() || !l.failover_priority.is_empty()) && !has_outlier {
            r.warn(p, "outlier detection policy must be provided for failover");
        }
    }
    if let Some(d) = &lb.warmup_duration_secs {
        r.check(format!("{path}.warmupDurationSecs"), validate_duration(d));
    }
    if let Some(w) = &lb.warmup {
        r.check(
            format!("{path}.warmup.duration"),
            validate_duration(&w.duration),
        );
        if lb.warmup_duration_secs.is_some() {
            r.error(
                format!("{path}.warmup"),
                "set only one of warmup or warmupDurationSecs",
            );
        }
        if w.minimum_percent.is_some_and(|v| v > 100.0) {
            r.error(
                format!("{path}.warmup.minimumPercent"),
                "minimumPercent value should be less than or equal to 100",
            );
        }
        if w.aggression.is_some_and(|v| v <= 0.0) {
            r.error(
                format!("{path}.warmup.aggression"),
                "aggression should be greater than 0",
            );
        }
    }
}

fn is_prime(x: u64) -> bool {
    if x != 0 && x < 4 {
        return true;
    }
    if x & 1 == 0 {
        return false;
    }
    let mut f = 3;
    while f * f <= x {
        if x.is_multiple_of(f) {
            return false;
        }
        f += 2;
    }
    true
}

pub(super) fn client_tls(r: &mut Report<'_>, path: &str, tls: &ClientTlsSettings) {
    let mode = tls.mode.unwrap_or(ClientTlsMode::Disable);
    if tls.insecure_skip_verify == Some(true) {
        if mode == ClientTlsMode::Simple
            && (tls.ca_certificates.is_some()
                || tls.credential_name.is_some()
                || !tls.subject_alt_names.is_empty())
        {
            r.error(path, "cannot specify caCertificates, credentialName or subjectAltNames when insecureSkipVerify is true");
        }
        if mode == ClientTlsMode::Mutual
            && (tls.ca_certificates.is_some() || !tls.subject_alt_names.is_empty())
        {
            r.error(
                path,
                "cannot specify caCertificates or subjectAltNames when insecureSkipVerify is true",
            );
        }
    }
    if matches!(mode, ClientTlsMode::Simple | ClientTlsMode::Mutual)
        && tls.credential_name.is_some()
    {
        if tls.client_certificate.is_some()
            || tls.ca_certificates.is_some()
            || tls.private_key.is_some()
            || tls.ca_crl.is_some()
        {
            r.error(path, "cannot specify client certificates or CA certificate or CA CRL if credentialName is set");
        }
        return;
    }
    if mode == ClientTlsMode::Mutual {
        if tls.client_certificate.is_none() {
            r.error(path, "client certificate required for mutual tls");
        }
        if tls.private_key.is_none() {
            r.error(path, "private key required for mutual tls");
        }
    }
}
