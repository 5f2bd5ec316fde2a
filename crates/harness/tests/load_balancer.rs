//! DestinationRule `loadBalancer` through real proxies: `localityLbSetting` (locality
//! failover under outlier detection, `distribute`, `failoverPriority`, and nothing
//! without outlier detection, as Istio) and `simple: PASSTHROUGH`.
//!
//! The mesh: a client in `r1/z1` calling Service `api`, whose three endpoints are in the
//! client's zone (`near`), another zone of its region (`zone`) and another region
//! (`far`, its locality from the topology labels instead of the entry's field).

use std::collections::BTreeMap;

use anyhow::Result;
use skiff_harness::{Mesh, header};

const CLIENT: &str = "client.prod";
const URL: &str = "http://api.prod/";

const MESH: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: prod
---
apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: prod
spec:
  selector:
    app: api
  ports:
  - name: http
    port: 80
    targetPort: 8080
";

const NEAR: &str = "\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: near
  namespace: prod
spec:
  address: {{ip.near}}
  locality: r1/z1
  labels:
    app: api
    tier: silver
";

const ZONE: &str = "\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: zone
  namespace: prod
spec:
  address: {{ip.zone}}
  locality: r1/z2
  labels:
    app: api
    tier: gold
";

const FAR_AND_CLIENT: &str = "\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: far
  namespace: prod
spec:
  address: {{ip.far}}
  labels:
    app: api
    tier: gold
    topology.kubernetes.io/region: r2
    topology.kubernetes.io/zone: z1
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: client
  namespace: prod
spec:
  address: {{ip.client}}
  locality: r1/z1
  labels:
    app: client
    tier: gold
";

async fn start(rule: &str) -> Result<Mesh> {
    let mesh = Mesh::start(&[
        ("mesh.yaml", MESH),
        ("near.yaml", NEAR),
        ("zone.yaml", ZONE),
        ("far.yaml", FAR_AND_CLIENT),
        ("rule.yaml", rule),
    ])
    .await?;
    mesh.wait_synced().await?;
    Ok(mesh)
}

/// `n` requests from the client to `url`: who answered them, counted (`status <code>`
/// for an answer that is not 200).
async fn spread(mesh: &Mesh, url: &str, n: usize) -> Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let reply = mesh.get_via(CLIENT, url).await?;
        let who = if reply.status == 200 {
            reply.header(header::APP).to_string()
        } else {
            format!("status {}", reply.status.as_u16())
        };
        *counts.entry(who).or_default() += 1;
    }
    Ok(counts)
}

fn only(who: &str, n: usize) -> BTreeMap<String, usize> {
    [(who.to_string(), n)].into()
}

/// Six standard deviations of the binomial around `n × p`.
fn within(count: usize, n: usize, p: f64) -> bool {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (count as f64 - mean).abs() <= 6.0 * sd
}

const FAILOVER: &str = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: api
  namespace: prod
spec:
  host: api.prod.svc.cluster.local
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 10m
      maxEjectionPercent: 100
";

/// With outlier detection (and Istio's default locality setting), all traffic stays in
/// the client's zone; once that endpoint is ejected it goes to the other zone of the
/// region, and once that one is gone, to the other region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_stays_in_the_zone_and_fails_over_by_priority() -> Result<()> {
    let mesh = start(FAILOVER).await?;
    assert_eq!(spread(&mesh, URL, 50).await?, only("near.prod", 50));
    // One 500 (which Istio's default retry policy does not retry) ejects the
    // endpoint that answered it (consecutive5xxErrors: 1).
    let failed = mesh.get_via(CLIENT, "http://api.prod/status/500").await?;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.header(header::APP), "near.prod");
    assert_eq!(spread(&mesh, URL, 50).await?, only("zone.prod", 50));
    // The other zone's endpoint leaves the service (its labels no longer match): the
    // other region is next.
    mesh.write_config("zone.yaml", &ZONE.replace("app: api", "app: retired"))
        .await?;
    mesh.wait_synced().await?;
    assert_eq!(spread(&mesh, URL, 50).await?, only("far.prod", 50));
    Ok(())
}

/// Without outlier detection Istio does not apply failover priorities (Envoy would
/// never leave the first): explicit `failover` or not, every endpoint takes its share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_outlier_detection_localities_do_not_matter() -> Result<()> {
    let rule = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: api
  namespace: prod
spec:
  host: api.prod.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      simple: RANDOM
      localityLbSetting:
        enabled: true
        failover:
        - from: r1
          to: r2
";
    let mesh = start(rule).await?;
    let n = 300;
    let counts = spread(&mesh, URL, n).await?;
    for who in ["near.prod", "zone.prod", "far.prod"] {
        let got = counts.get(who).copied().unwrap_or(0);
        assert!(within(got, n, 1.0 / 3.0), "{who}: {got} of {n}: {counts:?}");
    }
    Ok(())
}

/// `distribute` from the client's locality: 80 % to its zone, 20 % to the other zone;
/// the other region, which no `to` names, gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribute_splits_by_locality_weights() -> Result<()> {
    let rule = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: api
  namespace: prod
spec:
  host: api.prod.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        enabled: true
        distribute:
        - from: r1/z1/*
          to:
            \"r1/z1/*\": 80
            \"r1/z2/*\": 20
";
    let mesh = start(rule).await?;
    let n = 500;
    let counts = spread(&mesh, URL, n).await?;
    let near = counts.get("near.prod").copied().unwrap_or(0);
    let zone = counts.get("zone.prod").copied().unwrap_or(0);
    assert_eq!(near + zone, n, "{counts:?}");
    assert!(within(near, n, 0.8), "near: {near} of {n}: {counts:?}");
    Ok(())
}

/// `failoverPriority: [tier]`: the endpoints with the client's tier come first, in
/// whatever locality (the one in the client's own zone has another tier); the two
/// localities of that priority share its traffic by weight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_priority_prefers_the_clients_label() -> Result<()> {
    let rule = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: api
  namespace: prod
spec:
  host: api.prod.svc.cluster.local
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 10m
      maxEjectionPercent: 100
    loadBalancer:
      localityLbSetting:
        enabled: true
        failoverPriority:
        - tier
";
    let mesh = start(rule).await?;
    let n = 200;
    let counts = spread(&mesh, URL, n).await?;
    assert_eq!(counts.get("near.prod"), None, "{counts:?}");
    let zone = counts.get("zone.prod").copied().unwrap_or(0);
    assert!(within(zone, n, 0.5), "zone: {zone} of {n}: {counts:?}");
    Ok(())
}

/// `PASSTHROUGH`: a request goes to the address it was sent to. Service `direct` has
/// two of the endpoints' addresses as its cluster IPs, so a request to either routes
/// to its cluster; each goes to the endpoint with that address, never balanced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_goes_to_the_address_the_request_was_sent_to() -> Result<()> {
    let rule = "\
apiVersion: v1
kind: Service
metadata:
  name: direct
  namespace: prod
spec:
  selector:
    app: api
  clusterIPs: [\"{{ip.near}}\", \"{{ip.far}}\"]
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: direct
  namespace: prod
spec:
  host: direct.prod.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      simple: PASSTHROUGH
";
    let mesh = start(rule).await?;
    for who in ["near", "far"] {
        let url = format!("http://{}/", mesh.ip(who));
        assert_eq!(
            spread(&mesh, &url, 20).await?,
            only(&format!("{who}.prod"), 20)
        );
    }
    Ok(())
}
