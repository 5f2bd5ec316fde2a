use super::*;
use proptest::prelude::*;
use std::sync::Arc;

/// A real ClientHello, as rustls sends it, for `name` (or none for an IP address).
fn hello(name: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let server = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

#[test]
fn reads_the_server_name_of_a_real_client_hello() {
    let bytes = hello("Api.Example.COM");
    assert_eq!(parse(&bytes), Hello::Sni("api.example.com".into()));
    // Every proper prefix needs more; bytes after the hello change nothing.
    for n in 0..bytes.len() {
        assert_eq!(parse(&bytes[..n]), Hello::NeedMore, "prefix of {n} bytes");
    }
    let mut more = bytes.clone();
    more.extend_from_slice(b"trailing application bytes");
    assert_eq!(parse(&more), Hello::Sni("api.example.com".into()));
}

#[test]
fn an_address_gives_no_server_name() {
    // rustls sends no SNI extension for an IP address.
    assert_eq!(parse(&hello("127.0.0.1")), Hello::NoSni);
}

#[test]
fn a_hello_split_over_two_records_is_reassembled() {
    let bytes = hello("db.example.com");
    let body = &bytes[5..];
    let (a, b) = body.split_at(40);
    let mut split = Vec::new();
    for part in [a, b] {
        split.extend_from_slice(&[0x16, 0x03, 0x01]);
        split.extend_from_slice(&(part.len() as u16).to_be_bytes());
        split.extend_from_slice(part);
    }
    assert_eq!(parse(&split), Hello::Sni("db.example.com".into()));
    assert_eq!(parse(&split[..50]), Hello::NeedMore);
}

#[test]
fn other_protocols_are_not_tls() {
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
    assert_eq!(parse(b"\x16\x01"), Hello::NotTls);
    assert_eq!(parse(b"\x16"), Hello::NeedMore);
    assert_eq!(parse(b""), Hello::NeedMore);
    // A handshake record that holds something other than a ClientHello.
    assert_eq!(
        parse(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00"),
        Hello::NotTls
    );
}

#[tokio::test]
async fn read_returns_the_bytes_it_consumed() {
    let bytes = hello("a.example");
    let (mut w, mut r) = tokio::io::duplex(64);
    let sent = bytes.clone();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for chunk in sent.chunks(7) {
            w.write_all(chunk).await.unwrap();
        }
    });
    let (verdict, seen) = read(&mut r).await.unwrap();
    assert_eq!(verdict, Hello::Sni("a.example".into()));
    assert_eq!(&seen[..], &bytes[..seen.len()]);
    assert!(seen.len() >= bytes.len() - 7);
}

proptest! {
    #[test]
    fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn never_panics_on_mangled_hellos(at in 0usize..400, byte in any::<u8>()) {
        let mut bytes = hello("x.example.org");
        let i = at % bytes.len();
        bytes[i] = byte;
        let _ = parse(&bytes);
    }
}
