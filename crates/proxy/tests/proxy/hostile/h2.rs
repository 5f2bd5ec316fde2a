//! HTTP/2 rapid reset (CVE-2023-44487), with frames written by hand so that the test
//! controls how they fall into writes: each RST_STREAM in the same write as its HEADERS,
//! and each in a write of its own right after.

use std::sync::atomic::Ordering;

use super::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM_END_HEADERS: u8 = 0x5;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// `GET http://backend/delay/200` in HPACK: indexed `:method GET`, `:scheme http`,
/// then `:path` and `:authority` as literals without indexing (static-table names).
fn request_block() -> Vec<u8> {
    let mut b = vec![0x82, 0x86];
    for (name_index, value) in [(4u8, "/delay/200"), (1u8, "backend")] {
        b.push(name_index); // literal without indexing, indexed name (4-bit prefix)
        b.push(value.len() as u8);
        b.extend_from_slice(value.as_bytes());
    }
    b
}

/// Opens and resets streams until the proxy closes the connection or `max` streams
/// were opened; returns how many were opened and whether a GOAWAY came. Without
/// `same_write`, each RST_STREAM goes once the request reached the app (`hits`): the
/// proxy has accepted the stream, so h2's own count of streams reset before accept
/// does not see it.
async fn rapid_reset(
    proxy: SocketAddr,
    same_write: bool,
    max: u32,
    hits: &std::sync::atomic::AtomicUsize,
) -> (u32, bool) {
    let s = TcpStream::connect(proxy).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let mut start = PREFACE.to_vec();
    start.extend(frame(SETTINGS, 0, 0, &[]));
    w.write_all(&start).await.unwrap();
    // Read frames as they come: the server's SETTINGS, acks, and (we expect) GOAWAY.
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            // Walk whole frames.
            let mut at = 0;
            while buf.len() >= at + 9 {
                let len = (usize::from(buf[at]) << 16)
                    | (usize::from(buf[at + 1]) << 8)
                    | usize::from(buf[at + 2]);
                if buf.len() < at + 9 + len {
                    break;
                }
                if buf[at + 3] == GOAWAY {
                    return true;
                }
                at += 9 + len;
            }
            buf.drain(..at);
        }
    });
    let block = request_block();
    let cancel = 8u32.to_be_bytes();
    let mut opened = 0;
    for i in 0..max {
        let id = 2 * i + 1;
        let headers = frame(HEADERS, END_STREAM_END_HEADERS, id, &block);
        let reset = frame(RST_STREAM, 0, id, &cancel);
        let sent = if same_write {
            w.write_all(&[headers, reset].concat()).await
        } else {
            match w.write_all(&headers).await {
                Ok(()) => {
                    let reached = async {
                        while hits.load(Ordering::Relaxed) <= i as usize {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    };
                    // Stops waiting when the proxy refuses the stream.
                    let _ = tokio::time::timeout(Duration::from_millis(500), reached).await;
                    w.write_all(&reset).await
                }
                Err(e) => Err(e),
            }
        };
        if sent.is_err() {
            break;
        }
        opened += 1;
        if reader.is_finished() {
            break;
        }
    }
    let goaway = tokio::time::timeout(PATIENCE, reader)
        .await
        .expect("the proxy neither sent GOAWAY nor closed")
        .unwrap();
    (opened, goaway)
}

async fn check(same_write: bool) {
    let (p, b, _) = proxy_with(Limits::default()).await;
    let (opened, goaway) = rapid_reset(p.outbound(), same_write, 1000, &b.hits).await;
    assert!(goaway, "no GOAWAY after {opened} streams");
    assert!(opened < 1000, "GOAWAY only after {opened} streams");
    let hits = b.hits.load(Ordering::Relaxed);
    // At most the abandoned-request budget (100) plus what was in flight when it ran
    // out reach the app; without the limit every stream does.
    assert!(
        hits <= 250,
        "{hits} of {opened} reset requests reached the app"
    );
    still_serves(&p).await;
    let r = h2_get(p.outbound(), "http://backend/").await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn rapid_reset_in_the_same_write_gets_goaway() {
    check(true).await;
}

#[tokio::test]
async fn rapid_reset_in_separate_writes_gets_goaway() {
    check(false).await;
}
