//! `skiff explain --from WORKLOAD [-X METHOD] [-H k:v] http://HOST[:PORT]/PATH`: a
//! request walked through the compiled configuration without sending it. The route is
//! chosen by the proxy's own matcher (`skiff_proxy::simulate`), on the config the
//! control plane would push to WORKLOAD; the token (RequestAuthentication) and the
//! authorization decision by the proxy's own code, on the config of each endpoint's
//! workload.

use anyhow::{Context, bail};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde_json::{Value, json};
use skiff_model::config::ProxyConfig;
use skiff_proxy::config::Snapshot;
use skiff_proxy::route::RequestView;
use skiff_proxy::simulate::{AuthzRequest, authenticate, authorize};

use super::provenance::{Provenance, parse_cluster, short_host};
use crate::cmd::proxy_config;

/// The request to simulate.
pub(crate) struct Request {
    pub(crate) from: String,
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) headers: Vec<String>,
}

/// Walks `req` through the configuration of `p`: the result as JSON (see
/// docs/debugging.md).
pub(crate) async fn simulate(p: &Provenance, req: &Request) -> anyhow::Result<Value> {
    let mesh = p.mesh();
    let from = mesh.compile(&req.from).with_context(|| {
        format!(
            "no workload {:?} in the configuration (write <name>.<namespace>)",
            req.from
        )
    })?;
    let uri: Uri = req
        .url
        .parse()
        .with_context(|| format!("not a URL: {}", req.url))?;
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .context("the URL needs a host: http://HOST[:PORT]/PATH")?;
    let port = uri.port_u16().unwrap_or(80);
    let method: Method = req
        .method
        .parse()
        .with_context(|| format!("not a method: {}", req.method))?;
    let mut headers = HeaderMap::new();
    for h in &req.headers {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("-H {h:?}: write name:value"))?;
        headers.append(
            HeaderName::try_from(k.trim())?,
            HeaderValue::try_from(v.trim())?,
        );
    }
    let snapshot =
        Snapshot::compile("simulated", from.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(table) = snapshot.outbound_port(port) else {
        bail!(
            "{} has no outbound routes on port {port}: no service it may call listens there",
            req.from
        );
    };
    let view = RequestView {
        method: &method,
        scheme: uri.scheme_str().unwrap_or("http"),
        path: uri.path(),
        query: uri.query(),
        authority: &authority,
        port,
        headers: &headers,
    };
    let trace = table.http.trace(&view);
    let config = serde_json::to_value(&from)?;
    let routes = route_values(&config, port);
    let rules: Vec<Value> = trace
        .routes
        .iter()
        .map(|(name, matched)| {
            let route = routes.iter().find(|r| r["name"] == name.as_str());
            let place = p
                .route_rule(name)
                .map(|(vs, rule)| p.place(&vs.resource, Some(&rule.field)));
            json!({
                "route": name,
                "matched": matched,
                "match": route.map(|r| proxy_config::matches(&r["matches"])),
                "object": place.as_ref().map(|pl| pl.object.clone()),
                "location": place.as_ref().and_then(|pl| pl.at.clone()),
            })
        })
        .collect();
    let mut out = json!({
        "from": req.from,
        "request": format!("{method} {}", req.url),
        "port": port,
        "virtualHost": trace.virtual_host,
        "rules": rules,
        "route": trace.chosen(),
    });
    let Some(chosen) = trace.chosen() else {
        out["outcome"] = json!(match &trace.virtual_host {
            None => format!(
                "no service of {} is reachable as {authority:?} on port {port}: outside the registry (outboundTrafficPolicy {})",
                req.from,
                proxy_config::policy_word(&config)
            ),
            Some(vh) => format!("404 NR: no route of {vh} takes the request"),
        });
        return Ok(out);
    };
    let route = routes
        .iter()
        .find(|r| r["name"] == chosen)
        .cloned()
        .unwrap_or(Value::Null);
    // In milliseconds, as the proxy's configuration has it; null when there is none.
    out["timeout"] = route.get("timeout").cloned().unwrap_or(Value::Null);
    out["fault"] = config["faults"].get(chosen).cloned().unwrap_or(Value::Null);
    let forward = &route["action"]["forward"];
    out["retries"] = forward.get("retries").cloned().unwrap_or(Value::Null);
    if forward.is_null() {
        out["outcome"] = json!(format!(
            "answered by the proxy: {}",
            proxy_config::action_word(&route["action"])
        ));
        return Ok(out);
    }
    let mut destinations = Vec::new();
    for d in forward["destinations"].as_array().into_iter().flatten() {
        let cluster_name = d["cluster"].as_str().unwrap_or("");
        let parsed = parse_cluster(cluster_name);
        let cluster = from.clusters.iter().find(|c| c.name == cluster_name);
        let mut endpoints = Vec::new();
        for e in cluster.map_or(&[][..], |c| &c.endpoints[..]) {
            endpoints.push(endpoint(p, &from, e, &method, &uri, &authority, &headers).await);
        }
        destinations.push(json!({
            "cluster": cluster_name,
            "service": parsed.map(|(_, _, fqdn)| short_host(fqdn)),
            "subset": parsed.and_then(|(_, s, _)| s),
            "weight": d["weight"],
            "missing": from.missing_clusters.get(cluster_name),
            "endpoints": endpoints,
        }));
    }
    out["destinations"] = json!(destinations);
    Ok(out)
}

fn route_values(config: &Value, port: u16) -> Vec<Value> {
    config["outbound"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["port"] == port)
        .flat_map(|p| p["virtualHosts"].as_array().into_iter().flatten())
        .flat_map(|vh| vh["routes"].as_array().into_iter().flatten())
        .cloned()
        .collect()
}

async fn endpoint(
    p: &Provenance,
    from: &ProxyConfig,
    e: &skiff_model::config::Endpoint,
    method: &Method,
    uri: &Uri,
    authority: &str,
    headers: &HeaderMap,
) -> Value {
    let mut out = json!({
        "address": e.address.to_string(),
        "workload": e.workload,
        "mtls": if e.mtls { "ISTIO_MUTUAL" } else { "plain text" },
    });
    if !e.sidecar {
        out["authorization"] =
            json!({"decision": "ALLOW", "details": "no sidecar: nothing enforces policy there"});
        return out;
    }
    let Some(target) = p
        .mesh()
        .compile(&e.workload)
        .and_then(|c| Snapshot::compile("simulated", c).ok())
    else {
        out["authorization"] =
            json!({"decision": "unknown: the workload's config does not compile"});
        return out;
    };
    // Phase 3, then phase 4, as the workload's inbound proxy runs them.
    let authn = match authenticate(&target, method, uri, headers).await {
        Ok(a) => a,
        Err(refused) => {
            let place = refused
                .policy
                .as_deref()
                .and_then(|n| p.request_authentication(n));
            out["authentication"] = json!({
                "decision": "401",
                "reason": refused.reason,
                "details": refused.details,
                "policy": refused.policy,
                "location": place.and_then(|pl| pl.at),
            });
            out["authorization"] = json!({"decision": "not reached: the token was refused"});
            return out;
        }
    };
    if let Some(principal) = authn.principal() {
        let policy = authn.policy().map(str::to_owned);
        let place = policy.as_deref().and_then(|n| p.request_authentication(n));
        // What the app sees that the caller did not send: outputClaimToHeaders,
        // outputPayloadToHeader.
        let added: Vec<String> = authn
            .headers
            .iter()
            .filter(|(k, v)| !headers.get_all(*k).iter().any(|h| h == *v))
            .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes())))
            .collect();
        // And what it does not: the token, unless forwardOriginalToken.
        let removed: Vec<String> = headers
            .iter()
            .filter(|(k, v)| !authn.headers.get_all(*k).iter().any(|h| h == *v))
            .map(|(k, _)| k.to_string())
            .collect();
        out["authentication"] = json!({
            "decision": "verified",
            "principal": principal,
            "policy": policy,
            "location": place.and_then(|pl| pl.at),
            "headersAdded": added,
            "headersRemoved": removed,
        });
    }
    let peer = e.mtls.then_some(from.node.spiffe_id.as_str());
    let req = AuthzRequest {
        peer_ip: from
            .node
            .address
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
        peer,
        dest_ip: e.address.ip(),
        dest_port: e.address.port(),
        method: method.as_str(),
        path: uri.path(),
        host: authority,
        headers: &authn.headers,
        authentication: Some(&authn),
    };
    out["authorization"] = match authorize(&target, &req) {
        None => json!({"decision": "ALLOW"}),
        Some(details) => {
            let policy = details
                .strip_prefix("rbac_access_denied_matched_policy[")
                .and_then(|r| r.split_once(']'))
                .map(|(n, _)| n.to_owned());
            let place = policy.as_deref().and_then(|n| p.authorization_policy(n));
            json!({
                "decision": "DENY",
                "details": details,
                "policy": policy,
                "location": place.and_then(|pl| pl.at),
            })
        }
    };
    out
}

/// The simulation in words.
pub(crate) fn render(v: &Value) -> String {
    use crate::cmd::admin::word;
    let mut out = format!(
        "{} from {} (outbound port {})\n",
        word(&v["request"]),
        word(&v["from"]),
        v["port"]
    );
    if let Some(vh) = v["virtualHost"].as_str() {
        out.push_str(&format!("virtual host {vh}\n"));
    }
    for r in v["rules"].as_array().into_iter().flatten() {
        let place = match (r["object"].as_str(), r["location"].as_str()) {
            (Some(o), Some(at)) => format!(" ({o}, {at})"),
            (Some(o), None) => format!(" ({o})"),
            _ => String::new(),
        };
        let verdict = if r["matched"] == true {
            "MATCHED".to_owned()
        } else {
            format!("did not match: it matches {}", word(&r["match"]))
        };
        out.push_str(&format!("  rule {}{place}: {verdict}\n", word(&r["route"])));
    }
    if let Some(o) = v["outcome"].as_str() {
        out.push_str(&format!("outcome: {o}\n"));
        return out;
    }
    out.push_str(&format!(
        "timeout: {}   retries: {}   fault: {}\n",
        v["timeout"]
            .as_u64()
            .map_or_else(|| "none".to_owned(), |ms| format!("{ms}ms")),
        word(&v["retries"]),
        word(&v["fault"])
    ));
    for d in v["destinations"].as_array().into_iter().flatten() {
        let subset = d["subset"]
            .as_str()
            .map_or(String::new(), |s| format!("subset {s} of "));
        out.push_str(&format!(
            "  {}% -> {subset}{} ({})\n",
            d["weight"],
            word(&d["service"]),
            word(&d["cluster"])
        ));
        if let Some(m) = d["missing"].as_str() {
            out.push_str(&format!("       503 NC: {m}\n"));
        }
        let eps = d["endpoints"].as_array().map_or(&[][..], Vec::as_slice);
        if eps.is_empty() && d["missing"].is_null() {
            out.push_str("       no endpoints: 503 UH\n");
        }
        for e in eps {
            let t = &e["authentication"];
            if t["decision"] == "401" {
                let by = match (t["policy"].as_str(), t["location"].as_str()) {
                    (Some(pol), Some(at)) => format!(" by RequestAuthentication {pol} ({at})"),
                    _ => format!(" ({})", word(&t["details"])),
                };
                out.push_str(&format!(
                    "       endpoint {} ({}), {}: 401 {}{by}\n",
                    word(&e["address"]),
                    word(&e["workload"]),
                    word(&e["mtls"]),
                    word(&t["reason"])
                ));
                continue;
            }
            let a = &e["authorization"];
            let why = match (a["policy"].as_str(), a["location"].as_str()) {
                (Some(pol), Some(at)) => format!(" by AuthorizationPolicy {pol} ({at})"),
                _ => a["details"]
                    .as_str()
                    .map_or(String::new(), |d| format!(": {d}")),
            };
            out.push_str(&format!(
                "       endpoint {} ({}), {}: {}{why}\n",
                word(&e["address"]),
                word(&e["workload"]),
                word(&e["mtls"]),
                word(&a["decision"])
            ));
            if t["decision"] == "verified" {
                let at = t["location"]
                    .as_str()
                    .map_or(String::new(), |at| format!(", {at}"));
                out.push_str(&format!(
                    "         token verified: principal {} (RequestAuthentication {}{at})\n",
                    word(&t["principal"]),
                    word(&t["policy"])
                ));
                for h in t["headersAdded"].as_array().into_iter().flatten() {
                    out.push_str(&format!("         the app gets {}\n", word(h)));
                }
                for h in t["headersRemoved"].as_array().into_iter().flatten() {
                    out.push_str(&format!("         the app does not get {}\n", word(h)));
                }
            }
        }
    }
    out
}
