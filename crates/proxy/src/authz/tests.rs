//! Istio's AuthorizationPolicy semantics, decision by decision.

use std::net::IpAddr;

use http::HeaderMap;
use skiff_model::config::{
    AuthzAction, AuthzCondition, AuthzOperation, AuthzPolicy, AuthzRule, AuthzSource,
};

use super::*;

const FRONTEND: &str = "spiffe://cluster.local/ns/prod/sa/frontend";

fn policy(name: &str, action: AuthzAction, rules: Vec<AuthzRule>) -> AuthzPolicy {
    AuthzPolicy {
        name: name.into(),
        action,
        dry_run: false,
        rules,
    }
}

fn from_principal(p: &str) -> AuthzSource {
    AuthzSource {
        principals: vec![p.into()],
        ..Default::default()
    }
}

fn methods_paths(methods: &[&str], paths: &[&str]) -> AuthzOperation {
    AuthzOperation {
        methods: methods.iter().map(|m| m.to_string()).collect(),
        paths: paths.iter().map(|m| m.to_string()).collect(),
        ..Default::default()
    }
}

fn compile(policies: Vec<AuthzPolicy>) -> Authz {
    let mut warnings = Vec::new();
    Authz::compile(&policies, &mut warnings).unwrap()
}

struct Req {
    peer: Option<&'static str>,
    ip: IpAddr,
    method: &'static str,
    path: &'static str,
    host: &'static str,
    headers: HeaderMap,
    port: u16,
}

fn req(peer: Option<&'static str>, method: &'static str, path: &'static str) -> Req {
    Req {
        peer,
        ip: "10.0.0.7".parse().unwrap(),
        method,
        path,
        host: "backend:8080",
        headers: HeaderMap::new(),
        port: 8080,
    }
}

fn check(a: &Authz, r: &Req, tcp: bool) -> Decision {
    let attrs = Attrs {
        peer_ip: r.ip,
        remote_ip: r.ip,
        peer: r.peer,
        dest_ip: "10.0.0.9".parse().unwrap(),
        dest_port: r.port,
        sni: None,
        http: (!tcp).then_some(HttpAttrs {
            method: r.method,
            path: r.path,
            host: r.host,
            headers: &r.headers,
        }),
        jwt: None,
    };
    a.check(&attrs)
}

fn allowed(d: &Decision) -> bool {
    *d == Decision::Allow
}

#[test]
fn no_policy_allows_and_an_empty_allow_policy_denies_all() {
    assert!(allowed(&check(
        &compile(vec![]),
        &req(None, "GET", "/"),
        false
    )));
    // `spec: {}`: ALLOW with no rules matches nothing, so it denies every request.
    let deny_all = compile(vec![policy("prod/deny-all", AuthzAction::Allow, vec![])]);
    let d = check(&deny_all, &req(Some(FRONTEND), "GET", "/"), false);
    let Decision::Deny {
        policy: decided,
        reason,
    } = &d
    else {
        panic!("{d:?}")
    };
    assert_eq!(decided, &None);
    assert!(reason.contains("prod/deny-all has no rules"), "{reason}");
    assert!(
        d.details().unwrap().starts_with("rbac_access_denied_matched_policy[none]: peer spiffe://cluster.local/ns/prod/sa/frontend not allowed by AuthorizationPolicy prod/deny-all"),
        "{d:?}"
    );
    // `rules: [{}]`: one empty rule matches every request.
    let allow_all = compile(vec![policy(
        "prod/allow-all",
        AuthzAction::Allow,
        vec![AuthzRule::default()],
    )]);
    assert!(allowed(&check(&allow_all, &req(None, "POST", "/x"), false)));
}

#[test]
fn allow_by_principal_method_and_path_says_what_missed() {
    let a = compile(vec![
        policy("prod/deny-all", AuthzAction::Allow, vec![]),
        policy(
            "prod/backend-allow",
            AuthzAction::Allow,
            vec![AuthzRule {
                from: vec![from_principal("cluster.local/ns/prod/sa/frontend")],
                to: vec![methods_paths(&["GET"], &["/api/*"])],
                when: vec![],
            }],
        ),
    ]);
    assert!(allowed(&check(
        &a,
        &req(Some(FRONTEND), "GET", "/api/items"),
        false
    )));
    let d = check(&a, &req(Some(FRONTEND), "POST", "/api/items"), false);
    let reason = d.details().unwrap();
    assert!(
        reason.contains("rule 0: method POST is not one of GET"),
        "{reason}"
    );
    let d = check(&a, &req(Some(FRONTEND), "GET", "/admin"), false);
    assert!(
        d.details()
            .unwrap()
            .contains("path /admin is not one of /api/*"),
        "{d:?}"
    );
    let other = "spiffe://cluster.local/ns/prod/sa/other";
    let d = check(&a, &req(Some(other), "GET", "/api/items"), false);
    let reason = d.details().unwrap();
    assert!(
        reason.contains("principal cluster.local/ns/prod/sa/other is not one of cluster.local/ns/prod/sa/frontend"),
        "{reason}"
    );
    // Without mutual TLS there is no principal at all.
    let d = check(&a, &req(None, "GET", "/api/items"), false);
    let reason = d.details().unwrap();
    assert!(
        reason.contains("a caller without a mesh identity (10.0.0.7)"),
        "{reason}"
    );
    assert!(reason.contains("there is no principal"), "{reason}");
}

#[test]
fn deny_beats_allow_and_names_the_policy() {
    let a = compile(vec![
        policy(
            "prod/allow-all",
            AuthzAction::Allow,
            vec![AuthzRule::default()],
        ),
        policy(
            "prod/no-delete",
            AuthzAction::Deny,
            vec![AuthzRule {
                to: vec![methods_paths(&["DELETE"], &[])],
                ..Default::default()
            }],
        ),
    ]);
    assert!(allowed(&check(&a, &req(Some(FRONTEND), "GET", "/"), false)));
    let d = check(&a, &req(Some(FRONTEND), "DELETE", "/"), false);
    assert_eq!(
        d.details().unwrap(),
        "rbac_access_denied_matched_policy[prod/no-delete]: peer spiffe://cluster.local/ns/prod/sa/frontend denied by AuthorizationPolicy prod/no-delete (rule 0 matched)"
    );
}

#[test]
fn not_fields_namespaces_service_accounts_and_ip_blocks() {
    let a = compile(vec![policy(
        "prod/mixed",
        AuthzAction::Allow,
        vec![AuthzRule {
            from: vec![AuthzSource {
                namespaces: vec!["prod".into()],
                not_service_accounts: vec!["prod/blocked".into()],
                ip_blocks: vec!["10.0.0.0/24".into()],
                ..Default::default()
            }],
            to: vec![AuthzOperation {
                not_paths: vec!["/private/{**}".into()],
                ports: vec![8080],
                ..Default::default()
            }],
            when: vec![],
        }],
    )]);
    assert!(allowed(&check(
        &a,
        &req(Some(FRONTEND), "GET", "/x"),
        false
    )));
    let blocked = "spiffe://cluster.local/ns/prod/sa/blocked";
    let d = check(&a, &req(Some(blocked), "GET", "/x"), false);
    assert!(
        d.details()
            .unwrap()
            .contains("service account prod/blocked is excluded"),
        "{d:?}"
    );
    let d = check(
        &a,
        &req(Some("spiffe://cluster.local/ns/dev/sa/x"), "GET", "/x"),
        false,
    );
    assert!(
        d.details()
            .unwrap()
            .contains("namespace dev is not one of prod"),
        "{d:?}"
    );
    let d = check(&a, &req(Some(FRONTEND), "GET", "/private/a/b"), false);
    assert!(
        d.details()
            .unwrap()
            .contains("path /private/a/b is excluded"),
        "{d:?}"
    );
    let mut far = req(Some(FRONTEND), "GET", "/x");
    far.ip = "192.168.1.1".parse().unwrap();
    let d = check(&a, &far, false);
    assert!(
        d.details()
            .unwrap()
            .contains("source address 192.168.1.1 is not one of 10.0.0.0/24"),
        "{d:?}"
    );
    let mut other_port = req(Some(FRONTEND), "GET", "/x");
    other_port.port = 9090;
    assert!(!allowed(&check(&a, &other_port, false)));
}

#[test]
fn when_conditions_on_headers_and_source() {
    let a = compile(vec![policy(
        "prod/when",
        AuthzAction::Allow,
        vec![AuthzRule {
            when: vec![
                AuthzCondition {
                    key: "request.headers[x-tenant]".into(),
                    values: vec!["acme-*".into()],
                    not_values: vec![],
                },
                AuthzCondition {
                    key: "source.namespace".into(),
                    values: vec!["prod".into()],
                    not_values: vec![],
                },
            ],
            ..Default::default()
        }],
    )]);
    let mut r = req(Some(FRONTEND), "GET", "/");
    assert!(!allowed(&check(&a, &r, false)));
    r.headers.insert("x-tenant", "acme-eu".parse().unwrap());
    assert!(allowed(&check(&a, &r, false)));
    r.headers.insert("x-tenant", "other".parse().unwrap());
    let d = check(&a, &r, false);
    assert!(
        d.details()
            .unwrap()
            .contains("request.headers[x-tenant] other is not one of acme-*"),
        "{d:?}"
    );
}

#[test]
fn tcp_drops_http_rules_for_allow_and_broadens_deny() {
    let http_only_allow = compile(vec![policy(
        "prod/get-only",
        AuthzAction::Allow,
        vec![AuthzRule {
            to: vec![methods_paths(&["GET"], &[])],
            ..Default::default()
        }],
    )]);
    // HTTP: allowed; TCP: the rule needs HTTP, so nothing is allowed.
    assert!(allowed(&check(
        &http_only_allow,
        &req(Some(FRONTEND), "GET", "/"),
        false
    )));
    let d = check(&http_only_allow, &req(Some(FRONTEND), "", ""), true);
    assert!(
        d.details()
            .unwrap()
            .contains("rule 0 needs HTTP attributes and this is TCP"),
        "{d:?}"
    );
    // A DENY rule on a method denies every TCP connection (the method is dropped).
    let deny_post = compile(vec![policy(
        "prod/no-post",
        AuthzAction::Deny,
        vec![AuthzRule {
            from: vec![from_principal("cluster.local/ns/prod/sa/frontend")],
            to: vec![methods_paths(&["POST"], &[])],
            when: vec![],
        }],
    )]);
    assert!(allowed(&check(
        &deny_post,
        &req(Some(FRONTEND), "GET", "/"),
        false
    )));
    assert!(!allowed(&check(
        &deny_post,
        &req(Some(FRONTEND), "", ""),
        true
    )));
    // ...but only for the sources the rule still names.
    let other = "spiffe://cluster.local/ns/prod/sa/other";
    assert!(allowed(&check(&deny_post, &req(Some(other), "", ""), true)));
}

#[test]
fn dry_run_and_audit_do_not_change_the_decision() {
    let mut p = policy("prod/deny-all", AuthzAction::Allow, vec![]);
    p.dry_run = true;
    let audit = policy("prod/audit", AuthzAction::Audit, vec![AuthzRule::default()]);
    let a = compile(vec![p, audit]);
    assert!(allowed(&check(&a, &req(Some(FRONTEND), "GET", "/"), false)));
}

#[test]
fn unsupported_conditions_fail_closed_and_bad_cidrs_reject_the_config() {
    let cond = AuthzCondition {
        key: "experimental.envoy.filters.network.mysql_proxy[db.table]".into(),
        values: vec!["[update]".into()],
        not_values: vec![],
    };
    let mut warnings = Vec::new();
    let allow = Authz::compile(
        &[policy(
            "prod/exp",
            AuthzAction::Allow,
            vec![AuthzRule {
                when: vec![cond.clone()],
                ..Default::default()
            }],
        )],
        &mut warnings,
    )
    .unwrap();
    assert!(
        warnings[0].contains("is not evaluated by skiff"),
        "{warnings:?}"
    );
    assert!(!allowed(&check(
        &allow,
        &req(Some(FRONTEND), "GET", "/"),
        false
    )));
    let deny = compile(vec![policy(
        "prod/exp-deny",
        AuthzAction::Deny,
        vec![AuthzRule {
            when: vec![cond],
            ..Default::default()
        }],
    )]);
    assert!(!allowed(&check(
        &deny,
        &req(Some(FRONTEND), "GET", "/"),
        false
    )));

    let bad = Authz::compile(
        &[policy(
            "prod/bad",
            AuthzAction::Allow,
            vec![AuthzRule {
                from: vec![AuthzSource {
                    ip_blocks: vec!["10.0.0.0/40".into()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        )],
        &mut Vec::new(),
    );
    let err = bad.unwrap_err().to_string();
    assert!(err.contains("AuthorizationPolicy prod/bad rule 0"), "{err}");
    assert!(err.contains("prefix length"), "{err}");
}
