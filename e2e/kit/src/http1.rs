//! A minimal blocking HTTP/1.1 client: one request per connection
//! (`Connection: close`), bodies framed by Content-Length, chunked encoding or
//! end of stream. Enough for Envoy's admin API, the report receiver and HTTP
//! over the TLS probe, without pulling a client stack into every test.

use anyhow::{bail, Context, Result};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Read and write timeout for the helpers that open their own connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses larger than this are refused (config dumps of thousands of
/// certificates stay far below it).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// `GET http://addr/path`.
pub fn get(addr: SocketAddr, path: &str) -> Result<HttpResponse> {
    let stream = connect(addr)?;
    request(stream, "GET", &addr.to_string(), path, &[], &[])
}

/// `POST http://addr/path` with `headers` and `body`.
pub fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    let stream = connect(addr)?;
    request(stream, "POST", &addr.to_string(), path, headers, body)
}

/// Opens a TCP connection with [`IO_TIMEOUT`] for connecting, reading and writing.
pub fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for query values.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sends one request over `stream` (plain TCP or TLS) and reads the response.
pub fn request<S: Read + Write>(
    mut stream: S,
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush())
        .with_context(|| format!("sending {method} {path}"))?;
    read_response(&mut stream, method == "HEAD")
        .with_context(|| format!("reading the response to {method} {path}"))
}

/// Reads one response. `head_only` is set for HEAD requests, which carry no body.
pub fn read_response<S: Read>(stream: &mut S, head_only: bool) -> Result<HttpResponse> {
    let mut reader = Buffered::new(stream);
    let status_line = reader.line()?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1 response: {status_line:?}");
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let line = reader.line()?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("bad header line {line:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let response_header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let body = if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if response_header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        reader.chunked()?
    } else if let Some(length) = response_header("content-length") {
        let length: usize = length
            .parse()
            .with_context(|| format!("bad content-length {length:?}"))?;
        if length > MAX_RESPONSE_BYTES {
            bail!("response body of {length} bytes is over the limit");
        }
        reader.exact(length)?
    } else {
        reader.rest()?
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// A read buffer over a stream that may end without a TLS close_notify: an
/// `UnexpectedEof` from rustls counts as the end of the stream.
struct Buffered<'a, S> {
    stream: &'a mut S,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl<'a, S: Read> Buffered<'a, S> {
    fn new(stream: &'a mut S) -> Self {
        Buffered {
            stream,
            buf: Vec::new(),
            pos: 0,
            eof: false,
        }
    }

    /// Reads more bytes into the buffer; false at end of stream.
    fn fill(&mut self) -> Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.buf.len() - self.pos > MAX_RESPONSE_BYTES {
            bail!("response is over {MAX_RESPONSE_BYTES} bytes");
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                    self.eof = true;
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn line(&mut self) -> Result<String> {
        loop {
            if let Some(i) = self.buf[self.pos..].windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[self.pos..self.pos + i]).into_owned();
                self.pos += i + 2;
                return Ok(line);
            }
            if !self.fill()? {
                bail!("connection closed in the middle of the response head");
            }
        }
    }

    fn exact(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.buf.len() - self.pos < n {
            if !self.fill()? {
                bail!(
                    "connection closed after {} of {n} body bytes",
                    self.buf.len() - self.pos
                );
            }
        }
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Ok(out)
    }

    fn rest(&mut self) -> Result<Vec<u8>> {
        while self.fill()? {}
        let out = self.buf[self.pos..].to_vec();
        self.pos = self.buf.len();
        Ok(out)
    }

    fn chunked(&mut self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let size_line = self.line()?;
            let size_hex = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16)
                .with_context(|| format!("bad chunk size {size_line:?}"))?;
            if size == 0 {
                // Trailers, then the blank line.
                while !self.line()?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_RESPONSE_BYTES {
                bail!("chunked body is over {MAX_RESPONSE_BYTES} bytes");
            }
            body.extend_from_slice(&self.exact(size)?);
            let end = self.line()?;
            if !end.is_empty() {
                bail!("chunk not followed by CRLF");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn percent_encodes_query_values() {
        assert_eq!(percent_encode("^a.b$ c/d"), "%5Ea.b%24%20c%2Fd");
    }

    #[test]
    fn reads_content_length_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloEXTRA";
        let r = read_response(&mut Cursor::new(&raw[..]), false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "hello");
        assert_eq!(r.header("x-a"), Some("b"));
    }

    #[test]
    fn reads_chunked_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let r = read_response(&mut Cursor::new(&raw[..]), false).unwrap();
        assert_eq!(r.text(), "abcde");
    }

    #[test]
    fn reads_to_end_without_framing() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\n\r\nnot ready";
        let r = read_response(&mut Cursor::new(&raw[..]), false).unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.text(), "not ready");
        assert!(!r.is_success());
    }

    #[test]
    fn rejects_truncated_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort";
        assert!(read_response(&mut Cursor::new(&raw[..]), false).is_err());
    }
}
