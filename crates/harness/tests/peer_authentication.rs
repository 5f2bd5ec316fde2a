//! PeerAuthentication precedence on a real workload port, table-driven: for each row
//! the policies are written, the mesh syncs, and backend's port 8080 is called in plain
//! text (as a proxy without mTLS) and by frontend's sidecar (auto mTLS).

#[path = "shared/mesh.rs"]
mod common;

use common::{APP_PORT, BACKEND_URL, MESH};
use skiff_harness::{Mesh, header};

/// What a mesh caller (frontend's sidecar) gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MeshCaller {
    /// Served over mutual TLS: the app sees frontend's identity in XFCC.
    Mtls,
    /// Served in plain text (auto mTLS chose it): no XFCC.
    Plain,
    /// Refused by the backend's sidecar.
    Refused,
}

struct Row {
    name: &'static str,
    /// The YAML of every PeerAuthentication of the row.
    policies: String,
    plain_served: bool,
    mesh: MeshCaller,
}

fn pa(
    name: &str,
    namespace: &str,
    selector: Option<&str>,
    mode: &str,
    ports: &[(u16, &str)],
) -> String {
    let mut out = format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n"
    );
    if let Some(app) = selector {
        out.push_str(&format!(
            "  selector:\n    matchLabels:\n      app: {app}\n"
        ));
    }
    out.push_str(&format!("  mtls:\n    mode: {mode}\n"));
    if !ports.is_empty() {
        out.push_str("  portLevelMtls:\n");
        for (port, mode) in ports {
            out.push_str(&format!("    {port}:\n      mode: {mode}\n"));
        }
    }
    out.push_str("---\n");
    out
}

fn rows() -> Vec<Row> {
    use MeshCaller::*;
    let mesh = |mode| pa("default", "istio-system", None, mode, &[]);
    let ns = |mode| pa("default", "prod", None, mode, &[]);
    let wl = |mode, ports: &[(u16, &str)]| pa("backend", "prod", Some("backend"), mode, ports);
    let strict = (false, Mtls);
    let permissive = (true, Mtls);
    let disable = (true, Plain);
    let table: Vec<(&'static str, String, (bool, MeshCaller))> = vec![
        ("no policy: PERMISSIVE", String::new(), permissive),
        ("mesh STRICT", mesh("STRICT"), strict),
        // The namespace says plain text to its callers, the workload refuses it.
        (
            "namespace DISABLE, workload STRICT",
            ns("DISABLE") + &wl("STRICT", &[]),
            (false, Refused),
        ),
        ("mesh UNSET: PERMISSIVE", mesh("UNSET"), permissive),
        (
            "mesh STRICT, namespace PERMISSIVE",
            mesh("STRICT") + &ns("PERMISSIVE"),
            permissive,
        ),
        (
            "mesh PERMISSIVE, namespace STRICT",
            mesh("PERMISSIVE") + &ns("STRICT"),
            strict,
        ),
        (
            "mesh STRICT, namespace UNSET inherits",
            mesh("STRICT") + &ns("UNSET"),
            strict,
        ),
        (
            "namespace STRICT, workload UNSET inherits",
            ns("STRICT") + &wl("UNSET", &[]),
            strict,
        ),
        (
            "namespace STRICT, workload PERMISSIVE",
            ns("STRICT") + &wl("PERMISSIVE", &[]),
            permissive,
        ),
        (
            "namespace PERMISSIVE, workload STRICT",
            ns("PERMISSIVE") + &wl("STRICT", &[]),
            strict,
        ),
        (
            "workload PERMISSIVE, port 8080 STRICT",
            wl("PERMISSIVE", &[(APP_PORT, "STRICT")]),
            strict,
        ),
        (
            "workload STRICT, port 8080 PERMISSIVE",
            wl("STRICT", &[(APP_PORT, "PERMISSIVE")]),
            permissive,
        ),
        (
            "workload STRICT, port 8080 UNSET inherits",
            wl("STRICT", &[(APP_PORT, "UNSET")]),
            strict,
        ),
        (
            "workload PERMISSIVE, another port STRICT",
            wl("PERMISSIVE", &[(9090, "STRICT")]),
            permissive,
        ),
        ("namespace DISABLE", ns("DISABLE"), disable),
        (
            "mesh STRICT, workload DISABLE",
            mesh("STRICT") + &wl("DISABLE", &[]),
            disable,
        ),
        (
            "workload STRICT, port 8080 DISABLE",
            wl("STRICT", &[(APP_PORT, "DISABLE")]),
            disable,
        ),
        (
            "root-namespace selector policy STRICT is ignored",
            pa(
                "backend-strict",
                "istio-system",
                Some("backend"),
                "STRICT",
                &[],
            ),
            permissive,
        ),
        (
            "a workload policy for other labels does not apply",
            pa("frontend", "prod", Some("frontend"), "STRICT", &[]),
            permissive,
        ),
    ];
    table
        .into_iter()
        .map(|(name, policies, (plain_served, mesh))| Row {
            name,
            policies,
            plain_served,
            mesh,
        })
        .collect()
}

/// Every row on a mesh of its own: a connection a row leaves in a pool cannot
/// decide the next row (see `open_plaintext_connections_are_closed_when_the_workload_turns_strict`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_authentication_precedence() -> anyhow::Result<()> {
    let mut failures = Vec::new();
    for row in rows() {
        let mesh = Mesh::start(&[("mesh.yaml", MESH)]).await?;
        mesh.write_config("policies.yaml", &row.policies).await?;
        mesh.wait_synced().await?;
        failures.extend(check(&mesh, &row).await?);
    }
    assert!(
        failures.is_empty(),
        "rows that failed:\n{}",
        failures.join("\n")
    );
    Ok(())
}

/// What in `row` did not hold on `mesh`, in words naming the row.
async fn check(mesh: &Mesh, row: &Row) -> anyhow::Result<Vec<String>> {
    let mut failures = Vec::new();
    let plain = mesh.plaintext_to_inbound("backend.prod", APP_PORT).await?;
    let plain_served = plain.starts_with("HTTP/1.1 200") && plain.ends_with("backend.prod");
    if plain_served != row.plain_served {
        failures.push(format!(
            "{}: plain text {} (expected {}); got {plain:?}",
            row.name,
            served(plain_served),
            served(row.plain_served),
        ));
    }
    let frontend_id = mesh.proxy("frontend.prod").spiffe_id().to_string();
    let reply = mesh.get_via("frontend.prod", BACKEND_URL).await?;
    let got = if reply.status != 200 || reply.header(header::APP) != "backend.prod" {
        MeshCaller::Refused
    } else if reply
        .header(header::XFCC)
        .contains(&format!("URI={frontend_id}"))
    {
        MeshCaller::Mtls
    } else {
        MeshCaller::Plain
    };
    if got != row.mesh {
        failures.push(format!(
            "{}: mesh caller {got:?} (expected {:?}); got {} {:?} xfcc {:?}",
            row.name,
            row.mesh,
            reply.status,
            reply.body,
            reply.header(header::XFCC)
        ));
    }
    Ok(failures)
}

fn served(yes: bool) -> &'static str {
    if yes { "served" } else { "refused" }
}

/// A plain-text connection the backend's sidecar accepted under DISABLE is closed when
/// the workload turns STRICT (as Envoy drains the connections of a changed filter
/// chain): frontend's pooled connection cannot carry the second request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_plaintext_connections_are_closed_when_the_workload_turns_strict() -> anyhow::Result<()>
{
    let mesh = Mesh::start(&[("mesh.yaml", MESH)]).await?;
    let disable = pa("default", "prod", None, "DISABLE", &[]);
    mesh.write_config("policies.yaml", &disable).await?;
    mesh.wait_synced().await?;
    assert_eq!(
        mesh.get_via("frontend.prod", BACKEND_URL).await?.status,
        200
    );

    let strict = disable + &pa("backend", "prod", Some("backend"), "STRICT", &[]);
    mesh.write_config("policies.yaml", &strict).await?;
    mesh.wait_synced().await?;
    let reply = mesh.get_via("frontend.prod", BACKEND_URL).await?;
    assert_ne!(
        reply.status, 200,
        "backend is STRICT, frontend is told to send plain text, yet it was served: {:?}",
        reply.headers
    );
    Ok(())
}
