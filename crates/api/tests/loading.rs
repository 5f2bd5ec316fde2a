//! Loading files and directories: documents, comments, anchors, typed values, order,
//! and where every problem is reported.

use std::fs;

use skiff_api::types::IntOrString;
use skiff_api::{Error, Kind, Severity, Spec};

fn errors(loaded: &skiff_api::Loaded) -> Vec<String> {
    loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .collect()
}

#[test]
fn multi_document_files_with_comments_and_empty_documents() {
    let text = "\
# leading comment
---
---
# a document with only a comment
---
apiVersion: v1
kind: Namespace
metadata:
  name: prod # trailing comment
  labels:
    istio-injection: enabled
---
~
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: prod}
spec:
  ports: [{name: http, port: 80, targetPort: http-alt}]
...
";
    let loaded = skiff_api::load_str("all.yaml", text);
    assert_eq!(errors(&loaded), Vec::<String>::new());
    assert_eq!(loaded.documents, 2);
    assert_eq!(loaded.resources.len(), 2);
    let ns = loaded.resources.namespaces().next().unwrap();
    assert_eq!(ns.metadata().labels["istio-injection"], "enabled");
    let svc = loaded.resources.services().next().unwrap();
    assert_eq!(svc.origin().position.line, 15);
    assert_eq!(
        svc.ports[0].target_port,
        Some(IntOrString::String("http-alt".into()))
    );
}

#[test]
fn directories_are_read_recursively_in_sorted_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("b/nested")).unwrap();
    fs::write(root.join("notes.txt"), "not yaml: [").unwrap();
    let svc = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{port: 80}}]\n"
        )
    };
    fs::write(root.join("b/nested/z.yml"), svc("z")).unwrap();
    fs::write(root.join("a.yaml"), svc("a")).unwrap();
    fs::write(root.join("b/m.yaml"), svc("m")).unwrap();
    let loaded = skiff_api::load(&[root]).unwrap();
    let files: Vec<String> = loaded
        .files
        .iter()
        .map(|f| f.strip_prefix(root).unwrap().display().to_string())
        .collect();
    assert_eq!(files, ["a.yaml", "b/m.yaml", "b/nested/z.yml"]);
    let names: Vec<&str> = loaded.resources.iter().map(|r| r.name()).collect();
    assert_eq!(names, ["a", "m", "z"]);
}

#[test]
fn unreadable_paths_fail_the_load() {
    let err = skiff_api::load(&["/nonexistent/skiff/config"]).unwrap_err();
    assert!(matches!(err, Error::Read { .. }), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = skiff_api::load(&[empty.path()]).unwrap_err();
    assert!(matches!(err, Error::NoFiles { .. }), "{err}");
}

#[test]
fn anchors_aliases_and_merge_keys() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: backend}
spec:
  host: backend
  subsets:
  - name: v1
    labels: &common {app: backend, version: v1}
  - name: v1-canary
    labels:
      <<: *common
      track: canary
";
    let loaded = skiff_api::load_str("dr.yaml", text);
    assert_eq!(errors(&loaded), Vec::<String>::new());
    let dr = loaded.resources.destination_rules().next().unwrap();
    assert_eq!(dr.subsets[1].labels.len(), 3);
    assert_eq!(dr.subsets[1].labels["version"], "v1");
}

#[test]
fn every_unknown_field_of_a_resource_is_reported() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: prod}
spec:
  host: [backend]
  http:
  - rout:
    - destination: {host: backend}
";
    let loaded = skiff_api::load_str("vs.yaml", text);
    assert_eq!(
        errors(&loaded),
        [
            "vs.yaml:5:3: VirtualService prod/vs: spec.host: unknown field `host` (did you mean `hosts`?), expected one of `hosts`, `gateways`, `http`, `tls`, `tcp` or `exportTo`",
            "vs.yaml:7:5: VirtualService prod/vs: spec.http[0].rout: unknown field `rout` (did you mean `route`?), expected one of `name`, `match`, `route`, `redirect`, `directResponse`, `delegate`, `rewrite`, `timeout`, `retries`, `fault`, `mirror`, `mirrors`, `mirrorPercentage`, `mirrorPercent`, `mirror_percent`, `corsPolicy` or `headers`",
            "vs.yaml:7:5: VirtualService prod/vs: spec.http[0]: HTTP route, redirect or directResponse is required",
        ]
    );
    assert!(loaded.resources.is_empty());
}

#[test]
fn kubernetes_output_fields_are_tolerated() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: ingress
  namespace: prod
  uid: 1c6f1f7e-0000-4000-8000-000000000000
  resourceVersion: \"12345\"
  generation: 3
  creationTimestamp: \"2024-01-01T00:00:00Z\"
  managedFields: [{manager: kubectl, operation: Apply}]
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{}'
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [\"*\"]
status: {}
";
    let loaded = skiff_api::load_str("gw.yaml", text);
    assert_eq!(errors(&loaded), Vec::<String>::new());
    let gw = loaded.resources.gateways().next().unwrap();
    assert_eq!(gw.metadata().generation, Some(3));
    assert_eq!(gw.servers[0].port.number, 80);
}

#[test]
fn port_level_mtls_keys_are_port_numbers() {
    let text = "\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: pa, namespace: prod}
spec:
  selector: {matchLabels: {app: backend}}
  portLevelMtls:
    8080: {mode: PERMISSIVE}
    \"9090\": {mode: DISABLE}
    http: {mode: STRICT}
";
    let loaded = skiff_api::load_str("pa.yaml", text);
    assert_eq!(
        errors(&loaded),
        [
            "pa.yaml:9:5: PeerAuthentication prod/pa: spec.portLevelMtls.http: expected a number as key, found `http`"
        ]
    );
    let fixed = text.replace("    http: {mode: STRICT}\n", "");
    let loaded = skiff_api::load_str("pa.yaml", &fixed);
    let pa = loaded.resources.peer_authentications().next().unwrap();
    assert_eq!(
        pa.port_level_mtls.keys().copied().collect::<Vec<_>>(),
        [8080, 9090]
    );
}

#[test]
fn scalars_are_typed_by_the_schema_like_kubernetes() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: backend}
spec:
  host: backend
  subsets:
  - name: v1
    labels: {version: 1.0}
";
    let loaded = skiff_api::load_str("dr.yaml", text);
    assert_eq!(
        errors(&loaded),
        [
            "dr.yaml:8:23: DestinationRule default/backend: spec.subsets[0].labels.version: expected a string, found the number 1.0 (put it in quotes to use it as text)"
        ]
    );
    let quoted = text.replace("1.0", "\"1.0\"");
    let loaded = skiff_api::load_str("dr.yaml", &quoted);
    assert_eq!(errors(&loaded), Vec::<String>::new());
}

#[test]
fn set_is_ordered_by_kind_namespace_name_and_has_typed_accessors() {
    let mut text = String::new();
    for (ns, name) in [("b", "z"), ("a", "y"), ("b", "a"), ("a", "x")] {
        text.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{host: {name}}}\n"
        ));
    }
    text.push_str(
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n",
    );
    let loaded = skiff_api::load_str("x.yaml", &text);
    let order: Vec<String> = loaded
        .resources
        .iter()
        .map(|r| format!("{} {}/{}", r.kind(), r.namespace(), r.name()))
        .collect();
    assert_eq!(
        order,
        [
            "Service default/s",
            "DestinationRule a/x",
            "DestinationRule a/y",
            "DestinationRule b/a",
            "DestinationRule b/z",
        ]
    );
    let hosts: Vec<&str> = loaded
        .resources
        .destination_rules()
        .map(|dr| dr.spec.host.as_str())
        .collect();
    assert_eq!(hosts, ["x", "y", "a", "z"]);
    assert!(
        loaded
            .resources
            .get(Kind::DestinationRule, "b", "a")
            .is_some()
    );
    assert_eq!(loaded.resources.virtual_services().count(), 0);
}

#[test]
fn well_known_non_mesh_kinds_are_warnings() {
    let text = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: cm}
data: {a: b}
---
apiVersion: v1
kind: Secret
metadata: {name: s}
stringData: {a: b}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: ef}
spec: {}
";
    let loaded = skiff_api::load_str("misc.yaml", text);
    assert!(!loaded.diagnostics.has_errors());
    let warnings: Vec<&str> = loaded
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(warnings.len(), 3);
    assert!(warnings[0].contains("not a mesh resource"));
    assert!(warnings[2].contains("EnvoyFilter is ignored"));
}

#[test]
fn unenforced_fields_warn_once_each_with_their_position() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [backend]
  http:
  - match:
    - statPrefix: s
      uri: {prefix: /}
    fault:
      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 5}}
    corsPolicy:
      allowOrigins: [{exact: https://example.com}]
    retries: {attempts: 2, retryRemoteLocalities: true}
    route:
    - destination: {host: backend}
    timeout: 3s
";
    let loaded = skiff_api::load_str("vs.yaml", text);
    let warnings: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| {
            format!(
                "{}:{} {}",
                d.position.unwrap(),
                d.path.as_deref().unwrap_or(""),
                d.message.starts_with("parsed, not enforced yet")
            )
        })
        .collect();
    // gRPC aborts and CORS are enforced: no warning for them.
    assert_eq!(
        warnings,
        [
            "8:7:spec.http[0].match[0].statPrefix true",
            "14:28:spec.http[0].retries.retryRemoteLocalities true"
        ]
    );
    assert_eq!(loaded.resources.len(), 1);
}

#[test]
fn traffic_policy_warns_only_for_what_is_not_acted_on() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: prod}
spec:
  host: backend
  exportTo: ['.']
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool:
      tcp: {connectTimeout: 2s, maxConnections: 10, idleTimeout: 1h}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      connectionPool:
        http: {http1MaxPendingRequests: 5, maxRetries: 2, useClientProtocol: true, http2KeepAlive: {interval: 10s, timeout: 1s}}
      outlierDetection: {consecutive5xxErrors: 3}
      loadBalancer:
        consistentHash: {httpHeaderName: x-user}
";
    let loaded = skiff_api::load_str("dr.yaml", text);
    let warned: Vec<&str> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .filter_map(|d| d.path.as_deref())
        .collect();
    assert_eq!(
        warned,
        ["spec.subsets[0].trafficPolicy.connectionPool.http.http2KeepAlive"]
    );
}

#[test]
fn specs_round_trip_through_serde() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seeds");
    let loaded = skiff_api::load(&[dir]).unwrap();
    for r in &loaded.resources {
        let json = serde_json::to_value(&r.spec).unwrap();
        let again: Spec = match &r.spec {
            Spec::VirtualService(_) => Spec::VirtualService(serde_json::from_value(json).unwrap()),
            Spec::DestinationRule(_) => {
                Spec::DestinationRule(serde_json::from_value(json).unwrap())
            }
            Spec::Gateway(_) => Spec::Gateway(serde_json::from_value(json).unwrap()),
            Spec::PeerAuthentication(_) => {
                Spec::PeerAuthentication(serde_json::from_value(json).unwrap())
            }
            Spec::AuthorizationPolicy(_) => {
                Spec::AuthorizationPolicy(serde_json::from_value(json).unwrap())
            }
            Spec::RequestAuthentication(_) => {
                Spec::RequestAuthentication(serde_json::from_value(json).unwrap())
            }
            Spec::Telemetry(_) => Spec::Telemetry(serde_json::from_value(json).unwrap()),
            Spec::Service(_) => Spec::Service(serde_json::from_value(json).unwrap()),
            Spec::Deployment(_) => Spec::Deployment(serde_json::from_value(json).unwrap()),
            Spec::Pod(_) => Spec::Pod(serde_json::from_value(json).unwrap()),
            other => other.clone(),
        };
        assert_eq!(again, r.spec, "{}", r.display_name());
    }
}

#[test]
fn kubectl_lists_are_read_item_by_item() {
    let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a, namespace: prod}
  spec: {ports: [{port: 80}]}
- apiVersion: networking.istio.io/v1
  kind: DestinationRule
  metadata: {name: a, namespace: prod}
  spec: {host: a, subsets: [{name: v1, labels: {version: v1}, wieght: 1}]}
";
    let loaded = skiff_api::load_str("list.yaml", text);
    assert_eq!(
        errors(&loaded),
        [
            "list.yaml:11:63: DestinationRule prod/a: spec.subsets[0].wieght: unknown field `wieght`, expected one of `name`, `labels` or `trafficPolicy`"
        ]
    );
    assert_eq!(loaded.resources.len(), 1);
    assert_eq!(
        loaded
            .resources
            .services()
            .next()
            .unwrap()
            .origin()
            .position
            .line,
        4
    );
}

#[test]
fn a_fault_without_a_percentage_is_a_warning_that_it_does_nothing() {
    let text = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [backend]
  http:
  - fault:
      abort: {httpStatus: 503}
      delay: {fixedDelay: 1s}
    route:
    - destination: {host: backend}
";
    let loaded = skiff_api::load_str("vs.yaml", text);
    assert!(!loaded.diagnostics.has_errors());
    let warnings: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| format!("{}: {}", d.path.as_deref().unwrap_or(""), d.message))
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("spec.http[0].fault.abort: no percentage: no request is aborted"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with("spec.http[0].fault.delay: no percentage: no request is delayed"),
        "{warnings:?}"
    );
}

#[test]
fn creation_timestamps_are_read_as_instants() {
    let text = "\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: a
  namespace: prod
  creationTimestamp: 2024-01-01T01:00:00+01:00
spec: {}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: b
  namespace: prod
  creationTimestamp: null
spec: {}
";
    let loaded = skiff_api::load_str("pa.yaml", text);
    assert_eq!(errors(&loaded), Vec::<String>::new());
    let mut pas = loaded.resources.peer_authentications();
    let a = pas.next().unwrap().metadata().creation_timestamp.clone();
    let b = pas.next().unwrap().metadata().creation_timestamp.clone();
    assert_eq!(a.unwrap().unix(), (1_704_067_200, 0));
    assert_eq!(b, None);
}

#[test]
fn a_bad_creation_timestamp_is_an_error_at_its_line() {
    let text = "\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: a
  namespace: prod
  creationTimestamp: \"last tuesday\"
spec: {}
";
    let loaded = skiff_api::load_str("pa.yaml", text);
    let errors = errors(&loaded);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("pa.yaml:6:22: ") && errors[0].contains("invalid timestamp"),
        "{errors:?}"
    );
}

#[test]
fn a_dry_run_annotation_that_is_no_boolean_is_a_warning_at_it() {
    let text = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: a
  namespace: prod
  annotations:
    istio.io/dry-run: \"yes\"
spec:
  action: DENY
  rules:
  - {}
";
    let loaded = skiff_api::load_str("ap.yaml", text);
    assert_eq!(errors(&loaded), Vec::<String>::new());
    let warnings: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| !d.is_error() && d.to_string().contains("dry-run"))
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        warnings,
        [
            "ap.yaml:7:23: AuthorizationPolicy prod/a: metadata.annotations[\"istio.io/dry-run\"]: istio.io/dry-run must be true or false (Go's strconv.ParseBool spellings), found \"yes\"; Istio then enforces the policy"
        ]
    );
}

#[test]
fn an_empty_service_entry_port_protocol_asks_for_detection() {
    let doc = |protocol: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: e, namespace: default}}\nspec:\n  hosts: [istio.io]\n  ports: [{{number: 443, name: https, protocol: {protocol}}}]\n  resolution: DNS\n"
        )
    };
    let loaded = skiff_api::load_str("se.yaml", &doc("\"\""));
    assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.diagnostics);
    let loaded = skiff_api::load_str("se.yaml", &doc("HTTPX"));
    assert!(loaded.diagnostics.has_errors());
}

#[test]
fn tag_values_skiff_cannot_evaluate_are_errors_at_their_field() {
    let text = "\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: t, namespace: prod}
spec:
  metrics:
  - overrides:
    - tagOverrides:
        host: {value: request.host}
        op: {value: istio_operationId}
        bad:
          value: request.nope
";
    let loaded = skiff_api::load_str("t.yaml", text);
    let shown: Vec<String> = loaded
        .diagnostics
        .iter()
        .map(|d| {
            format!(
                "{:?} {}:{}",
                d.severity,
                d.position.map_or(0, |p| p.line),
                d.path.as_deref().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            "Warning 9:spec.metrics[0].overrides[0].tagOverrides.op.value",
            "Error 11:spec.metrics[0].overrides[0].tagOverrides.bad.value",
        ],
        "{:#?}",
        loaded.diagnostics
    );
    let e = errors(&loaded).join("");
    assert!(e.starts_with("t.yaml:11:"), "{e}");
    assert!(e.contains("`request.nope`"), "{e}");
}

#[test]
fn a_cached_load_gives_what_a_fresh_one_does_and_sees_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let service = |name: &str, port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: prod\nspec:\n  ports:\n  - name: http\n    port: {port}\n"
        )
    };
    fs::write(dir.path().join("a.yaml"), service("a", 80)).unwrap();
    fs::write(dir.path().join("b.yaml"), service("b", 80)).unwrap();
    let cache = skiff_api::LoadCache::default();
    let paths = [dir.path()];
    let first = skiff_api::load_cached(&paths, &cache).unwrap();
    assert_eq!(first, skiff_api::load(&paths).unwrap());
    assert_eq!(first.resources.len(), 2);

    // Unchanged: the same result again.
    assert_eq!(skiff_api::load_cached(&paths, &cache).unwrap(), first);
    // One file changed (same length, same second), one removed, one broken.
    fs::write(dir.path().join("a.yaml"), service("a", 81)).unwrap();
    fs::remove_file(dir.path().join("b.yaml")).unwrap();
    fs::write(dir.path().join("c.yaml"), "kind: [").unwrap();
    let next = skiff_api::load_cached(&paths, &cache).unwrap();
    assert_eq!(next, skiff_api::load(&paths).unwrap());
    assert_eq!(next.resources.len(), 1);
    assert!(!errors(&next).is_empty(), "the broken file is reported");
    assert!(format!("{:?}", next.resources).contains("81"));
}

#[test]
fn a_cached_load_sees_a_file_rewritten_with_its_old_modification_time() {
    // Files whose stamp has settled are not read again: a rewrite must still show,
    // even by a tool that puts the old modification time back (`cp -p`, `touch -r`).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.yaml");
    let service = |port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  namespace: prod\nspec:\n  ports:\n  - name: http\n    port: {port}\n"
        )
    };
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let write = |port: u16| {
        fs::write(&path, service(port)).unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    };
    write(80);
    let cache = skiff_api::LoadCache::default();
    let paths = [dir.path()];
    let first = skiff_api::load_cached(&paths, &cache).unwrap();
    assert!(format!("{:?}", first.resources).contains("port: 80"));
    assert_eq!(skiff_api::load_cached(&paths, &cache).unwrap(), first);
    write(81);
    let next = skiff_api::load_cached(&paths, &cache).unwrap();
    assert_eq!(next, skiff_api::load(&paths).unwrap());
    assert!(
        format!("{:?}", next.resources).contains("port: 81"),
        "{next:?}"
    );
}
