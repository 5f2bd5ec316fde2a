//! The access log tells the truth about hostile requests: bytes as they arrived, `DC`
//! for a client gone mid-request, `400 DPE` for broken chunk framing.

use super::*;

#[tokio::test]
async fn a_client_gone_mid_body_is_dc_with_the_bytes_that_arrived() {
    let (p, _, _) = proxy_with(Limits::default()).await;
    let mut s = TcpStream::connect(p.outbound()).await.unwrap();
    // The backend waits before answering, so the request is still open when the client
    // leaves after 10 of the 1000 bytes it announced.
    s.write_all(
        b"POST /delay/2000 HTTP/1.1\r\nHost: backend\r\nContent-Length: 1000\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(s);
    let line = p.log_line("\"POST /delay/2000 ").await;
    assert!(line.contains(" DC "), "{line}");
    assert!(!line.contains(" UC "), "{line}");
    // Bytes received: what arrived, not the declared 1000.
    assert!(!line.contains(" 1000 "), "{line}");
    still_serves(&p).await;
}

#[tokio::test]
async fn bytes_received_are_counted_not_declared() {
    let (p, _, _) = proxy_with(Limits::default()).await;
    let answer = exchange(
        p.outbound(),
        b"POST /x HTTP/1.1\r\nHost: backend\r\nContent-Length: 7\r\nConnection: close\r\n\r\nabcdefg",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
    let line = p.log_line("\"POST /x ").await;
    assert!(line.contains(" 200 - 7 "), "{line}");
}

#[tokio::test]
async fn bad_chunk_framing_is_400_dpe() {
    let (p, _, _) = proxy_with(Limits::default()).await;
    let answer = exchange(
        p.outbound(),
        b"POST /delay/500 HTTP/1.1\r\nHost: backend\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n",
    )
    .await;
    let line = p.log_line("\"POST /delay/500 ").await;
    assert!(line.contains(" 400 DPE "), "{line} / {answer}");
    if !answer.is_empty() {
        assert_eq!(status(&answer), 400, "{answer}");
    }
    still_serves(&p).await;
}
