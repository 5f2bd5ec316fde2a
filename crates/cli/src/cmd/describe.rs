//! `skiff describe pod|workload|service NAME`: one workload or service as the mesh
//! sees it: the Services it belongs to (or the workloads behind it), ports and
//! protocols, the VirtualService rules and DestinationRule subsets that apply, the
//! effective mutual TLS mode per port, the AuthorizationPolicies that select it, and
//! the findings about it, each object with file:line. Read offline from `--config DIR`,
//! else from the directory the control plane serves.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use skiff_control::ConfigStatus;
use skiff_model::analyze::Message;
use skiff_model::diagnostic::ResourceRef;
use skiff_model::registry::{Service, Workload, labels_match};

use super::admin;
use super::explain::Provenance;

/// Arguments of `skiff describe`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// What to describe.
    #[arg(value_enum)]
    what: What,
    /// `<name>.<namespace>`, or a name only one has.
    name: String,
    /// The configuration directory (default: the one the control plane serves).
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,
    /// The control plane's debug HTTP address.
    #[arg(long, default_value = "127.0.0.1:15014", env = "SKIFF_CONTROL_DEBUG")]
    control: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum What {
    /// A Pod (as a workload).
    Pod,
    /// A workload: WorkloadEntry, Pod or Deployment replica.
    Workload,
    /// A Service or ServiceEntry host.
    Service,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let dir = match &args.config {
        Some(d) => d.clone(),
        None => {
            let status: ConfigStatus = admin::runtime()?
                .block_on(admin::control_json(args.control, "/debug/configz"))
                .context("without --config DIR the configuration is the control plane's")?;
            PathBuf::from(status.config_dir)
        }
    };
    let p = Provenance::load(&dir)
        .with_context(|| format!("reading the configuration in {}", dir.display()))?;
    let text = match args.what {
        What::Pod | What::Workload => describe_workload(&p, &find_workload(&p, &args.name)?)?,
        What::Service => describe_service(&p, find_service(&p, &args.name)?),
    };
    print!("{text}");
    Ok(())
}

fn id_matches(name: &str, ns: &str, wanted: &str) -> bool {
    wanted == name || wanted == format!("{name}.{ns}")
}

fn find_workload(p: &Provenance, wanted: &str) -> anyhow::Result<Workload> {
    let all = p.mesh().registry().workloads();
    let found: Vec<&Workload> = all
        .iter()
        .filter(|w| id_matches(&w.name, &w.namespace, wanted))
        .collect();
    match found.as_slice() {
        [w] => Ok((*w).clone()),
        [] => bail!("no workload {wanted:?} in the configuration"),
        many => bail!(
            "{wanted:?} names several workloads: {}",
            many.iter()
                .map(|w| format!("{}.{}", w.name, w.namespace))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn find_service<'p>(p: &'p Provenance, wanted: &str) -> anyhow::Result<&'p Service> {
    let found: Vec<&Service> = p
        .mesh()
        .registry()
        .services()
        .iter()
        .filter(|s| id_matches(&s.name, &s.namespace, wanted) || s.hostname == wanted)
        .collect();
    match found.as_slice() {
        [s] => Ok(s),
        [] => bail!("no Service or ServiceEntry {wanted:?} in the configuration"),
        many => bail!(
            "{wanted:?} names several services: {}",
            many.iter()
                .map(|s| s.hostname.clone())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn at(p: &Provenance, r: &ResourceRef) -> String {
    p.place(r, None).to_string()
}

/// The VirtualService rules and DestinationRule subsets for `service`; with a
/// workload, which subsets select it.
fn routing(p: &Provenance, service: &Service, workload: Option<&Workload>, out: &mut String) {
    for vs in p.virtual_services_for(&service.hostname) {
        let _ = writeln!(out, "    {}", at(p, &vs.resource));
        for rule in &vs.http {
            let place = p.place(&vs.resource, Some(&rule.field));
            let _ = writeln!(
                out,
                "      rule {} ({})",
                rule.name,
                place.at.unwrap_or_default()
            );
        }
    }
    for dr in p.destination_rules(&service.hostname) {
        let _ = writeln!(out, "    {}", at(p, &dr.resource));
        for s in &dr.subsets {
            let selected = p
                .workloads_of(service)
                .into_iter()
                .filter(|w| labels_match(&s.labels, &w.labels))
                .count();
            let mark = match workload {
                Some(w) if labels_match(&s.labels, &w.labels) => " <- this workload".to_owned(),
                Some(_) => String::new(),
                None => format!(
                    ", selects {selected} workload{}",
                    if selected == 1 { "" } else { "s" }
                ),
            };
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "      subset {} ({}){mark}", s.name, labels.join(","));
        }
    }
}

/// Findings of the model about these resources. This is the one place where the
/// messages of `skiff analyze` about them are to be added as well.
/// The analyze messages about the objects in `about` (the workload or service, and
/// the VirtualServices and DestinationRules that apply to it): the model's findings
/// and the analyzers', with their codes, as `skiff analyze` prints them.
fn findings(p: &Provenance, about: &[&ResourceRef]) -> Vec<Message> {
    p.analysis()
        .into_iter()
        .filter(|m| {
            m.resource.as_ref().is_some_and(|r| {
                about
                    .iter()
                    .any(|a| a.kind == r.kind && a.namespace == r.namespace && a.name == r.name)
            })
        })
        .collect()
}

fn describe_workload(p: &Provenance, w: &Workload) -> anyhow::Result<String> {
    let id = format!("{}.{}", w.name, w.namespace);
    let mut out = String::new();
    let labels: Vec<String> = w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "Workload: {id} ({})", at(p, &w.resource));
    let _ = writeln!(
        out,
        "  address: {}   service account: {}   sidecar: {}",
        w.address
            .map_or_else(|| "none".to_owned(), |a| a.to_string()),
        w.service_account,
        if w.sidecar {
            "yes"
        } else {
            "no (nothing enforces mTLS or policy here)"
        }
    );
    let _ = writeln!(out, "  labels: {}", labels.join(","));
    let config = p.mesh().compile(&id);
    let registry = p.mesh().registry();
    let index = registry
        .workload_by_id(&id)
        .context("the workload's index")?;
    let services: Vec<&Service> = registry
        .services_of(index)
        .iter()
        .map(|&i| &registry.services()[i])
        .collect();
    let mut about: Vec<&ResourceRef> = vec![&w.resource];
    if services.is_empty() {
        out.push_str("  services: none selects this workload\n");
    }
    for s in &services {
        about.push(&s.resource);
        let _ = writeln!(out, "  Service: {} ({})", s.hostname, at(p, &s.resource));
        for port in &s.ports {
            let target = w.target_port(port);
            let mtls = config
                .as_ref()
                .and_then(|c| target.and_then(|t| c.inbound.iter().find(|i| i.target_port == t)))
                .map_or_else(
                    || "-".to_owned(),
                    |i| admin::word(&serde_json::to_value(i.mtls).unwrap_or_default()),
                );
            let _ = writeln!(
                out,
                "    port {} {} -> {} protocol {} ({:?})   mTLS {mtls}",
                port.name.as_deref().unwrap_or("-"),
                port.port,
                target.map_or_else(|| "-".to_owned(), |t| t.to_string()),
                admin::word(&serde_json::to_value(port.protocol).unwrap_or_default()),
                port.source,
            );
        }
        routing(p, s, Some(w), &mut out);
    }
    if let Some(c) = &config {
        let from = if c.policies.mtls.from.is_empty() {
            "Istio's default".to_owned()
        } else {
            c.policies.mtls.from.join(", ")
        };
        let _ = writeln!(
            out,
            "  mTLS: {} (from {from})",
            admin::word(&serde_json::to_value(c.policies.mtls.mode).unwrap_or_default())
        );
        if c.policies.authorization.is_empty() {
            out.push_str("  AuthorizationPolicies: none selects it (every request is allowed)\n");
        }
        for name in &c.policies.authorization {
            let place = p
                .authorization_policy(name)
                .map_or_else(|| name.clone(), |pl| pl.to_string());
            let _ = writeln!(out, "  {place}");
        }
    }
    render_findings(&findings(p, &about), &mut out);
    Ok(out)
}

fn describe_service(p: &Provenance, s: &Service) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Service: {} ({})", s.hostname, at(p, &s.resource));
    for port in &s.ports {
        let _ = writeln!(
            out,
            "  port {} {} protocol {} ({:?})",
            port.name.as_deref().unwrap_or("-"),
            port.port,
            admin::word(&serde_json::to_value(port.protocol).unwrap_or_default()),
            port.source
        );
    }
    let workloads = p.workloads_of(s);
    if workloads.is_empty() {
        out.push_str("  workloads: none (requests get 503 UH)\n");
    }
    for w in &workloads {
        let id = format!("{}.{}", w.name, w.namespace);
        let mode = p.mesh().compile(&id).map_or_else(
            || "-".to_owned(),
            |c| admin::word(&serde_json::to_value(c.policies.mtls.mode).unwrap_or_default()),
        );
        let _ = writeln!(
            out,
            "  workload {id} at {} (sidecar: {}, mTLS {mode})",
            w.address.map_or_else(|| "-".to_owned(), |a| a.to_string()),
            if w.sidecar { "yes" } else { "no" }
        );
    }
    routing(p, s, None, &mut out);
    let mut about: Vec<&ResourceRef> = vec![&s.resource];
    let vss = p.virtual_services_for(&s.hostname);
    let drs = p.destination_rules(&s.hostname);
    about.extend(vss.iter().map(|v| &v.resource));
    about.extend(drs.iter().map(|d| &d.resource));
    render_findings(&findings(p, &about), &mut out);
    out
}

fn render_findings(found: &[Message], out: &mut String) {
    if found.is_empty() {
        out.push_str("  analyze: no messages\n");
        return;
    }
    out.push_str("  analyze:\n");
    for m in found {
        let _ = writeln!(out, "    {}", m.line());
        if let Some(fix) = &m.fix {
            let _ = writeln!(out, "      fix: {fix}");
        }
    }
}
