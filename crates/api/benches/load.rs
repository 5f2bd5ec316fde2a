//! How long loading and validating takes, per resource.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn virtual_services(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: vs-{i}
  namespace: ns-{ns}
spec:
  hosts: [svc-{i}]
  http:
  - match:
    - uri: {{prefix: /api}}
      headers: {{x-canary: {{exact: \"true\"}}}}
    route:
    - destination: {{host: svc-{i}, subset: v2}}
  - route:
    - destination: {{host: svc-{i}, subset: v1}}
      weight: 90
    - destination: {{host: svc-{i}, subset: v2}}
      weight: 10
    timeout: 5s
    retries: {{attempts: 3, perTryTimeout: 1s, retryOn: 5xx}}
",
                ns = i % 10
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn bench(c: &mut Criterion) {
    let text = virtual_services(200);
    let mut group = c.benchmark_group("load");
    group.throughput(Throughput::Elements(200));
    group.bench_function("200 virtual services", |b| {
        b.iter(|| {
            let loaded = skiff_api::load_str("bench.yaml", &text);
            assert_eq!(loaded.resources.len(), 200);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
