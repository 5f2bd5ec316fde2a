use super::*;
use proptest::prelude::*;

#[test]
fn round_trip() {
    let h = TransportHeader { target_port: 8080 };
    let bytes = h.encode();
    assert_eq!(bytes.len(), FIXED_LEN);
    assert_eq!(parse(&bytes).unwrap(), Parsed::Complete(h, FIXED_LEN));
}

#[test]
fn incomplete_prefixes_ask_for_more() {
    let bytes = TransportHeader { target_port: 80 }.encode();
    for n in 0..FIXED_LEN {
        assert_eq!(
            parse(&bytes[..n]).unwrap(),
            Parsed::Incomplete(FIXED_LEN),
            "n={n}"
        );
    }
}

#[test]
fn http_and_tls_are_rejected_at_once() {
    for start in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"PRI * HTTP/2.0",
        &[0x16, 0x03, 0x01],
        b"\xF0",
    ] {
        let res = parse(start);
        if start == b"\xF0" {
            assert_eq!(res.unwrap(), Parsed::Incomplete(FIXED_LEN));
        } else {
            assert!(res.is_err(), "{start:?}");
        }
    }
}

#[test]
fn bad_fields() {
    let mut b = TransportHeader { target_port: 80 }.encode();
    b[4] = 2;
    assert!(parse(&b).unwrap_err().to_string().contains("version 2"));
    let mut b = TransportHeader { target_port: 80 }.encode();
    b[5] = 1;
    assert!(parse(&b).unwrap_err().to_string().contains("flags"));
    let mut b = TransportHeader { target_port: 80 }.encode();
    b[6] = 0;
    b[7] = 0;
    assert!(parse(&b).unwrap_err().to_string().contains("port 0"));
    let mut b = TransportHeader { target_port: 80 }.encode();
    b[8] = 0x10; // 4096 bytes of extensions
    assert!(parse(&b).is_err());
}

#[test]
fn extensions_are_skipped() {
    let mut b = TransportHeader { target_port: 9000 }.encode().to_vec();
    b[9] = 5;
    b.extend_from_slice(&[7, 3, 1, 2, 3]);
    b.extend_from_slice(b"GET /");
    assert_eq!(
        parse(&b).unwrap(),
        Parsed::Complete(TransportHeader { target_port: 9000 }, 15)
    );
    // A TLV whose length runs past the area is an error.
    b[11] = 9;
    assert!(parse(&b).is_err());
}

#[tokio::test]
async fn read_returns_the_bytes_after_the_header() {
    let mut wire = TransportHeader { target_port: 7 }.encode().to_vec();
    wire.extend_from_slice(b"hello");
    let mut r = &wire[..];
    let (h, rest) = read(&mut r).await.unwrap();
    assert_eq!(h.target_port, 7);
    assert_eq!(&rest[..], b"hello");
    let mut short = &wire[..6];
    assert!(read(&mut short).await.is_err());
}

proptest! {
    #[test]
    fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn encode_parse(port in 1u16.., tail in proptest::collection::vec(any::<u8>(), 0..16)) {
        let mut b = TransportHeader { target_port: port }.encode().to_vec();
        b.extend_from_slice(&tail);
        prop_assert_eq!(
            parse(&b).unwrap(),
            Parsed::Complete(TransportHeader { target_port: port }, FIXED_LEN)
        );
    }

    #[test]
    fn complete_means_consistent(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        let mut b = MAGIC.to_vec();
        b.push(VERSION);
        b.push(0);
        b.extend_from_slice(&bytes);
        if let Ok(Parsed::Complete(_, used)) = parse(&b) {
            prop_assert!(used <= b.len());
            prop_assert!(used >= FIXED_LEN);
        }
    }
}
