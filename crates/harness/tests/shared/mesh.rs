//! The mesh the end-to-end tests share: `prod` with backend, frontend and other.

#![allow(dead_code, reason = "each test uses a part")]

/// The backend's app port (its Service's targetPort).
pub(crate) const APP_PORT: u16 = 8080;
pub(crate) const BACKEND_URL: &str = "http://backend.prod.svc.cluster.local/";

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
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: other
  namespace: prod
spec:
  address: {{ip.other}}
  serviceAccount: other
  labels:
    app: other
";
