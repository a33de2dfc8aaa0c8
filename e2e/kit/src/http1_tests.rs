//! Unit tests of `http1`: the client against a local server that answers
//! exact bytes (so framing and chunk boundaries are the test's), and the raw
//! reader on byte strings.

use super::*;
use std::io::{Cursor, Write};
use std::net::TcpListener;
use std::thread::JoinHandle;

/// A server for one connection that reads the request head (and a body of
/// its Content-Length), answers `raw` whatever it was and closes. Returns
/// its address and the request it read.
fn answer_once(raw: &[u8]) -> (SocketAddr, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let raw = raw.to_vec();
    let served = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            request.push(byte[0]);
        }
        let head = String::from_utf8(request.clone())
            .unwrap()
            .to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |n| n.trim().parse().unwrap());
        let mut body = vec![0; length];
        stream.read_exact(&mut body).unwrap();
        request.extend_from_slice(&body);
        stream.write_all(&raw).unwrap();
        String::from_utf8(request).unwrap()
    });
    (addr, served)
}

fn chunked(pieces: &[&[u8]]) -> Vec<u8> {
    let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in pieces {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    raw
}

#[test]
fn percent_encodes_query_values() {
    assert_eq!(percent_encode("^a.b$ c/d"), "%5Ea.b%24%20c%2Fd");
}

#[test]
fn reads_content_length_bodies() {
    let (addr, served) =
        answer_once(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloEXTRA");
    let r = get(addr, "/stats?filter=x").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello");
    assert_eq!(r.header("x-a"), Some("b"));
    assert_eq!(r.header("X-A"), Some("b"));
    assert!(r.headers.contains(&("x-a".into(), "b".into())));
    let request = served.join().unwrap().to_ascii_lowercase();
    assert!(
        request.starts_with("get /stats?filter=x http/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains(&format!("host: {addr}\r\n")), "{request}");
    assert!(request.contains("connection: close\r\n"), "{request}");
}

#[test]
fn posts_headers_and_a_body() {
    let (addr, served) = answer_once(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n");
    let r = post(addr, "/v1/reports", &[("authorization", "Bearer t")], b"{}").unwrap();
    assert_eq!(r.status, 401);
    assert!(!r.is_success());
    let request = served.join().unwrap();
    let lower = request.to_ascii_lowercase();
    assert!(
        lower.starts_with("post /v1/reports http/1.1\r\n"),
        "{request}"
    );
    assert!(lower.contains("authorization: bearer t\r\n"), "{request}");
    assert!(lower.contains("content-length: 2\r\n"), "{request}");
    assert!(request.ends_with("\r\n\r\n{}"), "{request}");

    // An empty POST still says so (Envoy's admin API takes those).
    let (addr, served) = answer_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK");
    assert_eq!(
        send(addr, "POST", "/healthcheck/fail", &[], &[])
            .unwrap()
            .text(),
        "OK"
    );
    let request = served.join().unwrap().to_ascii_lowercase();
    assert!(request.contains("content-length: 0\r\n"), "{request}");
}

#[test]
fn reads_chunked_bodies() {
    let (addr, _) = answer_once(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
    );
    assert_eq!(get(addr, "/").unwrap().text(), "abcde");
}

/// Multi-byte characters split across chunk boundaries (every byte its own
/// chunk) come back whole: the chunks are bytes, not text.
#[test]
fn a_character_split_across_chunks_reads_back_whole() {
    let body = "{\"name\":\"café ☃ 🦀\"}";
    let pieces: Vec<&[u8]> = body.as_bytes().chunks(1).collect();
    let (addr, _) = answer_once(&chunked(&pieces));
    assert_eq!(get(addr, "/").unwrap().body, body.as_bytes());
}

#[test]
fn reads_to_end_without_framing() {
    let (addr, _) = answer_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\nnot ready");
    let r = get(addr, "/readyz").unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "not ready");
    assert!(!r.is_success());
}

#[test]
fn rejects_truncated_bodies() {
    let (addr, _) = answer_once(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort");
    assert!(get(addr, "/").is_err());
    let (addr, _) = answer_once(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab");
    assert!(get(addr, "/").is_err());
}

#[test]
fn rejects_bodies_over_the_bound() {
    let (addr, _) = answer_once(&chunked(&[b"0123456789", b"abcdef"]));
    let err = block_on(async {
        let request = build_request("GET", "x", "/", &[], &[]).unwrap();
        exchange_bounded(open(addr).await.unwrap(), request, 15).await
    })
    .unwrap()
    .unwrap_err();
    assert!(format!("{err:#}").contains("over 15 bytes"), "{err:#}");
}

#[test]
fn a_refused_connection_is_an_error() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = get(addr, "/").unwrap_err();
    assert!(
        format!("{err:#}").contains(&format!("connecting to {addr}")),
        "{err:#}"
    );
}

/// Blocking calls work from async code too (on a thread of their own).
#[test]
fn works_inside_a_runtime() {
    let (addr, _) = answer_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = runtime.block_on(async { get(addr, "/healthz") }).unwrap();
    assert_eq!(r.text(), "ok");
}

#[test]
fn the_raw_reader_stops_at_the_end_of_the_response() {
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloHTTP/1.1 204 No Content\r\n\r\n";
    let mut stream = Cursor::new(&raw[..]);
    let r = read_response(&mut stream).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    assert_eq!(r.header("x-a"), Some("b"));
    // The next response on the connection is still there, whole.
    let next = read_response(&mut stream).unwrap();
    assert_eq!((next.status, next.body.len()), (204, 0));
    assert!(read_response(&mut stream).is_err(), "nothing left");
}

#[test]
fn the_raw_reader_refuses_what_it_cannot_delimit() {
    for raw in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"[..],
        b"HTTP/1.1 503 Service Unavailable\r\n\r\nnot ready",
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
        b"not http\r\n\r\n",
    ] {
        assert!(
            read_response(&mut Cursor::new(raw)).is_err(),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}
