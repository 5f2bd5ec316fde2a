//! AuthorizationPolicy through real proxies over mutual TLS: a zero-trust baseline
//! (deny all, then allow one principal's GETs), DENY over ALLOW, and the words of every
//! denial in the access log.

use std::sync::atomic::Ordering;

use skiff_model::config::*;

use crate::mtls::*;
use crate::support::*;

fn allow_frontend_get() -> Vec<AuthzPolicy> {
    vec![
        AuthzPolicy {
            name: "prod/deny-all".into(),
            action: AuthzAction::Allow,
            dry_run: false,
            rules: vec![],
        },
        AuthzPolicy {
            name: "prod/backend-allow".into(),
            action: AuthzAction::Allow,
            dry_run: false,
            rules: vec![AuthzRule {
                from: vec![AuthzSource {
                    principals: vec!["cluster.local/ns/prod/sa/frontend".into()],
                    ..Default::default()
                }],
                to: vec![AuthzOperation {
                    methods: vec!["GET".into()],
                    ..Default::default()
                }],
                when: vec![],
            }],
        },
    ]
}

#[tokio::test]
async fn deny_all_plus_an_allow_for_one_principal_and_method() {
    let mesh = Mesh::new();
    let srv = server_with(
        Some(mesh.identity(BACKEND)),
        &[MtlsMode::Strict],
        allow_frontend_get(),
    )
    .await;
    let cli = client(Some(mesh.identity(FRONTEND)), srv.endpoint.clone()).await;
    let r = get(cli.outbound(), "http://backend/items").await;
    assert_eq!(r.status, 200, "{}", r.body);

    let mut c = Client::connect(cli.outbound()).await;
    let post = http::Request::post("http://backend/items")
        .body(Default::default())
        .unwrap();
    let r = c.send(post).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body, "RBAC: access denied");
    let line = srv.proxy.log_line("\"POST /items").await;
    assert!(line.contains(" 403 - "), "{line}");
    assert!(
        line.ends_with(&format!(
            "\"rbac_access_denied_matched_policy[none]: peer {FRONTEND} not allowed by any of \
             the AuthorizationPolicies prod/deny-all, prod/backend-allow (prod/deny-all has no \
             rules, so it allows nothing; rule 0: method POST is not one of GET)\""
        )),
        "{line}"
    );

    // Another workload of the mesh, GET or not, is refused: it is not the principal.
    let other = client(
        Some(mesh.identity("spiffe://cluster.local/ns/prod/sa/reports")),
        srv.endpoint.clone(),
    )
    .await;
    let r = get(other.outbound(), "http://backend/items").await;
    assert_eq!(r.status, 403);
    let line = srv.proxy.log_line("sa/reports not allowed").await;
    assert!(
        line.contains("principal cluster.local/ns/prod/sa/reports is not one of"),
        "{line}"
    );
    assert_eq!(srv.app.hits.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn deny_beats_allow() {
    let mesh = Mesh::new();
    let mut policies = allow_frontend_get();
    policies.push(AuthzPolicy {
        name: "prod/no-admin".into(),
        action: AuthzAction::Deny,
        dry_run: false,
        rules: vec![AuthzRule {
            to: vec![AuthzOperation {
                paths: vec!["/admin/*".into()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    });
    let srv = server_with(Some(mesh.identity(BACKEND)), &[MtlsMode::Strict], policies).await;
    let cli = client(Some(mesh.identity(FRONTEND)), srv.endpoint.clone()).await;
    assert_eq!(get(cli.outbound(), "http://backend/ok").await.status, 200);
    let r = get(cli.outbound(), "http://backend/admin/users").await;
    assert_eq!(r.status, 403);
    let line = srv.proxy.log_line("/admin/users").await;
    assert!(
        line.ends_with(&format!(
            "\"rbac_access_denied_matched_policy[prod/no-admin]: peer {FRONTEND} denied by \
             AuthorizationPolicy prod/no-admin (rule 0 matched)\""
        )),
        "{line}"
    );
}

#[tokio::test]
async fn a_plain_text_caller_has_no_principal() {
    // PERMISSIVE lets plain text in, but a principal-based ALLOW cannot match it.
    let mesh = Mesh::new();
    let srv = server_with(
        Some(mesh.identity(BACKEND)),
        &[MtlsMode::Permissive],
        allow_frontend_get(),
    )
    .await;
    let out = plaintext_to_inbound(srv.proxy.inbound(), srv.app.addr.port()).await;
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    let line = srv.proxy.log_line("/plain").await;
    assert!(line.contains("a caller without a mesh identity"), "{line}");
    assert!(line.contains("there is no principal"), "{line}");
}

/// A TCP echo workload behind a STRICT sidecar with `policies`, and a caller's sidecar
/// with identity `caller` that reaches it as `db:5432`.
async fn tcp_pair(
    mesh: &Mesh,
    caller: &str,
    policies: Vec<AuthzPolicy>,
) -> (TestProxy, TestProxy, ProxyConfig) {
    let ip = fresh_ip();
    let echo = echo_server(ip).await;
    let mut config = sidecar(ip, vec![], vec![]);
    config.inbound = vec![InboundPort {
        target_port: echo.port(),
        protocol: Protocol::Tcp,
        services: vec![],
        mtls: MtlsMode::Strict,
    }];
    config.policies.authorization_policies = policies;
    let srv = TestProxy::start_with(ip, |o| o.mesh_tls = Some(mesh.identity(BACKEND))).await;
    srv.proxy.apply("1", config.clone()).unwrap();
    let cip = fresh_ip();
    let cfg = sidecar(
        cip,
        vec![OutboundPort {
            port: 5432,
            protocol: Protocol::Tcp,
            virtual_hosts: vec![],
            tcp: vec![TcpRoute {
                matches: vec![],
                name: "db.prod.svc.cluster.local:5432".into(),
                domains: vec!["db".into()],
                destinations: vec![WeightedCluster {
                    cluster: "db".into(),
                    weight: 100,
                }],
            }],
        }],
        vec![cluster(
            "db",
            Protocol::Tcp,
            vec![Endpoint {
                address: echo,
                proxy_port: Some(srv.inbound().port()),
                workload: "db.prod".into(),
                weight: 1,
                spiffe_id: BACKEND.into(),
                sidecar: true,
                mtls: true,
                locality: String::new(),
                priority: 0,
                dns: None,
            }],
        )],
    );
    let cli = TestProxy::start_with(cip, |o| o.mesh_tls = Some(mesh.identity(caller))).await;
    cli.proxy.apply("1", cfg).unwrap();
    (srv, cli, config)
}

async fn round_trip(s: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if s.write_all(b"ping").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 4];
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(5), s.read_exact(&mut buf)).await,
        Ok(Ok(_))
    ) && &buf == b"ping"
}

fn allow_principal(name: &str, principal: &str) -> AuthzPolicy {
    AuthzPolicy {
        name: name.into(),
        action: AuthzAction::Allow,
        dry_run: false,
        rules: vec![AuthzRule {
            from: vec![AuthzSource {
                principals: vec![principal.into()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn tcp_connections_are_checked_and_closed_when_policy_no_longer_allows_them() {
    let mesh = Mesh::new();
    let policy = allow_principal("prod/db-allow", "cluster.local/ns/prod/sa/frontend");
    let (srv, cli, mut config) = tcp_pair(&mesh, FRONTEND, vec![policy.clone()]).await;
    let mut s = connect_tunnel(cli.outbound(), "db:5432").await.unwrap();
    assert!(round_trip(&mut s).await);

    // A caller the policy does not name is cut off at once.
    let (_srv2, other, _) = tcp_pair(
        &mesh,
        "spiffe://cluster.local/ns/prod/sa/reports",
        vec![policy.clone()],
    )
    .await;
    let mut o = connect_tunnel(other.outbound(), "db:5432").await.unwrap();
    assert!(!round_trip(&mut o).await);

    // The policy changes to name someone else: the open connection is closed.
    config.policies.authorization_policies = vec![allow_principal(
        "prod/db-allow",
        "cluster.local/ns/prod/sa/reports",
    )];
    srv.proxy.apply("2", config).unwrap();
    let line = srv.log_line("after a policy change").await;
    assert!(
        line.contains(&format!(
            "after a policy change, rbac_access_denied_matched_policy[none]: peer {FRONTEND} \
             not allowed by AuthorizationPolicy prod/db-allow (rule 0: principal \
             cluster.local/ns/prod/sa/frontend is not one of cluster.local/ns/prod/sa/reports)"
        )),
        "{line}"
    );
    assert!(!round_trip(&mut s).await, "the connection is still open");
}

#[tokio::test]
async fn ip_blocks_see_the_calling_workloads_address() {
    // The caller's proxy connects from its workload's own address, so a DENY on that
    // address stops it, and one on another address does not.
    let mesh = Mesh::new();
    let deny_ip = |ip: String| AuthzPolicy {
        name: "prod/deny-ip".into(),
        action: AuthzAction::Deny,
        dry_run: false,
        rules: vec![AuthzRule {
            from: vec![AuthzSource {
                ip_blocks: vec![ip],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let srv = server(Some(mesh.identity(BACKEND)), &[MtlsMode::Strict]).await;
    let cli = client(Some(mesh.identity(FRONTEND)), srv.endpoint.clone()).await;
    let caller_ip = cli.outbound().ip();
    let mut config = srv.proxy.proxy.snapshot().unwrap().config().clone();
    config.policies.authorization_policies = vec![deny_ip(format!("{caller_ip}/32"))];
    srv.proxy.proxy.apply("2", config.clone()).unwrap();
    let r = get(cli.outbound(), "http://backend/from-ip").await;
    assert_eq!(r.status, 403);
    let line = srv.proxy.log_line("/from-ip").await;
    assert!(line.contains("prod/deny-ip"), "{line}");
    config.policies.authorization_policies = vec![deny_ip("10.9.9.9".into())];
    srv.proxy.proxy.apply("3", config).unwrap();
    assert_eq!(get(cli.outbound(), "http://backend/ok").await.status, 200);
}
