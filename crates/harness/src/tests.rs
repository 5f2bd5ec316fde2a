use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{expand, fresh_ip};

#[test]
fn the_same_name_gets_the_same_address_and_others_a_new_one() {
    let mut seen = BTreeMap::new();
    let yaml = "a: {{ip.frontend}}\nb: {{ip.backend}}\nc: {{ip.frontend}}\n";
    let out = expand(yaml, |n| *seen.entry(n.to_owned()).or_insert_with(fresh_ip)).unwrap();
    let lines: Vec<IpAddr> = out.lines().map(|l| l[3..].parse().unwrap()).collect();
    assert_eq!(lines[0], lines[2], "{out}");
    assert_ne!(lines[0], lines[1], "{out}");
    assert!(lines.iter().all(|ip| ip.is_loopback()), "{out}");
    assert_eq!(seen.len(), 2);
}

#[test]
fn text_without_placeholders_is_kept_and_an_unclosed_one_is_an_error() {
    assert_eq!(
        expand("address: 127.0.0.9", |_| fresh_ip()).unwrap(),
        "address: 127.0.0.9"
    );
    let err = expand("address: {{ip.x", |_| fresh_ip()).unwrap_err();
    assert!(err.to_string().contains("unclosed"), "{err}");
}
