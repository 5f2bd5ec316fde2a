use std::time::Duration;

use crate::config::{HashAlgorithm, HashKey, LbPolicy};
use crate::registry::Labels;
use crate::testing::mesh;

const RULE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: svc}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80}, {name: http-alt, port: 81}, {name: http-3, port: 82}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: svc}
spec:
  host: api
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool:
      tcp: {maxConnections: 7, connectTimeout: 3s}
      http: {http1MaxPendingRequests: 2, http2MaxRequests: 0, maxRetries: 4, idleTimeout: 5s}
    outlierDetection: {consecutive5xxErrors: 3, baseEjectionTime: 1m}
    portLevelSettings:
    - port: {number: 81}
      tls: {mode: DISABLE}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpHeaderName: X-User-Id}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      portLevelSettings:
      - port: {number: 80}
        outlierDetection: {consecutiveGatewayErrors: 2}
  - name: v3
    labels: {version: v3}
    trafficPolicy:
      loadBalancer:
        consistentHash:
          httpCookie: {name: session, ttl: 0s, path: /}
          maglev: {tableSize: 1021}
"#;

fn rule(m: &crate::Mesh) -> &crate::rules::DestinationRuleInfo {
    m.rules()
        .destination_rule("api.svc.svc.cluster.local", "svc", &Labels::new(), "svc")
        .unwrap()
}

#[test]
fn connection_pool_limits_take_istio_readings() {
    let m = mesh(RULE);
    let p = rule(&m).policy_for(80, None);
    let pool = p.connection_pool.unwrap();
    assert_eq!(pool.connect_timeout, Some(Duration::from_secs(3)));
    let l = pool.limits;
    assert_eq!(l.max_connections, Some(7));
    assert_eq!(l.max_pending_requests, Some(2));
    // 0 is Istio's "unset": Envoy's unlimited default stays.
    assert_eq!(l.max_requests, None);
    assert_eq!(l.max_retries, Some(4));
    assert_eq!(l.idle_timeout, Some(Duration::from_secs(5)));
}

#[test]
fn outlier_detection_fills_in_envoy_defaults() {
    let m = mesh(RULE);
    let od = rule(&m).policy_for(80, None).outlier_detection.unwrap();
    assert_eq!(od.consecutive_5xx, 3);
    assert_eq!(od.consecutive_gateway, 0);
    assert_eq!(od.consecutive_local_origin, 0);
    assert_eq!(od.interval, Duration::from_secs(10));
    assert_eq!(od.base_ejection_time, Duration::from_secs(60));
    assert_eq!(od.max_ejection_time, Duration::from_secs(300));
    assert_eq!(od.max_ejection_percent, 10);
    assert_eq!(od.min_health_percent, 0);
}

#[test]
fn a_port_level_entry_replaces_every_component_of_its_level() {
    let m = mesh(RULE);
    // Port 81's entry sets only `tls`: load balancer, pool and outlier detection fall
    // back to the defaults, not to the top level (Istio's MergeSubsetTrafficPolicy).
    let p = rule(&m).policy_for(81, None);
    assert_eq!(p.lb(), None);
    assert!(p.connection_pool.is_none());
    assert!(p.outlier_detection.is_none());
    // A port without an entry keeps the top level.
    assert_eq!(rule(&m).policy_for(82, None).lb(), Some(LbPolicy::Random));
}

#[test]
fn a_subset_component_replaces_the_rules_whole_component() {
    let m = mesh(RULE);
    let dr = rule(&m);
    let v1 = dr.policy_for(80, dr.subset("v1"));
    // `loadBalancer` of the subset replaces the rule's, `simple` included.
    assert_eq!(v1.lb(), None);
    let hash = v1.load_balancer.unwrap().consistent_hash.unwrap();
    assert_eq!(hash.key, HashKey::Header("x-user-id".into()));
    assert_eq!(
        hash.algorithm,
        HashAlgorithm::RingHash {
            minimum_ring_size: 1024
        }
    );
    // What the subset does not set comes from the rule.
    assert_eq!(v1.connection_pool.unwrap().limits.max_connections, Some(7));
    assert_eq!(v1.outlier_detection.unwrap().consecutive_5xx, 3);
}

#[test]
fn a_subset_port_level_entry_replaces_everything_for_its_port() {
    let m = mesh(RULE);
    let dr = rule(&m);
    let v2 = dr.policy_for(80, dr.subset("v2"));
    assert_eq!(v2.lb(), None);
    assert!(v2.connection_pool.is_none());
    let od = v2.outlier_detection.unwrap();
    assert_eq!((od.consecutive_gateway, od.consecutive_5xx), (2, 5));
    // Another port of the subset: the subset has no top-level policy, so the rule's.
    let v2_82 = dr.policy_for(82, dr.subset("v2"));
    assert_eq!(v2_82.lb(), Some(LbPolicy::Random));
}

#[test]
fn cookie_hashes_and_maglev_keep_their_settings() {
    let m = mesh(RULE);
    let dr = rule(&m);
    let v3 = dr.policy_for(80, dr.subset("v3"));
    let hash = v3.load_balancer.unwrap().consistent_hash.unwrap();
    match hash.key {
        HashKey::Cookie(c) => {
            assert_eq!(c.name, "session");
            assert_eq!(c.path.as_deref(), Some("/"));
            assert_eq!(c.ttl, Some(Duration::ZERO));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(hash.algorithm, HashAlgorithm::Maglev { table_size: 1021 });
}

#[test]
fn the_compiled_cluster_carries_the_merged_policy() {
    let m = mesh(&format!(
        "{RULE}\n---\n{}",
        r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api-v1, namespace: svc}
spec: {address: 127.0.0.9, labels: {app: api, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client, namespace: svc}
spec: {address: 127.0.0.10, labels: {app: client}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: svc}
spec:
  hosts: [api]
  http: [{route: [{destination: {host: api, subset: v1}}]}]
"#
    ));
    let config = m.compile("client.svc").unwrap();
    let c = config
        .clusters
        .iter()
        .find(|c| c.name == "outbound|80|v1|api.svc.svc.cluster.local")
        .unwrap();
    assert_eq!(c.connect_timeout, Duration::from_secs(3));
    assert_eq!(
        c.traffic.connection_pool.as_ref().unwrap().max_connections,
        Some(7)
    );
    assert!(c.traffic.consistent_hash.is_some());
    assert_eq!(
        c.traffic
            .outlier_detection
            .as_ref()
            .unwrap()
            .consecutive_5xx,
        3
    );
    // Port 81: the rule's port-level entry left no pool; the subset's hash stays.
    let alt = config
        .clusters
        .iter()
        .find(|c| c.name == "outbound|81|v1|api.svc.svc.cluster.local")
        .unwrap();
    assert!(alt.traffic.connection_pool.is_none());
    assert!(alt.traffic.consistent_hash.is_some());
}

#[test]
fn warmup_takes_envoys_defaults_and_wins_over_warmup_duration_secs() {
    let m = mesh(
        r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: svc}
spec: {ports: [{name: http, port: 80}, {name: http-alt, port: 81}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: svc}
spec:
  host: api
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN, warmupDurationSecs: 60s}
    portLevelSettings:
    - port: {number: 81}
      loadBalancer:
        simple: LEAST_REQUEST
        warmup: {duration: 2m, minimumPercent: 25, aggression: 2}
"#,
    );
    let dr = rule(&m);
    let w = dr
        .policy_for(80, None)
        .load_balancer
        .unwrap()
        .warmup
        .unwrap();
    assert_eq!(
        (w.window, w.minimum_percent, w.aggression_milli),
        (Duration::from_secs(60), 10, 1000)
    );
    let w = dr
        .policy_for(81, None)
        .load_balancer
        .unwrap()
        .warmup
        .unwrap();
    assert_eq!(
        (w.window, w.minimum_percent, w.aggression_milli),
        (Duration::from_secs(120), 25, 2000)
    );
}

/// Istio's readings of the HTTP pool fields: `http.idleTimeout` falls back to
/// `tcp.idleTimeout`;
/// `maxConcurrentStreams` reaches only clusters of an `http2`/`grpc` port without
/// `useClientProtocol`.
#[test]
fn idle_timeout_falls_back_to_tcp_and_max_concurrent_streams_needs_an_h2_port() {
    let m = mesh(
        r#"
apiVersion: v1
kind: Service
metadata: {name: api, namespace: svc}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80}, {name: http2, port: 81}, {name: grpc, port: 82}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: svc}
spec:
  host: api
  trafficPolicy:
    connectionPool:
      tcp: {idleTimeout: 7s}
      http: {maxConcurrentStreams: 3}
    portLevelSettings:
    - port: {number: 82}
      connectionPool:
        tcp: {idleTimeout: 7s}
        http: {idleTimeout: 2s, maxConcurrentStreams: 3, useClientProtocol: true}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api, namespace: svc}
spec: {address: 127.0.0.9, labels: {app: api}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client, namespace: svc}
spec: {address: 127.0.0.10, labels: {app: client}}
"#,
    );
    let config = m.compile("client.svc").unwrap();
    let pool = |port: u16| {
        config
            .clusters
            .iter()
            .find(|c| c.name == format!("outbound|{port}||api.svc.svc.cluster.local"))
            .unwrap_or_else(|| panic!("cluster of port {port}"))
            .traffic
            .connection_pool
            .clone()
            .unwrap()
    };
    let http = pool(80);
    assert_eq!(http.idle_timeout, Some(Duration::from_secs(7)));
    assert_eq!(http.max_concurrent_streams, None, "an http port");
    let h2 = pool(81);
    assert_eq!(h2.max_concurrent_streams, Some(3));
    let grpc = pool(82);
    assert!(grpc.use_client_protocol);
    assert_eq!(grpc.max_concurrent_streams, None, "useClientProtocol");
    assert_eq!(
        grpc.idle_timeout,
        Some(Duration::from_secs(2)),
        "http's first"
    );
}
