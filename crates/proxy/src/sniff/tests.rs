use super::*;
use proptest::prelude::*;

#[test]
fn classifies() {
    assert_eq!(detect(b"GET / HTTP/1.1\r\n"), Detected::Http1);
    assert_eq!(detect(b"POST /x HTTP/1.1"), Detected::Http1);
    assert_eq!(detect(b"PUT "), Detected::Http1);
    assert_eq!(detect(b"OPTIONS * HTTP/1.1"), Detected::Http1);
    assert_eq!(detect(H2_PREFACE), Detected::Http2);
    assert_eq!(detect(b"PRI * HTTP/2"), Detected::NeedMore);
    assert_eq!(detect(b"GE"), Detected::NeedMore);
    assert_eq!(detect(b"P"), Detected::NeedMore);
    assert_eq!(detect(b"GETX"), Detected::Tcp);
    assert_eq!(detect(b"\x16\x03\x01"), Detected::Tcp);
    assert_eq!(detect(b"hello"), Detected::Tcp);
    assert_eq!(detect(b""), Detected::NeedMore);
    assert_eq!(detect(b"get / HTTP/1.1"), Detected::Tcp);
}

#[tokio::test]
async fn read_keeps_the_bytes() {
    let mut r = &b"SSH-2.0-OpenSSH\r\n"[..];
    let (d, b) = read(&mut r).await.unwrap();
    assert_eq!(d, Detected::Tcp);
    assert_eq!(&b[..], b"SSH-2.0-OpenSSH\r\n");
    let mut r = &b"GE"[..];
    assert_eq!(read(&mut r).await.unwrap().0, Detected::Tcp);
}

proptest! {
    #[test]
    fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        let _ = detect(&bytes);
    }

    #[test]
    fn decided_stays_decided(bytes in proptest::collection::vec(any::<u8>(), 0..40), more in proptest::collection::vec(any::<u8>(), 0..8)) {
        let first = detect(&bytes);
        if first != Detected::NeedMore {
            let mut longer = bytes.clone();
            longer.extend_from_slice(&more);
            prop_assert_eq!(detect(&longer), first);
        }
    }
}
