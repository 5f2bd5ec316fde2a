//! The CA: its files, plug-in CA files, and what `sign` accepts and makes.

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::SanType;
use rustls_pki_types::{CertificateDer, UnixTime};
use skiff_identity::{Ca, IdentityError, WorkloadCert, WorkloadKey};
use x509_parser::extensions::{GeneralName, ParsedExtension};

use crate::support::{TD, TestPki, id, self_signed_ca, workload_cert};

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// webpki's verdict on `chain` (leaf first) against `root`, as a client certificate.
fn chains_to(chain: &[CertificateDer<'static>], root: &CertificateDer<'static>) -> bool {
    let anchor = webpki::anchor_from_trusted_cert(root).unwrap().to_owned();
    let leaf = webpki::EndEntityCert::try_from(&chain[0]).unwrap();
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &chain[1..],
        UnixTime::now(),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .is_ok()
}

#[test]
fn self_signed_root_is_made_once_and_loaded_after() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("nested").join("ca");
    let first = Ca::load_or_create(&ca_dir, TD).unwrap();
    let key_mode = std::fs::metadata(ca_dir.join("root-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    assert!(ca_dir.join("root-cert.pem").is_file());

    let root = first.trust_bundle();
    assert_eq!(root.len(), 1);
    let (_, parsed) = x509_parser::parse_x509_certificate(&root[0]).unwrap();
    assert!(parsed.is_ca());
    assert!(parsed.key_usage().unwrap().unwrap().value.key_cert_sign());
    assert!(parsed.validity().not_after.timestamp() > unix(SystemTime::now()) + 5 * 365 * 86400);

    let again = Ca::load_or_create(&ca_dir, TD).unwrap();
    assert_eq!(
        again.trust_bundle(),
        root,
        "a second start loads the same root"
    );
    // And what the loaded CA signs chains to that root.
    let cert = workload_cert(&again, "backend");
    assert!(chains_to(cert.chain().certs(), &root[0]));
    assert!(
        first
            .trust_bundle_pem()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
}

#[test]
fn half_a_ca_directory_is_an_error_not_a_new_root() {
    let dir = tempfile::tempdir().unwrap();
    Ca::load_or_create(dir.path(), TD).unwrap();
    std::fs::remove_file(dir.path().join("root-cert.pem")).unwrap();
    let err = Ca::load_or_create(dir.path(), TD).unwrap_err().to_string();
    assert!(err.contains("root-key.pem is there but"), "{err}");
    assert!(err.contains("root-cert.pem is not"), "{err}");
}

#[test]
fn plugin_ca_signs_leaves_that_chain_through_the_intermediate() {
    let pki = TestPki::new(Duration::from_secs(30 * 86400));
    let ca = pki.ca();
    assert_eq!(ca.trust_bundle(), vec![pki.root.clone()]);
    let cert = workload_cert(&ca, "backend");
    let chain = cert.chain().certs();
    assert_eq!(chain.len(), 3, "leaf, intermediate, root");
    assert_eq!(chain[1], pki.intermediate);
    assert_eq!(chain[2], pki.root);
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    let (_, int) = x509_parser::parse_x509_certificate(&pki.intermediate).unwrap();
    assert_eq!(leaf.issuer(), int.subject());
    assert!(chains_to(chain, &pki.root));
    // Without the intermediate the leaf does not chain: it was signed by ca-cert.pem.
    assert!(!chains_to(&chain[..1], &pki.root));

    // A cert-chain.pem that stops below the root (or is empty): the chain handed out
    // still ends with the root.
    for chain_pem in [pem_of(&pki.intermediate), String::new()] {
        std::fs::write(pki.dir.path().join("cert-chain.pem"), chain_pem).unwrap();
        let cert = workload_cert(&pki.ca(), "backend");
        assert_eq!(
            cert.chain().certs()[1..],
            [pki.intermediate.clone(), pki.root.clone()]
        );
    }
}

fn pem_of(der: &CertificateDer<'_>) -> String {
    skiff_identity::CertChain::new(vec![der.clone().into_owned()])
        .unwrap()
        .to_pem()
        .remove(0)
}

#[test]
fn plugin_files_with_a_foreign_key_are_refused() {
    let pki = TestPki::new(Duration::from_secs(86400));
    let other = KeyPairPem::new();
    std::fs::write(pki.dir.path().join("ca-key.pem"), other.0).unwrap();
    let err = Ca::from_plugin_files(pki.dir.path(), TD)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ca-key.pem") && err.contains("does not belong"),
        "{err}"
    );
}

struct KeyPairPem(String);
impl KeyPairPem {
    fn new() -> Self {
        KeyPairPem(rcgen::KeyPair::generate().unwrap().serialize_pem())
    }
}

fn uri_sans(der: &[u8]) -> Vec<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::URI(uri) => uri.to_string(),
            other => format!("not a URI: {other:?}"),
        })
        .collect()
}

#[test]
fn signed_leaf_has_the_authorized_id_and_the_validity_asked_for() {
    let (_dir, ca) = self_signed_ca();
    let key = WorkloadKey::generate().unwrap();
    let before = unix(SystemTime::now());
    let ttl = Duration::from_secs(3600);
    // DER this time; PEM elsewhere.
    let chain = ca
        .sign(
            &key.csr_der(&id("backend")).unwrap(),
            &id("backend"),
            Some(ttl),
        )
        .unwrap();
    let after = unix(SystemTime::now());
    assert_eq!(chain.certs().len(), 2, "leaf and root");
    assert_eq!(uri_sans(chain.leaf()), vec![id("backend").to_string()]);

    let (_, leaf) = x509_parser::parse_x509_certificate(chain.leaf()).unwrap();
    let not_after = leaf.validity().not_after.timestamp();
    assert!(
        (before + 3600..=after + 3600).contains(&not_after),
        "{not_after}"
    );
    let not_before = leaf.validity().not_before.timestamp();
    assert!(
        not_before < before - 60,
        "notBefore is in the past for clock skew"
    );
    assert!(!leaf.is_ca());
    let mut saw = (false, false, false);
    for ext in leaf.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::KeyUsage(ku) => {
                saw.0 = ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign();
            }
            ParsedExtension::ExtendedKeyUsage(eku) => saw.1 = eku.server_auth && eku.client_auth,
            ParsedExtension::BasicConstraints(bc) => saw.2 = !bc.ca,
            _ => {}
        }
    }
    assert_eq!(saw, (true, true, true), "key usage, EKU, CA:false");

    let cert = WorkloadCert::new(chain, key).unwrap();
    assert_eq!(cert.id(), &id("backend"));
    assert_eq!(unix(cert.not_after()), not_after);
}

#[test]
fn default_ttl_is_a_day_and_never_past_the_signing_cert() {
    let (_dir, ca) = self_signed_ca();
    let cert = workload_cert(&ca, "a");
    let life = cert.not_after().duration_since(SystemTime::now()).unwrap();
    assert!(life > Duration::from_secs(86400 - 60) && life <= Duration::from_secs(86400));

    // An intermediate that ends in two hours caps a 24 h request.
    let pki = TestPki::new(Duration::from_secs(7200));
    let ca = pki.ca();
    let cert = workload_cert(&ca, "a");
    let (_, int) = x509_parser::parse_x509_certificate(&pki.intermediate).unwrap();
    assert_eq!(unix(cert.not_after()), int.validity().not_after.timestamp());
}

#[test]
fn csr_for_another_identity_is_refused_naming_both() {
    let (_dir, ca) = self_signed_ca();
    let key = WorkloadKey::generate().unwrap();
    let csr = key.csr_pem(&id("x")).unwrap();
    let err = ca.sign(csr.as_bytes(), &id("y"), None).unwrap_err();
    assert!(
        matches!(err, IdentityError::IdentityMismatch { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "CSR asks for spiffe://cluster.local/ns/prod/sa/x but the caller is spiffe://cluster.local/ns/prod/sa/y"
    );

    // A DNS name is an identity too.
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![SanType::DnsName("backend.prod".try_into().unwrap())];
    let kp = rcgen::KeyPair::generate().unwrap();
    let csr = params.serialize_request(&kp).unwrap().pem().unwrap();
    let err = ca
        .sign(csr.as_bytes(), &id("y"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("CSR asks for DNS name backend.prod but the caller is"),
        "{err}"
    );

    // A CSR that asks for no identity gets the caller's.
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&kp)
        .unwrap()
        .pem()
        .unwrap();
    let chain = ca.sign(csr.as_bytes(), &id("y"), None).unwrap();
    assert_eq!(uri_sans(chain.leaf()), vec![id("y").to_string()]);
}

#[test]
fn garbage_csrs_are_errors_not_panics() {
    let (_dir, ca) = self_signed_ca();
    let good = WorkloadKey::generate().unwrap().csr_der(&id("a")).unwrap();
    let inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"garbage".to_vec(),
        b"-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n".to_vec(),
        good[..good.len() / 2].to_vec(),
        vec![0x30, 0x82, 0xff, 0xff],
        vec![0xff; 300],
    ];
    for input in inputs {
        match ca.sign(&input, &id("a"), None) {
            Err(IdentityError::BadCsr(reason)) => assert!(!reason.is_empty()),
            other => panic!("{input:?}: expected BadCsr, got {other:?}"),
        }
    }
}

#[test]
fn csr_with_a_bad_signature_is_refused() {
    let (_dir, ca) = self_signed_ca();
    let key = WorkloadKey::generate().unwrap();
    let mut der = key.csr_der(&id("aaaa")).unwrap();
    // Change the identity asked for without signing again.
    let at = der
        .windows(7)
        .position(|w| w == b"sa/aaaa")
        .expect("the SAN is in the DER");
    der[at + 3..at + 7].copy_from_slice(b"bbbb");
    let err = ca.sign(&der, &id("bbbb"), None).unwrap_err();
    assert!(
        err.to_string().contains("signature does not verify"),
        "{err}"
    );
}

#[test]
fn refresh_is_about_half_way_through_the_real_validity() {
    let (_dir, ca) = self_signed_ca();
    let cert = workload_cert(&ca, "a");
    let start = cert.not_before();
    let life = cert.not_after().duration_since(start).unwrap();
    assert_eq!(cert.refresh_at(0.0), start + life / 2);
    for _ in 0..50 {
        let at = cert.refresh_at(0.1).duration_since(start).unwrap();
        assert!(
            at >= life.mul_f64(0.4) && at <= life.mul_f64(0.6),
            "{at:?} of {life:?}"
        );
    }
    // The clock-skew margin counts: half of (ttl + 5 min) from notBefore.
    assert_eq!(life, Duration::from_secs(86400 + 300));
}

#[test]
fn control_plane_serving_cert_has_dns_ip_and_spiffe_sans() {
    let (_dir, ca) = self_signed_ca();
    let cert = ca
        .issue_server_cert(
            &["skiff-control.skiff-system.svc".to_string()],
            &["127.0.0.1".parse().unwrap()],
            None,
        )
        .unwrap();
    assert_eq!(
        cert.id().to_string(),
        "spiffe://cluster.local/ns/skiff-system/sa/skiff-control"
    );
    let (_, leaf) = x509_parser::parse_x509_certificate(cert.chain().leaf()).unwrap();
    let names = format!(
        "{:?}",
        leaf.subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
    );
    assert!(names.contains("skiff-control.skiff-system.svc"), "{names}");
    assert!(
        names.contains("127.0.0.1") || names.contains("[127, 0, 0, 1]"),
        "{names}"
    );
    // Serving certificates verify as servers against the root.
    let anchor = webpki::anchor_from_trusted_cert(&ca.trust_bundle()[0])
        .unwrap()
        .to_owned();
    webpki::EndEntityCert::try_from(cert.chain().leaf())
        .unwrap()
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &cert.chain().certs()[1..],
            UnixTime::now(),
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .unwrap();
}
