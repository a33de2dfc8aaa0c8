//! Unit tests of `status_cli`: `--server` against a local server that
//! answers exact bytes, so chunk boundaries and statuses are the test's.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A server for one connection that answers `raw` bytes whatever the
/// request, so a test sets the exact framing (chunk boundaries included).
/// Returns its URL and the request head it read.
async fn answer_once(raw: Vec<u8>) -> (String, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let served = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        stream.write_all(&raw).await.unwrap();
        stream.shutdown().await.unwrap();
        String::from_utf8(head).unwrap()
    });
    (url, served)
}

/// A chunked answer, one chunk per piece.
fn chunked(pieces: &[&[u8]]) -> Vec<u8> {
    let mut raw =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for piece in pieces {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    raw
}

#[tokio::test]
async fn chunked_bodies_are_joined() {
    let (url, served) = answer_once(chunked(&[b"hello", b" world"])).await;
    assert_eq!(http_get(&url, "/v1/status").await.unwrap(), "hello world");
    let head = served.await.unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /v1/status http/1.1\r\n"), "{head}");
    let authority = url.trim_start_matches("http://");
    assert!(head.contains(&format!("host: {authority}\r\n")), "{head}");

    // Bad framing is an error, not a silently empty status.
    let (url, _) =
        answer_once(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n".to_vec()).await;
    assert!(http_get(&url, "/v1/status").await.is_err());
}

/// Multi-byte characters split across chunk boundaries (every byte its own
/// chunk) come back whole: the chunks are bytes, not text.
#[tokio::test]
async fn a_character_split_across_chunks_reads_back_whole() {
    let body = r#"{"name":"café ☃ 🦀"}"#;
    let pieces: Vec<&[u8]> = body.as_bytes().chunks(1).collect();
    let (url, _) = answer_once(chunked(&pieces)).await;
    assert_eq!(http_get(&url, "/v1/status").await.unwrap(), body);
}

#[tokio::test]
async fn anything_but_200_is_an_error_with_the_status_and_the_body() {
    for (raw, status) in [
        (
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 29\r\n\r\nnot ready: caches not synced\n",
            "503 Service Unavailable",
        ),
        (
            "HTTP/1.1 404 Not Found\r\ncontent-length: 10\r\n\r\nnot found\n",
            "404 Not Found",
        ),
        // A reason phrase is not a status code.
        ("HTTP/1.1 500 Not 200 OK\r\ncontent-length: 0\r\n\r\n", "500 Internal Server Error"),
        ("HTTP/1.1 204 No Content\r\n\r\n", "204 No Content"),
    ] {
        let (url, _) = answer_once(raw.as_bytes().to_vec()).await;
        let err = format!("{:#}", http_get(&url, "/v1/status").await.unwrap_err());
        assert!(err.contains(&format!("/v1/status: answered {status}")), "{err}");
        let body = raw.split("\r\n\r\n").nth(1).unwrap().trim();
        assert!(err.ends_with(body), "{err}");
    }
}

#[tokio::test]
async fn an_answer_over_the_bound_is_refused() {
    let body = "x".repeat(100);
    let raw = format!("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{body}");
    let (url, _) = answer_once(raw.clone().into_bytes()).await;
    let err = http_get_bounded(&url, "/v1/status", 99, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("over 99 bytes"), "{err:#}");
    let (url, _) = answer_once(chunked(&[body.as_bytes()])).await;
    let err = http_get_bounded(&url, "/v1/status", 99, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("over 99 bytes"), "{err:#}");
    let (url, _) = answer_once(raw.into_bytes()).await;
    let got = http_get_bounded(&url, "/v1/status", 100, Duration::from_secs(10)).await;
    assert_eq!(got.unwrap(), body);
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let err = http_get_bounded(&url, "/v1/status", 100, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("no answer within"), "{err:#}");
    drop(listener);
}

#[test]
fn server_must_be_an_http_url_without_a_path() {
    assert_eq!(
        authority_of("http://127.0.0.1:8080").unwrap(),
        "127.0.0.1:8080"
    );
    assert_eq!(
        authority_of("http://127.0.0.1:8080/").unwrap(),
        "127.0.0.1:8080"
    );
    assert_eq!(authority_of("http://cert-sync").unwrap(), "cert-sync:80");
    assert_eq!(authority_of("http://[::1]:8080").unwrap(), "[::1]:8080");
    for bad in [
        "https://127.0.0.1:8080",
        "127.0.0.1:8080",
        "http://127.0.0.1:8080/v1",
        "http://127.0.0.1:8080/?a=b",
        "",
    ] {
        let err = authority_of(bad).unwrap_err().to_string();
        assert!(
            err.contains("--server must be an http:// URL"),
            "{bad}: {err}"
        );
    }
}
