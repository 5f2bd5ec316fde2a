//! What one mesh mTLS handshake between two proxies costs in CPU: a full TLS 1.3
//! handshake in memory (no sockets), both sides in this thread, with the configs the
//! proxies use ([`MeshTls::server_config`] and [`MeshTls::client_config`]: client
//! certificate required, SPIFFE id checked, no session resumption). Once with the mesh
//! default key exchange (X25519MLKEM768, hybrid post-quantum) and once with X25519
//! alone, to show what the post-quantum part adds.
//!
//! The figure is client + server work, as a chained proxy pair pays it for each new
//! connection between them. `cargo bench -p skiff-identity --bench handshake` runs it.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use rustls::crypto::aws_lc_rs::kx_group;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, Connection, NamedGroup, ServerConnection};
use skiff_identity::{Ca, MeshTls, SpiffeId, WorkloadCert, WorkloadKey};

const TD: &str = "cluster.local";

/// Key exchange groups other than the mesh default.
type Groups<'a> = &'a [&'static dyn rustls::crypto::SupportedKxGroup];

fn cert(ca: &Ca, id: &SpiffeId) -> WorkloadCert {
    let key = WorkloadKey::generate().unwrap();
    let csr = key.csr_pem(id).unwrap();
    let chain = ca.sign(csr.as_bytes(), id, None).unwrap();
    WorkloadCert::new(chain, key).unwrap()
}

/// Moves every pending TLS record from one side to the other; returns the bytes moved.
fn transfer(from: &mut Connection, to: &mut Connection) -> usize {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
        to.process_new_packets().expect("the handshake succeeds");
    }
    buf.len()
}

/// One full handshake; returns the key exchange group it agreed on.
fn handshake(
    client: &Arc<rustls::ClientConfig>,
    server: &Arc<rustls::ServerConfig>,
) -> Option<NamedGroup> {
    let name = ServerName::try_from("outbound.skiff.mesh").unwrap();
    let mut c = Connection::Client(ClientConnection::new(client.clone(), name).unwrap());
    let mut s = Connection::Server(ServerConnection::new(server.clone()).unwrap());
    while c.is_handshaking() || s.is_handshaking() {
        let moved = transfer(&mut c, &mut s) + transfer(&mut s, &mut c);
        assert!(moved > 0, "the handshake stalled");
    }
    assert!(c.peer_certificates().is_some() && s.peer_certificates().is_some());
    c.negotiated_key_exchange_group().map(|g| g.name())
}

fn bench(cr: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path().join("ca"), TD).unwrap();
    let client_id = SpiffeId::new(TD, "bench", "bench-client").unwrap();
    let server_id = SpiffeId::new(TD, "bench", "backend").unwrap();
    let mut group = cr.benchmark_group("mesh_mtls_handshake");
    let cases: [(&str, Option<Groups<'_>>, NamedGroup); 2] = [
        ("X25519MLKEM768", None, NamedGroup::X25519MLKEM768),
        ("X25519", Some(&[kx_group::X25519]), NamedGroup::X25519),
    ];
    for (label, groups, expected) in cases {
        let make = |id: &SpiffeId| match groups {
            None => MeshTls::new(cert(&ca, id), ca.bundle()).unwrap(),
            Some(g) => MeshTls::with_key_exchange_groups(cert(&ca, id), ca.bundle(), g).unwrap(),
        };
        let client = make(&client_id).client_config(std::slice::from_ref(&server_id));
        let server = make(&server_id).server_config();
        assert_eq!(handshake(&client, &server), Some(expected), "{label}");
        group.bench_function(label, |b| b.iter(|| black_box(handshake(&client, &server))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
