//! `skiff proxy-config listeners|routes|clusters|endpoints|secret|log|all WORKLOAD`:
//! what a live proxy runs, read from its admin endpoint (`/config_dump`, `/certs`),
//! which is found through the control plane's list of proxies, as `proxy-status` finds
//! them. Tables by default, shaped like istioctl's; `-o json|yaml` for the raw parts.

use std::net::SocketAddr;

use anyhow::bail;
use serde_json::{Value, json};

use super::admin::{self, Output, table, word};

/// Arguments of `skiff proxy-config`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// What to show.
    #[arg(value_enum)]
    what: What,
    /// The workload: `<name>.<namespace>`, or a name only one proxy has.
    workload: String,
    /// With `log`: the level to set (trace, debug, info, warn, error, off).
    #[arg(long, value_parser = ["trace", "debug", "info", "warn", "error", "off"])]
    level: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// The control plane's debug HTTP address.
    #[arg(long, default_value = "127.0.0.1:15014", env = "SKIFF_CONTROL_DEBUG")]
    control: SocketAddr,
}

/// The parts of a proxy's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum What {
    /// Listeners: admin, outbound, inbound ports (with their mTLS mode), gateway ports.
    Listeners,
    /// HTTP routes: per port and virtual host, each route's match and destinations.
    Routes,
    /// Upstream clusters: service, port, subset, endpoints, TLS, policies.
    Clusters,
    /// Endpoints per cluster, with health and outlier ejections.
    Endpoints,
    /// The workload certificate: chain, SPIFFE id, validity.
    Secret,
    /// The proxy's log level (`--level L` sets it).
    Log,
    /// Everything above but the log level.
    All,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if args.what == What::Log {
        return log_level(&args);
    }
    if args.level.is_some() {
        bail!("--level goes with `skiff proxy-config log`");
    }
    let runtime = admin::runtime()?;
    let (dump, certs) = runtime.block_on(async {
        let rows = admin::proxies(args.control).await?;
        let row = admin::find(&rows, &args.workload)?;
        let dump = admin::proxy_json(row, "/config_dump").await?;
        let certs = match args.what {
            What::Secret | What::All => Some(admin::proxy_json(row, "/certs").await?),
            _ => None,
        };
        anyhow::Ok((dump, certs))
    })?;
    let config = &dump["config"];
    if config.is_null() {
        bail!("the proxy {} has no config yet", args.workload);
    }
    if args.output != Output::Table {
        let value = match args.what {
            What::Listeners => json!({
                "listeners": dump["listeners"],
                "outbound": config["outbound"],
                "inbound": config["inbound"],
                "gateway": config["gateway"],
            }),
            What::Routes => json!({"outbound": config["outbound"], "gateway": config["gateway"]}),
            What::Clusters => json!({
                "clusters": config["clusters"],
                // Left out of the dump when empty; `{}` here, for a stable shape.
                "missingClusters": config.get("missingClusters").cloned().unwrap_or_else(|| json!({})),
            }),
            What::Endpoints => endpoints_json(&dump),
            What::Secret => certs.unwrap_or(Value::Null),
            What::All | What::Log => json!({"configDump": dump, "certs": certs}),
        };
        return admin::print_structured(args.output, &value);
    }
    let mut out = String::new();
    let all = args.what == What::All;
    if all || args.what == What::Listeners {
        out.push_str(&listeners(&dump));
    }
    if all || args.what == What::Routes {
        out.push_str(&section(all, &routes(config)));
    }
    if all || args.what == What::Clusters {
        out.push_str(&section(all, &clusters(config)));
    }
    if all || args.what == What::Endpoints {
        out.push_str(&section(all, &endpoints(&dump)));
    }
    if let Some(certs) = &certs {
        out.push_str(&section(all, &secret(certs)));
    }
    print!("{out}");
    Ok(())
}

/// `proxy-config log WORKLOAD [--level L]`: the proxy's log filter, read (`GET
/// /logging`) or set (`POST /logging?level=L`) on its admin endpoint.
fn log_level(args: &Args) -> anyhow::Result<()> {
    let runtime = admin::runtime()?;
    let value = runtime.block_on(async {
        let rows = admin::proxies(args.control).await?;
        let row = admin::find(&rows, &args.workload)?;
        let addr = admin::admin_addr(row)?;
        let (method, path) = match &args.level {
            Some(level) => (http::Method::POST, format!("/logging?level={level}")),
            None => (http::Method::GET, "/logging".to_owned()),
        };
        let body =
            admin::request(addr, method, &path, &format!("the proxy of {}", row.proxy)).await?;
        let value: Value = serde_json::from_slice(&body)?;
        anyhow::Ok((row.proxy.clone(), value))
    })?;
    let (proxy, value) = value;
    if args.output != Output::Table {
        return admin::print_structured(args.output, &value);
    }
    print!(
        "{}",
        table(
            &["PROXY", "LOG LEVEL"],
            &[vec![proxy, word(&value["level"])]]
        )
    );
    Ok(())
}

fn section(all: bool, text: &str) -> String {
    if all {
        format!("\n{text}")
    } else {
        text.to_owned()
    }
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// `ADDRESS  PORT  TYPE  PROTOCOL  DETAIL`.
pub(crate) fn listeners(dump: &Value) -> String {
    let l = &dump["listeners"];
    let config = &dump["config"];
    let mut rows = vec![vec![
        "admin".into(),
        word(&l["admin"]),
        "-".into(),
        "HTTP".into(),
        "/config_dump /certs /failures /ready".into(),
    ]];
    if !l["outbound"].is_null() {
        let ports: Vec<String> = list(&config["outbound"])
            .iter()
            .map(|p| format!("{}/{}", p["port"], word(&p["protocol"])))
            .collect();
        rows.push(vec![
            "outbound".into(),
            word(&l["outbound"]),
            "-".into(),
            "-".into(),
            format!("service ports: {}", ports.join(" ")),
        ]);
    }
    if !l["inbound"].is_null() {
        for p in list(&config["inbound"]) {
            let services: Vec<String> = list(&p["services"]).iter().map(word).collect();
            rows.push(vec![
                "inbound".into(),
                word(&l["inbound"]),
                p["targetPort"].to_string(),
                word(&p["protocol"]),
                format!(
                    "mTLS {}; services: {}",
                    word(&p["mtls"]),
                    services.join(" ")
                ),
            ]);
        }
    }
    if let Some(gw) = l["gateway"].as_object() {
        for p in list(&config["gateway"]) {
            let port = p["port"].to_string();
            let gateways: Vec<String> = list(&p["gateways"]).iter().map(word).collect();
            rows.push(vec![
                "gateway".into(),
                gw.get(&port).map_or_else(|| "-".into(), word),
                port,
                word(&p["protocol"]),
                format!("Gateway {}", gateways.join(" ")),
            ]);
        }
    }
    table(
        &["LISTENER", "ADDRESS", "PORT", "PROTOCOL", "DETAIL"],
        &rows,
    )
}

/// `PORT  VIRTUAL HOST  DOMAINS  MATCH  DESTINATION  ROUTE`.
pub(crate) fn routes(config: &Value) -> String {
    let mut rows = Vec::new();
    for (kind, ports) in [("", &config["outbound"]), ("gateway ", &config["gateway"])] {
        for p in list(ports) {
            for vh in list(&p["virtualHosts"]) {
                let domains = list(&vh["domains"]);
                let shown = match domains {
                    [] => "-".to_owned(),
                    [one] => word(one),
                    [first, rest @ ..] => format!("{} +{}", word(first), rest.len()),
                };
                for r in list(&vh["routes"]) {
                    rows.push(vec![
                        format!("{kind}{}", p["port"]),
                        word(&vh["name"]),
                        shown.clone(),
                        matches(&r["matches"]),
                        action(&r["action"]),
                        word(&r["name"]),
                    ]);
                }
            }
        }
    }
    table(
        &[
            "PORT",
            "VIRTUAL HOST",
            "DOMAINS",
            "MATCH",
            "DESTINATION",
            "ROUTE",
        ],
        &rows,
    )
}

/// A route's matches in a few words: `/api*`, `GET /a`, `/ [x-user]`; `/*` for all.
pub(crate) fn matches(m: &Value) -> String {
    let alternatives: Vec<String> = list(m)
        .iter()
        .map(|m| {
            let mut parts = Vec::new();
            if let Some(method) = m.get("method") {
                parts.push(string_match(method));
            }
            parts.push(m.get("uri").map_or_else(|| "/*".to_owned(), string_match));
            for (key, mark) in [
                ("headers", ""),
                ("withoutHeaders", "!"),
                ("queryParams", "?"),
            ] {
                for h in list(&m[key]) {
                    parts.push(format!(
                        "[{mark}{}={}]",
                        word(&h["name"]),
                        string_match(&h["value"])
                    ));
                }
            }
            if let Some(port) = m.get("port") {
                parts.push(format!(":{port}"));
            }
            parts.join(" ")
        })
        .collect();
    if alternatives.is_empty() {
        "/*".to_owned()
    } else {
        alternatives.join(" | ")
    }
}

fn string_match(v: &Value) -> String {
    if let Some(s) = v.as_str() {
        return s.to_owned();
    }
    match v.as_object().and_then(|o| o.iter().next()) {
        Some((k, s)) if k == "prefix" => format!("{}*", word(s)),
        Some((k, s)) if k == "exact" => word(s),
        Some((k, s)) if k == "regex" => format!("~{}", word(s)),
        _ => word(v),
    }
}

/// A route's action in a few words.
pub(crate) fn action_word(a: &Value) -> String {
    action(a)
}

/// `outboundTrafficPolicy` of a config dump's config.
pub(crate) fn policy_word(config: &Value) -> String {
    config
        .get("outboundTrafficPolicy")
        .map_or_else(|| "REGISTRY_ONLY".to_owned(), word)
}

fn action(a: &Value) -> String {
    if let Some(f) = a.get("forward") {
        let d: Vec<String> = list(&f["destinations"])
            .iter()
            .map(|d| format!("{} {}%", word(&d["cluster"]), d["weight"]))
            .collect();
        return d.join(", ");
    }
    if let Some(r) = a.get("redirect") {
        return format!("redirect {}", word(r));
    }
    if let Some(d) = a.get("directResponse") {
        return format!("direct response {}", d["status"]);
    }
    word(a)
}

/// `SERVICE FQDN  PORT  SUBSET  PROTOCOL  ENDPOINTS  TLS  LB`, and the missing ones.
pub(crate) fn clusters(config: &Value) -> String {
    let mut rows: Vec<Vec<String>> = list(&config["clusters"])
        .iter()
        .map(|c| {
            vec![
                word(&c["service"]),
                c["port"].to_string(),
                c.get("subset").map_or_else(|| "-".into(), word),
                word(&c["protocol"]),
                list(&c["endpoints"]).len().to_string(),
                c.get("tls").map_or_else(|| "auto".into(), tls_word),
                word(&c["lb"]),
            ]
        })
        .collect();
    if let Some(missing) = config["missingClusters"].as_object() {
        for (name, why) in missing {
            let mut parts = name.split('|').skip(1);
            let port = parts.next().unwrap_or("-").to_owned();
            let subset = parts
                .next()
                .filter(|s| !s.is_empty())
                .unwrap_or("-")
                .to_owned();
            let fqdn = parts.next().unwrap_or(name).to_owned();
            rows.push(vec![
                fqdn,
                port,
                subset,
                "-".into(),
                format!("MISSING: {}", word(why)),
                "-".into(),
                "-".into(),
            ]);
        }
    }
    table(
        &[
            "SERVICE FQDN",
            "PORT",
            "SUBSET",
            "PROTOCOL",
            "ENDPOINTS",
            "TLS",
            "LB",
        ],
        &rows,
    )
}

fn tls_word(tls: &Value) -> String {
    match tls.as_object().and_then(|o| o.keys().next()) {
        Some(k) => k.clone(),
        None => word(tls),
    }
}

/// Per endpoint: the cluster, health (an ejected endpoint is UNHEALTHY) and the
/// outlier check.
fn endpoint_rows(dump: &Value) -> Vec<Value> {
    let upstreams = &dump["upstreams"];
    let mut out = Vec::new();
    for c in list(&dump["config"]["clusters"]) {
        let name = word(&c["name"]);
        let outlier = &upstreams[name.as_str()]["outlierDetection"];
        for e in list(&c["endpoints"]) {
            let address = word(&e["address"]);
            let seen = list(&outlier["endpoints"])
                .iter()
                .find(|o| word(&o["address"]) == address);
            let ejected = seen.is_some_and(|o| o["ejected"] == true);
            out.push(json!({
                "cluster": name,
                "address": address,
                "workload": e["workload"],
                "sidecar": e.get("sidecar").cloned().unwrap_or(Value::Bool(false)),
                "mtls": e.get("mtls").cloned().unwrap_or(Value::Bool(false)),
                "health": if ejected { "UNHEALTHY" } else { "HEALTHY" },
                "outlierCheck": match seen {
                    None if outlier.is_null() => "-",
                    _ if ejected => "FAILED",
                    _ => "OK",
                },
                "timesEjected": seen.map_or(Value::from(0), |o| o["timesEjected"].clone()),
            }));
        }
    }
    out
}

fn endpoints_json(dump: &Value) -> Value {
    json!({ "endpoints": endpoint_rows(dump), "upstreams": dump["upstreams"] })
}

/// `ENDPOINT  STATUS  OUTLIER CHECK  CLUSTER  WORKLOAD  MTLS`.
pub(crate) fn endpoints(dump: &Value) -> String {
    let rows: Vec<Vec<String>> = endpoint_rows(dump)
        .iter()
        .map(|e| {
            vec![
                word(&e["address"]),
                word(&e["health"]),
                word(&e["outlierCheck"]),
                word(&e["cluster"]),
                word(&e["workload"]),
                if e["mtls"] == true {
                    "ISTIO_MUTUAL".into()
                } else {
                    "plain".into()
                },
            ]
        })
        .collect();
    table(
        &[
            "ENDPOINT",
            "STATUS",
            "OUTLIER CHECK",
            "CLUSTER",
            "WORKLOAD",
            "MTLS",
        ],
        &rows,
    )
}

/// `RESOURCE NAME  TYPE  STATUS  VALID CERT  SPIFFE ID  SERIAL NUMBER  NOT AFTER  NOT BEFORE`.
pub(crate) fn secret(certs: &Value) -> String {
    let mut rows: Vec<Vec<String>> = list(&certs["certificates"])
        .iter()
        .map(|c| {
            let valid = c["valid"] == true;
            vec![
                "default".into(),
                format!("Cert Chain ({} certs)", c["chainLength"]),
                "ACTIVE".into(),
                valid.to_string(),
                word(&c["spiffeId"]),
                word(&c["serialNumber"]),
                word(&c["notAfter"]),
                word(&c["notBefore"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        rows.push(vec![
            "default".into(),
            "Cert Chain".into(),
            "NONE: no mesh identity (or no certificate yet)".into(),
            "false".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
        ]);
    }
    rows.push(vec![
        "ROOTCA".into(),
        "CA".into(),
        "ACTIVE".into(),
        (certs["trustBundleRoots"].as_u64().unwrap_or(0) > 0).to_string(),
        format!("{} trusted roots", certs["trustBundleRoots"]),
        "-".into(),
        "-".into(),
        "-".into(),
    ]);
    table(
        &[
            "RESOURCE NAME",
            "TYPE",
            "STATUS",
            "VALID CERT",
            "SPIFFE ID",
            "SERIAL NUMBER",
            "NOT AFTER",
            "NOT BEFORE",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests;
