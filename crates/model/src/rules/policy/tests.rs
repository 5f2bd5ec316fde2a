//! Istio's PeerAuthentication precedence, row by row: which mode a workload port gets
//! and which policy decided it.

use crate::config::MtlsMode::{self, Disable, Permissive, Strict};
use crate::registry::Labels;
use crate::testing;

/// A PeerAuthentication as YAML. `selector` is an `app` label; `ports` are
/// `portLevelMtls` entries.
struct Pa {
    ns: &'static str,
    name: &'static str,
    created: Option<&'static str>,
    app: Option<&'static str>,
    mode: Option<&'static str>,
    ports: &'static [(u16, &'static str)],
}

const fn pa(ns: &'static str, name: &'static str, mode: &'static str) -> Pa {
    Pa {
        ns,
        name,
        created: None,
        app: None,
        mode: Some(mode),
        ports: &[],
    }
}

impl Pa {
    const fn app(self, app: &'static str) -> Pa {
        Pa {
            app: Some(app),
            ..self
        }
    }
    const fn created(self, at: &'static str) -> Pa {
        Pa {
            created: Some(at),
            ..self
        }
    }
    const fn ports(self, ports: &'static [(u16, &'static str)]) -> Pa {
        Pa { ports, ..self }
    }
    fn yaml(&self) -> String {
        let mut y = format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: {}\n  namespace: {}\n",
            self.name, self.ns
        );
        if let Some(t) = self.created {
            y += &format!("  creationTimestamp: \"{t}\"\n");
        }
        y += "spec:\n";
        if let Some(app) = self.app {
            y += &format!("  selector:\n    matchLabels:\n      app: {app}\n");
        }
        if let Some(m) = self.mode {
            y += &format!("  mtls:\n    mode: {m}\n");
        }
        if !self.ports.is_empty() {
            y += "  portLevelMtls:\n";
            for (p, m) in self.ports {
                y += &format!("    {p}:\n      mode: {m}\n");
            }
        }
        y
    }
}

struct Row {
    what: &'static str,
    policies: Vec<Pa>,
    /// The workload: namespace and `app` label.
    workload: (&'static str, &'static str),
    port: u16,
    mode: MtlsMode,
    decided_by: Option<&'static str>,
}

fn rows() -> Vec<Row> {
    let mesh = |mode| pa("istio-system", "default", mode);
    let ns = |mode| pa("prod", "default", mode);
    let api = |mode| pa("prod", "api", mode).app("api");
    vec![
        Row {
            what: "no policy: PERMISSIVE by default",
            policies: vec![],
            workload: ("prod", "api"),
            port: 8080,
            mode: Permissive,
            decided_by: None,
        },
        Row {
            what: "mesh-wide STRICT",
            policies: vec![mesh("STRICT")],
            workload: ("prod", "api"),
            port: 8080,
            mode: Strict,
            decided_by: Some("istio-system/default"),
        },
        Row {
            what: "mesh-wide UNSET counts as PERMISSIVE",
            policies: vec![mesh("UNSET"), ns("UNSET")],
            workload: ("prod", "api"),
            port: 8080,
            mode: Permissive,
            decided_by: None,
        },
        Row {
            what: "the namespace overrides the mesh",
            policies: vec![mesh("STRICT"), ns("PERMISSIVE")],
            workload: ("prod", "api"),
            port: 8080,
            mode: Permissive,
            decided_by: Some("prod/default"),
        },
        Row {
            what: "a namespace UNSET inherits the mesh",
            policies: vec![mesh("STRICT"), ns("UNSET")],
            workload: ("prod", "api"),
            port: 8080,
            mode: Strict,
            decided_by: Some("istio-system/default"),
        },
        Row {
            what: "the workload overrides the namespace",
            policies: vec![mesh("STRICT"), ns("DISABLE"), api("STRICT")],
            workload: ("prod", "api"),
            port: 8080,
            mode: Strict,
            decided_by: Some("prod/api"),
        },
        Row {
            what: "a workload UNSET inherits the namespace",
            policies: vec![ns("DISABLE"), api("UNSET")],
            workload: ("prod", "api"),
            port: 8080,
            mode: Disable,
            decided_by: Some("prod/default"),
        },
        Row {
            what: "a port-level mode decides its port",
            policies: vec![mesh("STRICT"), api("UNSET").ports(&[(8080, "DISABLE")])],
            workload: ("prod", "api"),
            port: 8080,
            mode: Disable,
            decided_by: Some("prod/api"),
        },
        Row {
            what: "other ports keep the workload's inherited mode",
            policies: vec![mesh("STRICT"), api("UNSET").ports(&[(8080, "DISABLE")])],
            workload: ("prod", "api"),
            port: 9090,
            mode: Strict,
            decided_by: Some("istio-system/default"),
        },
        Row {
            what: "a port-level UNSET takes the workload's own mode",
            policies: vec![ns("PERMISSIVE"), api("STRICT").ports(&[(8080, "UNSET")])],
            workload: ("prod", "api"),
            port: 8080,
            mode: Strict,
            decided_by: Some("prod/api"),
        },
        Row {
            what: "a port-level UNSET under a workload UNSET goes up to the namespace",
            policies: vec![ns("DISABLE"), api("UNSET").ports(&[(8080, "UNSET")])],
            workload: ("prod", "api"),
            port: 8080,
            mode: Disable,
            decided_by: Some("prod/default"),
        },
        Row {
            what: "a policy that does not select the workload is not used",
            policies: vec![ns("PERMISSIVE"), pa("prod", "web", "STRICT").app("web")],
            workload: ("prod", "api"),
            port: 8080,
            mode: Permissive,
            decided_by: Some("prod/default"),
        },
        Row {
            what: "a root-namespace policy with a selector is ignored",
            policies: vec![pa("istio-system", "api", "STRICT").app("api")],
            workload: ("prod", "api"),
            port: 8080,
            mode: Permissive,
            decided_by: None,
        },
        Row {
            what: "… even for workloads of the root namespace",
            policies: vec![
                mesh("PERMISSIVE"),
                pa("istio-system", "api", "STRICT").app("api"),
            ],
            workload: ("istio-system", "api"),
            port: 8080,
            mode: Permissive,
            decided_by: Some("istio-system/default"),
        },
        Row {
            what: "a policy of another namespace does not select",
            policies: vec![pa("web", "api", "STRICT").app("api")],
            workload: ("prod", "api"),
            port: 8080,
            mode: Permissive,
            decided_by: None,
        },
        Row {
            what: "two namespace-wide policies: the oldest wins, whatever the names",
            policies: vec![
                pa("prod", "a-new", "STRICT").created("2024-06-01T00:00:00Z"),
                pa("prod", "z-old", "DISABLE").created("2024-01-01T00:00:00Z"),
            ],
            workload: ("prod", "api"),
            port: 8080,
            mode: Disable,
            decided_by: Some("prod/z-old"),
        },
        Row {
            what: "same creation time: the first by name",
            policies: vec![
                pa("prod", "b", "STRICT").created("2024-01-01T00:00:00Z"),
                pa("prod", "a", "DISABLE").created("2024-01-01T00:00:00Z"),
            ],
            workload: ("prod", "api"),
            port: 8080,
            mode: Disable,
            decided_by: Some("prod/a"),
        },
        Row {
            what: "no creation time is older than any (Go's zero time)",
            policies: vec![
                pa("prod", "a", "STRICT").created("2024-01-01T00:00:00Z"),
                pa("prod", "b", "DISABLE"),
            ],
            workload: ("prod", "api"),
            port: 8080,
            mode: Disable,
            decided_by: Some("prod/b"),
        },
        Row {
            what: "two workload policies: the oldest instant wins, offsets counted",
            policies: vec![
                pa("prod", "a", "STRICT")
                    .app("api")
                    .created("2024-01-01T09:00:00Z"),
                pa("prod", "b", "DISABLE")
                    .app("api")
                    .created("2024-01-01T10:00:00+05:00"),
            ],
            workload: ("prod", "api"),
            port: 8080,
            mode: Disable,
            decided_by: Some("prod/b"),
        },
        Row {
            what: "two mesh-wide policies: the oldest wins",
            policies: vec![
                pa("istio-system", "a", "DISABLE").created("2025-01-01T00:00:00Z"),
                pa("istio-system", "b", "STRICT").created("2024-01-01T00:00:00Z"),
            ],
            workload: ("prod", "api"),
            port: 8080,
            mode: Strict,
            decided_by: Some("istio-system/b"),
        },
    ]
}

#[test]
fn peer_authentication_precedence_table() {
    let rows = rows();
    assert!(rows.len() >= 12);
    let mut failures = Vec::new();
    for row in rows {
        let yaml: Vec<String> = row.policies.iter().map(Pa::yaml).collect();
        let mesh = testing::mesh(&yaml.join("---\n"));
        let labels = Labels::from([("app".to_string(), row.workload.1.to_string())]);
        let decision = mesh.rules().policies().peer(row.workload.0, &labels);
        let got = decision.for_port(row.port);
        if got != (row.mode, row.decided_by) {
            failures.push(format!(
                "{}: expected {:?} by {:?}, got {:?} by {:?}",
                row.what, row.mode, row.decided_by, got.0, got.1
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_younger_namespace_policy_is_reported_as_ignored() {
    let yaml = [
        pa("prod", "a", "STRICT").created("2024-06-01T00:00:00Z"),
        pa("prod", "b", "DISABLE").created("2024-01-01T00:00:00Z"),
    ]
    .iter()
    .map(Pa::yaml)
    .collect::<Vec<_>>()
    .join("---\n");
    let mesh = testing::mesh(&yaml);
    let messages = testing::messages(&mesh, crate::diagnostic::Code::ConflictingPolicies);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].starts_with("PeerAuthentication prod/b is already the namespace-wide"),
        "{messages:?}"
    );
}
