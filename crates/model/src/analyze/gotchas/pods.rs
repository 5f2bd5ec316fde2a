//! Gotchas of pods with a sidecar that no Istio analyzer catches: init containers that
//! run before the proxy, Jobs whose proxy never exits, and the proxy's resource budget.

use std::collections::BTreeMap;

use skiff_api::kube::{Container, PodSpec};
use skiff_api::{ObjectMeta, Resource, ResourceSet};

use super::at;
use crate::analyze::{Message, codes};

/// A pod template and where it was written.
struct Template<'a> {
    resource: &'a Resource,
    /// Field path of the template's metadata and spec (`` for a Pod).
    path: &'static str,
    meta: &'a ObjectMeta,
    spec: &'a PodSpec,
    /// A Job's (or CronJob's) pods: they must end.
    job: bool,
}

fn templates(resources: &ResourceSet) -> Vec<Template<'_>> {
    let mut out = Vec::new();
    for p in resources.pods() {
        out.push(Template {
            resource: p.resource,
            path: "",
            meta: p.metadata(),
            spec: p.spec,
            job: false,
        });
    }
    for d in resources.deployments() {
        out.push(Template {
            resource: d.resource,
            path: "spec.template.",
            meta: &d.spec.template.metadata,
            spec: &d.spec.template.spec,
            job: false,
        });
    }
    for j in resources.jobs() {
        out.push(Template {
            resource: j.resource,
            path: "spec.template.",
            meta: &j.spec.template.metadata,
            spec: &j.spec.template.spec,
            job: true,
        });
    }
    for c in resources.cron_jobs() {
        let t = &c.spec.job_template.spec.template;
        out.push(Template {
            resource: c.resource,
            path: "spec.jobTemplate.spec.template.",
            meta: &t.metadata,
            spec: &t.spec,
            job: true,
        });
    }
    out
}

const INJECT: &str = "sidecar.istio.io/inject";
const NATIVE_SIDECAR: &str = "sidecar.istio.io/nativeSidecar";

fn flag<'a>(metas: &[&'a ObjectMeta], key: &str) -> Option<&'a str> {
    // Labels win over annotations, the pod's own over its owner's.
    metas.iter().find_map(|m| {
        m.labels
            .get(key)
            .or_else(|| m.annotations.get(key))
            .map(String::as_str)
    })
}

/// Whether Istio injects a sidecar into these pods: not turned off, and the namespace
/// labelled for injection or the pod asking for it (`sidecar.istio.io/inject: "true"`).
fn injected(t: &Template<'_>, namespaces: &BTreeMap<&str, &ObjectMeta>) -> bool {
    let metas = [t.meta, &t.resource.metadata];
    match flag(&metas, INJECT) {
        Some(v) if v.eq_ignore_ascii_case("false") => return false,
        Some(v) if v.eq_ignore_ascii_case("true") => return t.spec.host_network != Some(true),
        _ => {}
    }
    if t.spec.host_network == Some(true) {
        return false;
    }
    namespaces.get(t.resource.namespace()).is_some_and(|ns| {
        ns.labels
            .get("istio-injection")
            .is_some_and(|v| v == "enabled")
            || (ns.labels.contains_key("istio.io/rev")
                && !ns.labels.contains_key("istio-injection"))
    })
}

/// The proxy runs as a native sidecar (an init container that keeps running): it is
/// up before the other init containers and it ends with the pod's last container.
fn native_sidecar(t: &Template<'_>) -> bool {
    let metas = [t.meta, &t.resource.metadata];
    flag(&metas, NATIVE_SIDECAR).is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || t.spec
            .init_containers
            .iter()
            .any(|c| c.name == "istio-proxy" && always_restarts(c))
}

fn always_restarts(c: &Container) -> bool {
    c.restart_policy.as_ref().and_then(|v| v.as_str()) == Some("Always")
}

fn runs_as_proxy_user(c: &Container) -> bool {
    c.security_context
        .as_ref()
        .and_then(|s| s.get("runAsUser"))
        .and_then(serde_json::Value::as_i64)
        == Some(1337)
}

pub(super) fn run(resources: &ResourceSet, out: &mut Vec<Message>) {
    let namespaces: BTreeMap<&str, &ObjectMeta> = resources
        .namespaces()
        .map(|n| (n.name(), n.metadata()))
        .collect();
    for t in templates(resources) {
        if !injected(&t, &namespaces) {
            continue;
        }
        init_containers(&t, out);
        if t.job {
            job_never_ends(&t, out);
        }
        resource_budget(&t, out);
    }
}

const EXCLUDE_OUTBOUND: [&str; 2] = [
    "traffic.sidecar.istio.io/excludeOutboundIPRanges",
    "traffic.sidecar.istio.io/excludeOutboundPorts",
];

/// SKF0030: init containers run before the sidecar starts, but after the traffic
/// capture is in place: a connection they open goes to a proxy that is not there yet.
fn init_containers(t: &Template<'_>, out: &mut Vec<Message>) {
    if native_sidecar(t) {
        return;
    }
    let excluded = EXCLUDE_OUTBOUND
        .iter()
        .any(|k| t.meta.annotations.contains_key(*k));
    if excluded {
        return;
    }
    for (i, c) in t.spec.init_containers.iter().enumerate() {
        if always_restarts(c) || runs_as_proxy_user(c) || c.name == "istio-init" {
            continue;
        }
        let field = format!("{}spec.initContainers[{i}]", t.path);
        out.push(at(
            &codes::INIT_CONTAINER_BEFORE_SIDECAR,
            t.resource,
            Some(&field),
            format!(
                "init container {} of {} {}/{} runs before the sidecar is up while its \
                 outbound traffic is already captured: any connection it opens fails",
                c.name,
                t.resource.kind(),
                t.resource.namespace(),
                t.resource.name()
            ),
            "if it needs the network, run the proxy as a native sidecar (annotation \
             `sidecar.istio.io/nativeSidecar: \"true\"`, Kubernetes 1.28+), run the init \
             container as user 1337 (`securityContext.runAsUser: 1337`, its traffic \
             bypasses the proxy), or exclude its destinations \
             (`traffic.sidecar.istio.io/excludeOutboundIPRanges`/`excludeOutboundPorts`); \
             `holdApplicationUntilProxyStarts` holds only the app containers, not init \
             containers"
                .to_string(),
        ));
    }
}

/// SKF0032: a Job's pod ends when all its containers end; the sidecar does not end on
/// its own, so the Job never completes.
fn job_never_ends(t: &Template<'_>, out: &mut Vec<Message>) {
    if native_sidecar(t) {
        return;
    }
    let quits = t.spec.containers.iter().any(|c| {
        [&c.command, &c.args]
            .into_iter()
            .flatten()
            .any(|v| v.to_string().contains("quitquitquit"))
    });
    if quits {
        return;
    }
    out.push(at(
        &codes::JOB_SIDECAR_NEVER_EXITS,
        t.resource,
        Some(&format!("{}spec", t.path)),
        format!(
            "the pods of {} {}/{} get a sidecar that keeps running after the job's \
             containers finish: the pod never completes, so neither does the Job",
            t.resource.kind(),
            t.resource.namespace(),
            t.resource.name()
        ),
        "run the proxy as a native sidecar (annotation `sidecar.istio.io/nativeSidecar: \
         \"true\"` on the pod template, Kubernetes 1.28+), or end the main container with \
         `curl -sf -XPOST http://localhost:15020/quitquitquit`, or leave the Job out of the \
         mesh (`sidecar.istio.io/inject: \"false\"`)"
            .to_string(),
    ));
}

/// Istio's default proxy resources (`global.proxy.resources`): requests 100m CPU and
/// 128Mi memory, limits 2 CPUs and 1Gi.
const DEFAULT_CPU_LIMIT_MILLI: f64 = 2000.0;
const DEFAULT_MEMORY_LIMIT: f64 = 1024.0 * 1024.0 * 1024.0;

/// A Kubernetes quantity in base units (cores × 1000 for CPU, bytes for memory).
fn quantity(s: &str, cpu: bool) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "m" => 0.001,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        _ => return None,
    };
    Some(if cpu { n * scale * 1000.0 } else { n * scale })
}

/// SKF0031: the proxy's resource annotations: one Istio cannot read, a request above
/// the limit (Kubernetes refuses the pod), a budget too small to run a proxy or so
/// large it is surely a unit mistake.
fn resource_budget(t: &Template<'_>, out: &mut Vec<Message>) {
    const MIB: f64 = 1024.0 * 1024.0;
    let ann = &t.meta.annotations;
    let field = |key: &str| format!("{}metadata.annotations.{key}", t.path);
    let who = format!(
        "{} {}/{}",
        t.resource.kind(),
        t.resource.namespace(),
        t.resource.name()
    );
    let mut report = |key: &str, message: String, fix: &str| {
        out.push(at(
            &codes::SIDECAR_RESOURCE_BUDGET,
            t.resource,
            Some(&field(key)),
            message,
            fix.to_string(),
        ));
    };
    let mut read = |key: &str, cpu: bool| -> Option<f64> {
        let v = ann.get(key)?;
        match quantity(v, cpu) {
            Some(q) => Some(q),
            None => {
                report(
                    key,
                    format!(
                        "{key} of {who} is {v:?}, not a Kubernetes quantity: Istio's injector \
                         cannot read it and the pod does not get its sidecar"
                    ),
                    if cpu {
                        "write CPU as cores or millicores (`500m`, `1`)"
                    } else {
                        "write memory with a binary suffix (`256Mi`, `1Gi`)"
                    },
                );
                None
            }
        }
    };
    let cpu = read("sidecar.istio.io/proxyCPU", true);
    let cpu_limit = read("sidecar.istio.io/proxyCPULimit", true);
    let mem = read("sidecar.istio.io/proxyMemory", false);
    let mem_limit = read("sidecar.istio.io/proxyMemoryLimit", false);
    let checks = [
        (
            "sidecar.istio.io/proxyCPU",
            cpu,
            cpu_limit.unwrap_or(DEFAULT_CPU_LIMIT_MILLI),
            cpu_limit.is_some(),
            true,
        ),
        (
            "sidecar.istio.io/proxyMemory",
            mem,
            mem_limit.unwrap_or(DEFAULT_MEMORY_LIMIT),
            mem_limit.is_some(),
            false,
        ),
    ];
    for (key, request, limit, explicit, is_cpu) in checks {
        let Some(request) = request else { continue };
        if request > limit {
            let limit_key = if is_cpu {
                "sidecar.istio.io/proxyCPULimit"
            } else {
                "sidecar.istio.io/proxyMemoryLimit"
            };
            let limit_text = if explicit {
                format!("its limit {limit_key}")
            } else if is_cpu {
                "Istio's default limit (2 CPUs)".to_string()
            } else {
                "Istio's default limit (1Gi)".to_string()
            };
            out.push(at(
                &codes::SIDECAR_RESOURCE_BUDGET,
                t.resource,
                Some(&field(key)),
                format!(
                    "{key} of {who} asks for more than {limit_text}: Kubernetes refuses a \
                     container whose request exceeds its limit, so the pod is not created"
                ),
                format!("lower the request, or set {limit_key} at least as high"),
            ));
        }
    }
    let small_and_large = [
        ("sidecar.istio.io/proxyCPU", cpu, 10.0, 32_000.0, true),
        (
            "sidecar.istio.io/proxyCPULimit",
            cpu_limit,
            10.0,
            32_000.0,
            true,
        ),
        (
            "sidecar.istio.io/proxyMemory",
            mem,
            32.0 * MIB,
            16_384.0 * MIB,
            false,
        ),
        (
            "sidecar.istio.io/proxyMemoryLimit",
            mem_limit,
            32.0 * MIB,
            16_384.0 * MIB,
            false,
        ),
    ];
    for (key, value, low, high, is_cpu) in small_and_large {
        let Some(v) = value else { continue };
        let (message, fix) = if v < low {
            (
                format!(
                    "{key} of {who} gives the proxy {}: too little to run it (it is \
                     throttled or killed as it loads its configuration)",
                    if is_cpu {
                        "under 10m CPU"
                    } else {
                        "under 32Mi of memory"
                    }
                ),
                "give the proxy at least Istio's defaults (100m CPU, 128Mi requested)",
            )
        } else if v > high {
            (
                format!(
                    "{key} of {who} gives the proxy {}: far more than a proxy uses, most \
                     likely a unit mistake",
                    if is_cpu {
                        "over 32 CPUs"
                    } else {
                        "over 16Gi of memory"
                    }
                ),
                if is_cpu {
                    "CPU in millicores takes the suffix `m` (`500m`)"
                } else {
                    "memory takes a binary suffix (`256Mi`, not `256Gi`)"
                },
            )
        } else {
            continue;
        };
        out.push(at(
            &codes::SIDECAR_RESOURCE_BUDGET,
            t.resource,
            Some(&field(key)),
            message,
            fix.to_string(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::quantity;

    #[test]
    fn quantities_in_base_units() {
        assert_eq!(quantity("500m", true), Some(500.0));
        assert_eq!(quantity("2", true), Some(2000.0));
        assert_eq!(quantity("0.5", true), Some(500.0));
        assert_eq!(quantity("128Mi", false), Some(128.0 * 1024.0 * 1024.0));
        assert_eq!(quantity("1G", false), Some(1e9));
        assert_eq!(quantity("lots", false), None);
        assert_eq!(quantity("12Qi", false), None);
        assert_eq!(quantity("", false), None);
    }
}
