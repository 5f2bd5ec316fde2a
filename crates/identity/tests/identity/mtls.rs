//! Mesh mTLS over real loopback TCP: who sees whom, what is negotiated, what is
//! refused and with which words, and rotation of certificates and roots.

use std::sync::Arc;
use std::time::Duration;

use rcgen::SanType;
use rustls::{NamedGroup, ProtocolVersion};
use skiff_identity::{IdentityError, MESH_ALPN, MeshTls, TrustBundle, peer_identity};
use tokio::io::AsyncReadExt;

use crate::support::{
    TD, TestPki, handshake, id, round_trip, self_signed_ca, serial, workload_cert,
};

#[tokio::test]
async fn two_workloads_of_one_ca_see_each_other() {
    let (_dir, ca) = self_signed_ca();
    let backend = MeshTls::new(workload_cert(&ca, "backend"), ca.bundle()).unwrap();
    let frontend = MeshTls::new(workload_cert(&ca, "frontend"), ca.bundle()).unwrap();

    let hs = handshake(
        backend.server_config(),
        frontend.client_config(&[id("backend")]),
    )
    .await;
    let mut client = hs.client.unwrap();
    let mut server = hs.server.unwrap();

    let (_, c) = client.get_ref();
    assert_eq!(
        peer_identity(c),
        Some(id("backend")),
        "the client sees the server"
    );
    assert_eq!(c.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(
        c.negotiated_key_exchange_group().map(|g| g.name()),
        Some(NamedGroup::X25519MLKEM768)
    );
    assert_eq!(c.alpn_protocol(), Some(MESH_ALPN));

    let (_, s) = server.get_ref();
    assert_eq!(
        peer_identity(s),
        Some(id("frontend")),
        "the server sees the client"
    );
    assert_eq!(s.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    assert_eq!(
        s.negotiated_key_exchange_group().map(|g| g.name()),
        Some(NamedGroup::X25519MLKEM768)
    );
    assert_eq!(s.alpn_protocol(), Some(MESH_ALPN));

    round_trip(&mut client, &mut server, b"hello through the mesh").await;
}

#[tokio::test]
async fn any_of_several_expected_ids_or_any_of_the_trust_domain() {
    let (_dir, ca) = self_signed_ca();
    let backend = MeshTls::new(workload_cert(&ca, "backend"), ca.bundle()).unwrap();
    let frontend = MeshTls::new(workload_cert(&ca, "frontend"), ca.bundle()).unwrap();
    for expected in [vec![id("other"), id("backend")], vec![]] {
        let hs = handshake(backend.server_config(), frontend.client_config(&expected)).await;
        let (mut client, mut server) = (hs.client.unwrap(), hs.server.unwrap());
        round_trip(&mut client, &mut server, b"x").await;
    }
}

#[tokio::test]
async fn client_from_another_root_is_refused_as_unknown_root() {
    let (_d1, ca) = self_signed_ca();
    let (_d2, stranger_ca) = self_signed_ca();
    let backend = MeshTls::new(workload_cert(&ca, "backend"), ca.bundle()).unwrap();
    // The stranger trusts the mesh's root (so it accepts the server) but the mesh
    // does not trust the stranger's.
    let stranger_bundle = stranger_ca.bundle();
    stranger_bundle
        .add_root_pem(&ca.trust_bundle_pem())
        .unwrap();
    let stranger = MeshTls::new(workload_cert(&stranger_ca, "intruder"), stranger_bundle).unwrap();

    let hs = handshake(
        backend.server_config(),
        stranger.client_config(&[id("backend")]),
    )
    .await;
    let err = hs.server.unwrap_err();
    assert!(
        err.to_string().contains(
            "certificate of spiffe://cluster.local/ns/prod/sa/intruder is from an unknown root"
        ),
        "{err}"
    );
    assert!(matches!(
        IdentityError::from_handshake(&err),
        Some(IdentityError::UnknownRoot { roots: 1, .. })
    ));
    // The client hears of it as an alert on its first read.
    let mut client = hs.client.unwrap();
    let mut buf = [0; 1];
    assert!(client.read(&mut buf).await.is_err());
}

#[tokio::test]
async fn expired_certificates_are_refused_both_ways() {
    let pki = TestPki::new(Duration::from_secs(86400));
    let ca = pki.ca();
    let backend = MeshTls::new(workload_cert(&ca, "backend"), ca.bundle()).unwrap();
    let old = MeshTls::new(pki.expired_cert("frontend"), ca.bundle()).unwrap();

    // An expired client.
    let hs = handshake(backend.server_config(), old.client_config(&[id("backend")])).await;
    let err = hs.server.unwrap_err().to_string();
    assert!(
        err.contains("certificate of spiffe://cluster.local/ns/prod/sa/frontend expired at"),
        "{err}"
    );

    // An expired server.
    let frontend = MeshTls::new(workload_cert(&ca, "frontend"), ca.bundle()).unwrap();
    let old_server = MeshTls::new(pki.expired_cert("backend"), ca.bundle()).unwrap();
    let hs = handshake(
        old_server.server_config(),
        frontend.client_config(&[id("backend")]),
    )
    .await;
    let err = hs.client.unwrap_err().to_string();
    assert!(err.contains("/sa/backend expired at"), "{err}");
    assert!(hs.server.is_err());
}

#[tokio::test]
async fn server_with_the_wrong_identity_is_refused_naming_both() {
    let (_dir, ca) = self_signed_ca();
    let impostor = MeshTls::new(workload_cert(&ca, "impostor"), ca.bundle()).unwrap();
    let frontend = MeshTls::new(workload_cert(&ca, "frontend"), ca.bundle()).unwrap();
    let hs = handshake(
        impostor.server_config(),
        frontend.client_config(&[id("backend")]),
    )
    .await;
    let err = hs.client.unwrap_err();
    let expected = "peer is spiffe://cluster.local/ns/prod/sa/impostor but spiffe://cluster.local/ns/prod/sa/backend was expected";
    assert!(err.to_string().contains(expected), "{err}");
    // The same, without rustls's wrapping.
    let why = IdentityError::from_handshake(&err).expect("refused by our verifier");
    assert!(matches!(why, IdentityError::WrongPeer { .. }), "{why:?}");
    assert_eq!(why.to_string(), expected);
    assert!(hs.server.is_err(), "the server is told by an alert");
}

#[tokio::test]
async fn certificate_without_spiffe_id_is_refused() {
    let pki = TestPki::new(Duration::from_secs(86400));
    let ca = pki.ca();
    // A server with a DNS-only certificate of the mesh's own CA, served by plain rustls.
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = {
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![SanType::DnsName("backend.prod".try_into().unwrap())];
        params
            .signed_by(
                &key,
                &rcgen::Issuer::from_ca_cert_der(
                    &pki.intermediate,
                    rcgen::KeyPair::from_pem(
                        &std::fs::read_to_string(pki.dir.path().join("ca-key.pem")).unwrap(),
                    )
                    .unwrap(),
                )
                .unwrap(),
            )
            .unwrap()
    };
    let server = rustls::ServerConfig::builder_with_provider(skiff_identity::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), pki.intermediate.clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let frontend = MeshTls::new(workload_cert(&ca, "frontend"), ca.bundle()).unwrap();
    let hs = handshake(Arc::new(server), frontend.client_config(&[id("backend")])).await;
    let err = hs.client.unwrap_err().to_string();
    assert!(
        err.contains("no SPIFFE id in the peer certificate: it has no URI SAN"),
        "{err}"
    );
}

#[tokio::test]
async fn rotated_certificate_serves_new_handshakes_and_old_connections_go_on() {
    let (_dir, ca) = self_signed_ca();
    let backend = MeshTls::new(workload_cert(&ca, "backend"), ca.bundle()).unwrap();
    let frontend = MeshTls::new(workload_cert(&ca, "frontend"), ca.bundle()).unwrap();
    // Configs taken once, before the rotation, as a running proxy holds them.
    let server_config = backend.server_config();
    let client_config = frontend.client_config(&[id("backend")]);

    let hs = handshake(server_config.clone(), client_config.clone()).await;
    let (mut old_client, mut old_server) = (hs.client.unwrap(), hs.server.unwrap());
    let first_serial = serial(&old_client.get_ref().1.peer_certificates().unwrap()[0]);

    backend.rotate(workload_cert(&ca, "backend"));
    frontend.rotate(workload_cert(&ca, "frontend"));

    let hs = handshake(server_config, client_config).await;
    let (mut client, mut server) = (hs.client.unwrap(), hs.server.unwrap());
    let second_serial = serial(&client.get_ref().1.peer_certificates().unwrap()[0]);
    assert_ne!(
        first_serial, second_serial,
        "the new handshake shows the new cert"
    );
    assert_eq!(
        serial(&server.get_ref().1.peer_certificates().unwrap()[0]),
        serial(frontend.current_cert().unwrap().chain().leaf()),
        "the client shows its new cert too"
    );
    round_trip(&mut client, &mut server, b"new").await;
    round_trip(
        &mut old_client,
        &mut old_server,
        b"the old connection still works",
    )
    .await;
}

#[tokio::test]
async fn root_rotation_trusts_old_and_new_roots_during_the_overlap() {
    let (_d1, old_ca) = self_signed_ca();
    let (_d2, new_ca) = self_signed_ca();
    let bundle = old_ca.bundle();
    let backend = MeshTls::new(workload_cert(&old_ca, "backend"), bundle.clone()).unwrap();
    let server_config = backend.server_config();

    // Clients trust both roots; a client of the new root is refused until the
    // server's bundle has it.
    let client_bundle = TrustBundle::from_pem(TD, &old_ca.trust_bundle_pem()).unwrap();
    client_bundle
        .add_root_pem(&new_ca.trust_bundle_pem())
        .unwrap();
    let on_new = MeshTls::new(workload_cert(&new_ca, "frontend"), client_bundle.clone()).unwrap();
    let on_old = MeshTls::new(workload_cert(&old_ca, "frontend"), client_bundle).unwrap();

    let hs = handshake(
        server_config.clone(),
        on_new.client_config(&[id("backend")]),
    )
    .await;
    assert!(hs.server.unwrap_err().to_string().contains("unknown root"));

    assert_eq!(
        old_ca.add_trusted_root(&new_ca.trust_bundle_pem()).unwrap(),
        1
    );
    assert_eq!(bundle.roots().len(), 2);

    for client in [&on_new, &on_old] {
        let hs = handshake(
            server_config.clone(),
            client.client_config(&[id("backend")]),
        )
        .await;
        let (mut c, mut s) = (hs.client.unwrap(), hs.server.unwrap());
        assert_eq!(peer_identity(s.get_ref().1), Some(id("frontend")));
        round_trip(&mut c, &mut s, b"ok").await;
    }

    // The end of the overlap: the old root goes, and its certificates with it.
    assert!(bundle.remove_root(&old_ca.trust_bundle()[0]));
    let hs = handshake(server_config, on_old.client_config(&[id("backend")])).await;
    assert!(hs.server.unwrap_err().to_string().contains("unknown root"));
}

#[tokio::test]
async fn a_workload_without_a_certificate_is_refused_by_mesh_servers() {
    let (_dir, ca) = self_signed_ca();
    let backend = MeshTls::new(workload_cert(&ca, "backend"), ca.bundle()).unwrap();
    let anonymous = MeshTls::without_cert(ca.bundle()).unwrap();
    let hs = handshake(
        backend.server_config(),
        anonymous.client_config(&[id("backend")]),
    )
    .await;
    let err = hs.server.unwrap_err().to_string();
    assert!(err.contains("peer sent no certificates"), "{err}");
}
