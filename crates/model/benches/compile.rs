//! How long building the mesh and compiling one proxy take on a large generated mesh:
//! 10,000 services and 20,000 workloads in 100 namespaces, with a VirtualService and a
//! DestinationRule (canary subsets) on every tenth service.
//!
//! `cargo bench -p skiff-model` runs it; `cargo bench -p skiff-model -- --quick` gives
//! rougher figures faster.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use skiff_api::{ObjectMeta, Origin, Resource, ResourceSet, Spec};
use skiff_model::{Mesh, MeshOptions};

const NAMESPACES: usize = 100;
const SERVICES_PER_NAMESPACE: usize = 100;
const WORKLOADS_PER_SERVICE: usize = 2;
/// One service in this many has a VirtualService and a DestinationRule.
const ROUTED_EVERY: usize = 10;
/// This namespace has a `Sidecar` limiting egress to itself and `istio-system`.
const SCOPED_NAMESPACE: &str = "ns-7";

fn resource(api_version: &str, namespace: &str, name: &str, labels: Value, spec: Spec) -> Resource {
    let mut metadata = ObjectMeta::new(namespace, name);
    metadata.labels = serde_json::from_value(labels).unwrap();
    Resource {
        api_version: api_version.to_string(),
        metadata,
        spec,
        origin: Origin::synthetic("generated.yaml"),
    }
}

fn spec<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("generated spec deserializes")
}

/// The generated mesh. Service `svc-<n>` of namespace `ns-<m>` has workloads
/// `svc-<n>-v1` and `svc-<n>-v2`; every tenth service also has a gRPC port, subsets v1
/// and v2, and a canary VirtualService (header rule, then 90/10).
fn generate() -> ResourceSet {
    let networking = "networking.istio.io/v1";
    let mut out = Vec::new();
    let mut address = 0u32;
    for ns in 0..NAMESPACES {
        let namespace = format!("ns-{ns}");
        for s in 0..SERVICES_PER_NAMESPACE {
            let name = format!("svc-{s}");
            let routed = s % ROUTED_EVERY == 0;
            let mut ports = vec![json!({"name": "http", "port": 80, "targetPort": 8080})];
            if routed {
                ports.push(json!({"name": "grpc-api", "port": 9090}));
            }
            out.push(resource(
                "v1",
                &namespace,
                &name,
                json!({}),
                Spec::Service(spec(json!({"selector": {"app": name}, "ports": ports}))),
            ));
            for v in 1..=WORKLOADS_PER_SERVICE {
                address += 1;
                let ip = format!(
                    "10.{}.{}.{}",
                    address >> 16,
                    (address >> 8) & 0xff,
                    address & 0xff
                );
                out.push(resource(
                    networking,
                    &namespace,
                    &format!("{name}-v{v}"),
                    json!({}),
                    Spec::WorkloadEntry(spec(json!({
                        "address": ip,
                        "labels": {"app": name, "version": format!("v{v}")},
                    }))),
                ));
            }
            if routed {
                out.push(resource(
                    networking,
                    &namespace,
                    &name,
                    json!({}),
                    Spec::DestinationRule(spec(json!({
                        "host": name,
                        "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}},
                        "subsets": [
                            {"name": "v1", "labels": {"version": "v1"}},
                            {"name": "v2", "labels": {"version": "v2"}},
                        ],
                    }))),
                ));
                out.push(resource(
                    networking,
                    &namespace,
                    &name,
                    json!({}),
                    Spec::VirtualService(spec(json!({
                        "hosts": [name],
                        "http": [
                            {
                                "match": [{"headers": {"x-canary": {"exact": "true"}}}],
                                "route": [{"destination": {"host": name, "subset": "v2"}}],
                            },
                            {
                                "route": [
                                    {"destination": {"host": name, "subset": "v1"}, "weight": 90},
                                    {"destination": {"host": name, "subset": "v2"}, "weight": 10},
                                ],
                                "timeout": "5s",
                            },
                        ],
                    }))),
                ));
            }
        }
    }
    out.push(resource(
        networking,
        SCOPED_NAMESPACE,
        "default",
        json!({}),
        Spec::Sidecar(spec(
            json!({"egress": [{"hosts": ["./*", "istio-system/*"]}]}),
        )),
    ));
    ResourceSet::new(out)
}

fn bench(c: &mut Criterion) {
    let resources = generate();
    let mesh = Mesh::build(&resources, MeshOptions::default());
    assert_eq!(
        mesh.registry().services().len(),
        NAMESPACES * SERVICES_PER_NAMESPACE
    );
    assert_eq!(
        mesh.registry().workloads().len(),
        NAMESPACES * SERVICES_PER_NAMESPACE * WORKLOADS_PER_SERVICE
    );
    let proxy = "svc-3-v1.ns-42";
    let scoped = "svc-3-v1.ns-7";
    for id in [proxy, scoped] {
        let config = mesh.compile(id).expect("proxy exists");
        let json = serde_json::to_vec(&config).unwrap();
        eprintln!(
            "{id}: {} outbound ports, {} virtual hosts, {} clusters, {} KiB of JSON",
            config.outbound.len(),
            config
                .outbound
                .iter()
                .map(|p| p.virtual_hosts.len())
                .sum::<usize>(),
            config.clusters.len(),
            json.len() / 1024
        );
    }

    let mut group = c.benchmark_group("mesh_10k_services_20k_workloads");
    group.sample_size(10);
    group.bench_function("build", |b| {
        b.iter_with_large_drop(|| Mesh::build(black_box(&resources), MeshOptions::default()))
    });
    group.bench_function("compile_sidecar_seeing_all_services", |b| {
        b.iter_with_large_drop(|| mesh.compile(black_box(proxy)))
    });
    group.bench_function("compile_sidecar_seeing_all_services_to_json", |b| {
        b.iter(|| serde_json::to_vec(&mesh.compile(black_box(proxy))).unwrap())
    });
    group.bench_function("compile_sidecar_scoped_by_sidecar_resource", |b| {
        b.iter_with_large_drop(|| mesh.compile(black_box(scoped)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
