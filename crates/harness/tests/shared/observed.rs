//! What the metrics tests add to the shared mesh: a fault, a policy and a TCP port.

#![allow(dead_code, reason = "each test uses a part")]

use skiff_harness::Mesh;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        ports: [\"8080\"]
        paths: [/denied]
";

/// One TCP connection through a `CONNECT` tunnel of the caller's sidecar: what it sent
/// and what came back.
pub(crate) async fn tcp_exchange(
    mesh: &Mesh,
    from: &str,
    target: &str,
) -> anyhow::Result<(usize, usize)> {
    let mut s = tokio::net::TcpStream::connect(mesh.proxy(from).outbound()).await?;
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        anyhow::ensure!(s.read(&mut b).await? == 1, "tunnel closed: {head:?}");
        head.push(b[0]);
    }
    anyhow::ensure!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // The app speaks HTTP on every port: the bytes go through as they are.
    let req = b"GET / HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n";
    s.write_all(req).await?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).await?;
    anyhow::ensure!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    Ok((req.len(), reply.len()))
}
