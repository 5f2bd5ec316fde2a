//! The mesh of the `explain` tests: a frontend, a backend with subsets, a workload
//! nothing listens for, one that never answers, and routing that fails in every way a
//! proxy flags.

#![allow(dead_code, reason = "each test uses a part")]

pub(crate) const MESH: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: prod
---
apiVersion: v1
kind: Service
metadata:
  name: backend
  namespace: prod
spec:
  selector:
    app: backend
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: backend
  namespace: prod
spec:
  address: {{ip.backend}}
  serviceAccount: backend
  labels:
    app: backend
    version: v1
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: frontend
  namespace: prod
spec:
  address: {{ip.frontend}}
  serviceAccount: frontend
  labels:
    app: frontend
---
apiVersion: v1
kind: Service
metadata:
  name: down
  namespace: prod
spec:
  selector:
    app: down
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: down
  namespace: prod
  annotations:
    sidecar.istio.io/inject: \"false\"
spec:
  address: {{ip.down}}
  labels:
    app: down
---
apiVersion: v1
kind: Service
metadata:
  name: slow
  namespace: prod
spec:
  selector:
    app: slow
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: slow
  namespace: prod
  annotations:
    sidecar.istio.io/inject: \"false\"
spec:
  address: {{ip.slow}}
  labels:
    app: slow
";

/// Subset v3 is there at first (the VirtualService routes to it), and is taken out
/// later: the VirtualService keeps its last good version, routing to a cluster that no
/// longer exists (`NC`).
pub(crate) const BACKEND_DR: &str = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: backend
  namespace: prod
spec:
  host: backend.prod.svc.cluster.local
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
  - name: v3
    labels:
      version: v3
";

pub(crate) const ROUTING: &str = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: slow
  namespace: prod
spec:
  host: slow.prod.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: backend
  namespace: prod
spec:
  hosts:
  - backend.prod.svc.cluster.local
  http:
  - match:
    - uri:
        prefix: /uh
    route:
    - destination:
        host: backend.prod.svc.cluster.local
        subset: v2
  - match:
    - uri:
        prefix: /nc
    route:
    - destination:
        host: backend.prod.svc.cluster.local
        subset: v3
  - match:
    - uri:
        prefix: /fi
    fault:
      abort:
        httpStatus: 503
        percentage:
          value: 100
    route:
    - destination:
        host: backend.prod.svc.cluster.local
        subset: v1
  - match:
    - uri:
        prefix: /uf
    route:
    - destination:
        host: down.prod.svc.cluster.local
  - match:
    - uri:
        prefix: /urx
    retries:
      attempts: 2
      retryOn: connect-failure
    route:
    - destination:
        host: down.prod.svc.cluster.local
  - match:
    - uri:
        prefix: /ut
    timeout: 2s
    route:
    - destination:
        host: slow.prod.svc.cluster.local
  - match:
    - uri:
        prefix: /v1
    route:
    - destination:
        host: backend.prod.svc.cluster.local
        subset: v1
  - match:
    - uri:
        prefix: /h
      headers:
        x-user:
          exact: tester
    route:
    - destination:
        host: backend.prod.svc.cluster.local
        subset: v2
  - match:
    - uri:
        prefix: /h
    route:
    - destination:
        host: backend.prod.svc.cluster.local
        subset: v1
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-admin
  namespace: prod
spec:
  selector:
    matchLabels:
      app: backend
  action: DENY
  rules:
  - to:
    - operation:
        paths: [/v1/admin]
";

/// The 1-based line of the first line of `text` that contains `needle` after the
/// line containing `after`.
pub(crate) fn line_of(text: &str, after: &str, needle: &str) -> usize {
    let start = text.lines().position(|l| l.contains(after)).expect("after");
    start
        + 1
        + text
            .lines()
            .skip(start)
            .position(|l| l.contains(needle))
            .expect("needle")
}
