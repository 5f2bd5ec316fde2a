//! Istio's circuit-breaking and mirroring tasks over `examples/httpbin`, in process:
//! httpbin v1 and v2 behind Service `httpbin` (port 8000), and the tasks' client
//! (`fortio`) sending through its sidecar. The tasks write their YAML inline on their
//! pages (no file in Istio's `samples/` holds it); it is quoted here unchanged.

#[path = "shared/example.rs"]
mod example;

use std::collections::BTreeMap;

use anyhow::Result;
use example::{borrowed, example};
use skiff_harness::{Mesh, header};

const CLIENT: &str = "fortio.default";
const V1: &str = "httpbin-v1.default";
const V2: &str = "httpbin-v2.default";
/// httpbin's app port (the Service's targetPort).
const APP_PORT: u16 = 8080;

/// The circuit-breaking task's DestinationRule, as its page shows it.
const CIRCUIT_BREAKER: &str = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
";

/// The mirroring task's first step: every request to v1...
const MIRROR_ALL_V1: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - httpbin
  http:
  - route:
    - destination:
        host: httpbin
        subset: v1
      weight: 100
";

/// ... with the subsets of its DestinationRule.
const MIRROR_SUBSETS: &str = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
";

/// The mirroring task's second step: v1 still answers, v2 gets a copy of each request.
const MIRROR_TO_V2: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - httpbin
  http:
  - route:
    - destination:
        host: httpbin
        subset: v1
      weight: 100
    mirror:
      host: httpbin
      subset: v2
    mirrorPercentage:
      value: 100.0
";

async fn httpbin(extra: &[(&str, &str)]) -> Result<Mesh> {
    let mut files = example("httpbin", 21)?;
    files.extend(extra.iter().map(|(n, t)| (n.to_string(), t.to_string())));
    Mesh::start(&borrowed(&files)).await
}

/// Fortio's `load -c <connections> -n <total> -qps 0`: `connections` workers, each on
/// its own connection sequence, sending as fast as answers come, `total` requests in
/// all. The statuses, counted.
async fn fortio(mesh: &Mesh, connections: usize, total: usize, url: &str) -> BTreeMap<u16, usize> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = (0..connections).map(|_| async {
        let mut seen = Vec::new();
        while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
            let reply = mesh.get_via(CLIENT, url).await.expect("an answer");
            seen.push(reply.status.as_u16());
        }
        seen
    });
    let mut counts = BTreeMap::new();
    for seen in futures_util::future::join_all(workers).await {
        for status in seen {
            *counts.entry(status).or_default() += 1;
        }
    }
    counts
}

fn count_log(mesh: &Mesh, workload: &str, needle: &str) -> usize {
    mesh.logs(workload)
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

/// Circuit breaking: with the task's DestinationRule (one connection, one pending
/// request, one request per connection), one request at a time passes; fortio with 5
/// connections then gets some `503 UO` at once and the rest 200, and httpbin answers
/// exactly the 200s. The answers are slow (httpbin's `/delay`) so that the workers'
/// requests overlap whatever the machine's speed. Istio's task has one httpbin and
/// overflows with 2 or 3 connections; here httpbin has two endpoints (v1 and v2),
/// and at `maxConnections` Envoy still opens a connection to an endpoint that has
/// none (so that requests never wait for a host they cannot reach): two requests in
/// flight and one pending pass, a fourth and fifth overflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaking_answers_the_overflow_503_uo() -> Result<()> {
    let mesh = httpbin(&[("destination-rule.yaml", CIRCUIT_BREAKER)]).await?;
    let url = "http://httpbin:8000/delay/0.3";

    // One connection, as the task's first fortio call: every request passes.
    let one = fortio(&mesh, 1, 5, "http://httpbin:8000/get").await;
    assert_eq!(one, BTreeMap::from([(200, 5)]), "one connection");

    // More connections than two endpoints' one each plus one pending.
    let before = mesh.proxy(V1).app_hits(APP_PORT) + mesh.proxy(V2).app_hits(APP_PORT);
    const N: usize = 30;
    let counts = fortio(&mesh, 5, N, url).await;
    eprintln!("fortio -c 5 -n {N}: {counts:?}");
    let ok = counts.get(&200).copied().unwrap_or(0);
    let overflow = counts.get(&503).copied().unwrap_or(0);
    assert_eq!(ok + overflow, N, "only 200 and 503: {counts:?}");
    assert!(
        overflow > 0,
        "five connections overflow two in flight plus one pending: {counts:?}"
    );
    assert!(ok > 0, "one request at a time still passes: {counts:?}");
    // Each admitted request was answered by httpbin; a refused one never reached it.
    let after = mesh.proxy(V1).app_hits(APP_PORT) + mesh.proxy(V2).app_hits(APP_PORT);
    assert_eq!(
        after - before,
        ok,
        "httpbin answered exactly the 200s: {counts:?}"
    );
    let logged = count_log(&mesh, CLIENT, " 503 UO ");
    assert_eq!(
        logged,
        overflow,
        "each 503 is flagged UO: {:#?}",
        mesh.logs(CLIENT)
    );
    // Local overflow is not the endpoint's failure: nothing was ejected, so a request
    // alone passes again.
    let again = mesh.get_via(CLIENT, "http://httpbin:8000/get").await?;
    assert_eq!(again.status, 200, "{again:?}");
    Ok(())
}

/// Mirroring: first everything to v1 and v2 sees nothing; then with the mirror every
/// request is also sent to v2 with the `-shadow` authority, while the client only
/// ever gets v1's answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirroring_copies_to_v2_with_the_shadow_authority() -> Result<()> {
    let mesh = httpbin(&[
        ("httpbin-vs.yaml", MIRROR_ALL_V1),
        ("httpbin-dr.yaml", MIRROR_SUBSETS),
    ])
    .await?;
    const N: usize = 20;
    for _ in 0..N {
        let reply = mesh.get_via(CLIENT, "http://httpbin:8000/headers").await?;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.header(header::APP), V1, "{reply:?}");
    }
    assert_eq!(mesh.proxy(V2).app_hits(APP_PORT), 0, "no mirror yet");

    // The task's second VirtualService replaces the first, as `kubectl apply` does.
    mesh.write_config("httpbin-vs.yaml", MIRROR_TO_V2).await?;
    mesh.wait_synced().await?;
    let v1_before = mesh.proxy(V1).app_hits(APP_PORT);
    for _ in 0..N {
        let reply = mesh.get_via(CLIENT, "http://httpbin:8000/headers").await?;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.header(header::APP), V1, "only v1 answers: {reply:?}");
        assert_eq!(reply.header(header::HOST), "httpbin:8000", "{reply:?}");
    }
    assert_eq!(mesh.proxy(V1).app_hits(APP_PORT) - v1_before, N);
    // The copies are fire and forget: wait (bounded) for all of them.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while mesh.proxy(V2).app_hits(APP_PORT) < N && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let hosts = mesh.proxy(V2).app_hosts(APP_PORT);
    assert_eq!(hosts.len(), N, "v2 saw every request once: {hosts:?}");
    assert!(
        hosts.iter().all(|h| h == "httpbin-shadow:8000"),
        "the mirrored authority: {hosts:?}"
    );
    Ok(())
}
