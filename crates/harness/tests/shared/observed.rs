//! What the metrics tests add to the shared mesh: a fault, a policy and a TCP port.

#![allow(dead_code, reason = "each test uses a part")]

/// A TCP port on the backend. (Not beside `RULES`: a DENY rule's HTTP-only fields
/// are left out for TCP connections, as Istio does, so it would deny them all.)
pub(crate) const TCP_SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: backend-tcp
  namespace: prod
spec:
  selector:
    app: backend
  ports:
  - name: tcp
    port: 9000
    targetPort: 9090
";

pub(crate) const RULES: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: backend
  namespace: prod
spec:
  hosts: [backend.prod.svc.cluster.local]
  http:
  - match:
    - uri:
        prefix: /fault
    fault:
      abort:
        httpStatus: 503
        percentage:
          value: 100
    route:
    - destination:
        host: backend.prod.svc.cluster.local
  - route:
    - destination:
        host: backend.prod.svc.cluster.local
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: no-denied
  namespace: prod
spec:
  selector:
    matchLabels:
      app: backend
  action: DENY
  rules:
  - to:
    - operation:
        paths: [/denied]
";
