//! `skiff proxy-config` against a live proxy of the in-process mesh.

use skiff_harness::Mesh;

#[path = "support/schema.rs"]
mod schema;

const MESH: &str = "\
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
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: backend
  namespace: prod
spec:
  host: backend.prod.svc.cluster.local
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 5
      interval: 10s
  subsets:
  - name: v1
    labels:
      version: v1
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
        prefix: /api
    route:
    - destination:
        host: backend.prod.svc.cluster.local
        subset: v1
";

/// The test process's log filter, behind a reload handle (as `skiff proxy` has it).
struct TestFilter<S>(tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, S>);

impl<S: 'static> skiff_proxy::LogControl for TestFilter<S> {
    fn current(&self) -> String {
        self.0.with_current(ToString::to_string).unwrap_or_default()
    }

    fn set(&self, filter: &str) -> Result<(), String> {
        let filter = tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
        self.0.reload(filter).map_err(|e| e.to_string())
    }
}

async fn skiff(mesh: &Mesh, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(args)
        .arg("--control")
        .arg(mesh.control().debug_addr.to_string())
        .output()
        .await
        .expect("run skiff");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_config_shows_what_the_live_proxy_runs() -> anyhow::Result<()> {
    let mesh = Mesh::start(&[("mesh.yaml", MESH)]).await?;
    let backend = mesh.ip("backend");

    let (ok, out, err) = skiff(&mesh, &["proxy-config", "routes", "frontend.prod"]).await;
    assert!(ok, "{err}");
    let rule = out
        .lines()
        .find(|l| l.ends_with("prod/backend/0"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(rule.contains("/api*"), "{out}");
    assert!(
        rule.contains("outbound|80|v1|backend.prod.svc.cluster.local 100%"),
        "{out}"
    );

    let (ok, out, err) = skiff(&mesh, &["proxy-config", "clusters", "frontend"]).await;
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("backend.prod.svc.cluster.local") && l.contains(" v1 ")),
        "{out}"
    );

    let (ok, out, err) = skiff(&mesh, &["proxy-config", "endpoints", "frontend.prod"]).await;
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{backend}:8080")) && l.contains("|v1|"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("HEALTHY") && line.contains(" OK ") && line.contains("ISTIO_MUTUAL"),
        "{out}"
    );

    let (ok, out, err) = skiff(&mesh, &["proxy-config", "listeners", "backend.prod"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("inbound") && out.contains("8080") && out.contains("mTLS PERMISSIVE"),
        "{out}"
    );

    let (ok, out, err) = skiff(&mesh, &["proxy-config", "secret", "frontend.prod"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("spiffe://cluster.local/ns/prod/sa/frontend"),
        "{out}"
    );
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.contains("ACTIVE") && l.contains("true")),
        "{out}"
    );

    let (ok, out, err) = skiff(
        &mesh,
        &["proxy-config", "clusters", "frontend.prod", "-o", "json"],
    )
    .await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(
        v["clusters"][0]["service"],
        "backend.prod.svc.cluster.local"
    );

    // Every `-o json` form conforms to docs/schema/proxy-config.schema.json, on a
    // sidecar and on the proxy it calls.
    for what in [
        "listeners",
        "routes",
        "clusters",
        "endpoints",
        "secret",
        "all",
    ] {
        for workload in ["frontend.prod", "backend.prod"] {
            let (ok, out, err) =
                skiff(&mesh, &["proxy-config", what, workload, "-o", "json"]).await;
            assert!(ok, "{what} {workload}: {err}");
            let v: serde_json::Value = serde_json::from_str(&out)?;
            schema::assert_valid("proxy-config.schema.json", Some(what), &v);
            schema::assert_valid("proxy-config.schema.json", None, &v);
        }
    }
    // The check fails on output that breaks the schema: a key missing, a key it does
    // not know, a value of the wrong type.
    let mut broken = v.clone();
    broken.as_object_mut().unwrap().remove("missingClusters");
    broken["extra"] = true.into();
    broken["clusters"][0]["port"] = "80".into();
    let found = schema::violations("proxy-config.schema.json", Some("clusters"), &broken);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        !schema::violations("proxy-config.schema.json", None, &broken).is_empty(),
        "fits none of the forms"
    );

    // The proxies of this mesh run in this process: until it sets up a changeable log
    // filter, they say theirs is fixed.
    let (ok, _, err) = skiff(&mesh, &["proxy-config", "log", "frontend.prod"]).await;
    assert!(!ok);
    assert!(err.contains("SKIFF_LOG"), "{err}");
    // A reloadable filter, as `skiff proxy` sets up.
    {
        use tracing_subscriber::prelude::*;
        let (filter, handle) =
            tracing_subscriber::reload::Layer::new(tracing_subscriber::EnvFilter::new("info"));
        tracing_subscriber::registry()
            .with(filter)
            .try_init()
            .expect("no subscriber yet");
        assert!(skiff_proxy::set_log_control(Box::new(TestFilter(handle))));
    }
    assert!(!tracing::enabled!(tracing::Level::DEBUG));
    let (ok, out, err) = skiff(&mesh, &["proxy-config", "log", "frontend.prod"]).await;
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("frontend.prod") && l.ends_with("info")),
        "{out}"
    );
    let (ok, out, err) = skiff(
        &mesh,
        &[
            "proxy-config",
            "log",
            "frontend.prod",
            "--level",
            "debug",
            "-o",
            "json",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(v["level"], "debug", "{out}");
    schema::assert_valid("proxy-config.schema.json", Some("log"), &v);
    // The filter in force changed: debug events are on now.
    assert!(tracing::enabled!(tracing::Level::DEBUG));
    let (ok, _, err) = skiff(
        &mesh,
        &["proxy-config", "log", "frontend.prod", "--level", "loud"],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("loud"), "{err}");

    // `skiff version`: both planes' versions and every kind read.
    let (ok, out, err) = skiff(&mesh, &["version"]).await;
    assert!(ok, "{err}");
    let v = env!("CARGO_PKG_VERSION");
    assert!(
        out.contains(&format!("control plane version: {v}")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "data plane version: {v} (2 proxies: backend.prod, frontend.prod)"
        )),
        "{out}"
    );
    assert!(out.contains("apps/{v1}: Deployment"), "{out}");

    let (ok, _, err) = skiff(&mesh, &["proxy-config", "routes", "nobody"]).await;
    assert!(!ok);
    assert!(
        err.contains("frontend.prod"),
        "the known proxies are named: {err}"
    );
    Ok(())
}
