//! The built-in ingress gateway of local mode.
//!
//! In a cluster, installing Istio creates the `istio-ingressgateway` deployment that
//! `Gateway` resources select with `istio: ingressgateway`. On one machine nothing
//! creates it, so when asked (`skiff up` does), the control plane adds a WorkloadEntry
//! for it: `istio-ingressgateway` in `istio-system`, with the labels the Gateways ask
//! for, at a given address. It is added only when a Gateway selects labels that no
//! workload of the configuration carries.

use std::collections::BTreeMap;
use std::net::IpAddr;

use skiff_api::{ResourceSet, load_str};

/// Name of the built-in gateway workload.
pub const BUILTIN_GATEWAY_NAME: &str = "istio-ingressgateway";
/// Namespace of the built-in gateway workload.
pub const BUILTIN_GATEWAY_NAMESPACE: &str = "istio-system";

/// Returns `resources` with the built-in gateway workload added when some Gateway
/// selects labels that no workload has; the labels are the union of those selectors.
/// Returns the set unchanged otherwise.
pub fn with_builtin_gateway(resources: ResourceSet, address: IpAddr) -> ResourceSet {
    let mut workload_labels: Vec<&BTreeMap<String, String>> = Vec::new();
    workload_labels.extend(resources.workload_entries().map(|w| &w.spec.labels));
    workload_labels.extend(resources.pods().map(|p| &p.metadata().labels));
    workload_labels.extend(
        resources
            .deployments()
            .map(|d| &d.spec.template.metadata.labels),
    );
    let selects = |selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>| {
        selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    for gateway in resources.gateways() {
        let selector = &gateway.spec.selector;
        if selector.is_empty() || workload_labels.iter().any(|l| selects(selector, l)) {
            continue;
        }
        for (k, v) in selector {
            wanted.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    if wanted.is_empty() {
        return resources;
    }
    let labels: String = wanted
        .iter()
        .map(|(k, v)| format!("    {k}: {}\n", serde_json::Value::String(v.clone())))
        .collect();
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {BUILTIN_GATEWAY_NAME}\n  namespace: {BUILTIN_GATEWAY_NAMESPACE}\nspec:\n  address: \"{address}\"\n  serviceAccount: istio-ingressgateway-service-account\n  labels:\n{labels}"
    );
    let loaded = load_str("<built-in ingress gateway>", &yaml);
    debug_assert!(
        !loaded.diagnostics.has_errors(),
        "built-in gateway: {:?}",
        loaded.diagnostics
    );
    let mut all = resources.into_vec();
    all.extend(loaded.resources.into_vec());
    ResourceSet::new(all)
}

#[cfg(test)]
mod tests;
