use super::target::{Target, proxy_from};
use super::{caller, greeting, indent};

#[test]
fn greeting_matches_hello_app() {
    assert_eq!(
        greeting("1.0.0", "backend-v1"),
        "Hello, world!\nVersion: 1.0.0\nHostname: backend-v1\n"
    );
}

#[test]
fn the_caller_comes_from_the_sidecars_client_cert_header() {
    let mut h = hyper::HeaderMap::new();
    assert_eq!(caller(&h), None);
    h.insert(
        "x-forwarded-client-cert",
        "By=spiffe://cluster.local/ns/prod/sa/backend;URI=spiffe://cluster.local/ns/prod/sa/frontend"
            .parse()
            .unwrap(),
    );
    assert_eq!(
        caller(&h),
        Some("spiffe://cluster.local/ns/prod/sa/frontend")
    );
}

#[test]
fn indent_prefixes_every_line() {
    assert_eq!(indent("a\nb\n"), "  a\n  b\n");
    assert_eq!(
        indent("last line without newline"),
        "  last line without newline\n"
    );
    assert_eq!(indent(""), "");
}

#[test]
fn target_without_scheme_gets_http_and_a_path() {
    let target = Target::parse("backend.prod.svc.cluster.local").unwrap();
    assert_eq!(target.to_string(), "http://backend.prod.svc.cluster.local/");
    let target = Target::parse("http://backend:8080/hello?x=1").unwrap();
    assert_eq!(target.to_string(), "http://backend:8080/hello?x=1");
}

#[test]
fn target_rejects_https_and_garbage() {
    let error = Target::parse("https://backend").unwrap_err().to_string();
    assert!(error.contains("not supported"), "{error}");
    assert!(Target::parse("http://").is_err());
    assert!(Target::parse("http://exa mple").is_err());
}

fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[test]
fn proxy_from_environment() {
    assert_eq!(proxy_from(vars(&[])).unwrap(), None);
    assert_eq!(
        proxy_from(vars(&[("http_proxy", "http://127.0.0.1:15001")])).unwrap(),
        Some("127.0.0.1:15001".to_owned())
    );
    assert_eq!(
        proxy_from(vars(&[("HTTP_PROXY", "127.0.0.2:15001/")])).unwrap(),
        Some("127.0.0.2:15001".to_owned())
    );
    // Upper case wins, like Go's net/http; an empty value counts as unset.
    assert_eq!(
        proxy_from(vars(&[
            ("HTTP_PROXY", "http://a:1"),
            ("http_proxy", "http://b:2")
        ]))
        .unwrap(),
        Some("a:1".to_owned())
    );
    assert_eq!(
        proxy_from(vars(&[("HTTP_PROXY", " "), ("http_proxy", "http://b:2")])).unwrap(),
        Some("b:2".to_owned())
    );
    assert_eq!(
        proxy_from(vars(&[("http_proxy", "http://proxy")])).unwrap(),
        Some("proxy:80".to_owned())
    );
    assert!(proxy_from(vars(&[("http_proxy", "https://proxy:443")])).is_err());
}
