//! A blocking HTTP/1.1 client on hyper: one request per connection
//! (`Connection: close`), for Envoy's admin API, the report receiver, the
//! controller and the fake API server, and HTTP over the TLS probe.
//!
//! Each call runs on a current-thread tokio runtime of its own, so the
//! tests, poll loops and benchmarks that call it stay plain blocking code.
//! [`read_response`] is the one raw path: tests of wire behaviour that
//! write requests by hand on a socket they keep (see `e2e/tests/harness.rs`).

use anyhow::{anyhow, bail, ensure, Context, Result};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Read and write timeout for the raw connections of [`connect`], and the
/// bound on connecting for every request.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The bound on one whole exchange (request sent, response read): config
/// dumps of thousands of certificates take well under a second locally.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Responses larger than this are refused (config dumps of thousands of
/// certificates stay far below it).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// A response head longer than this is refused by [`read_response`].
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Header lines [`read_response`] accepts.
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased, in the order received (repeated names
    /// together).
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
    send(addr, "GET", path, &[], &[])
}

/// `POST http://addr/path` with `headers` and `body`.
pub fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    send(addr, "POST", path, headers, body)
}

/// `<method> http://addr/path` with `headers` and `body`; any status is
/// returned as is.
pub fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    block_on(async {
        let stream = open(addr).await?;
        exchange(stream, method, &addr.to_string(), path, headers, body).await
    })?
}

/// A TCP connection to `addr` for [`exchange`], within [`IO_TIMEOUT`].
pub async fn open(addr: SocketAddr) -> Result<tokio::net::TcpStream> {
    let stream = tokio::time::timeout(IO_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("connecting to {addr}: no answer within {IO_TIMEOUT:?}"))?
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Runs `future` on a current-thread runtime of its own. Called from inside
/// another runtime (an async test), where blocking on a second one would
/// panic, it runs on a thread of its own: the caller blocks, as it asked to.
pub fn block_on<F>(future: F) -> Result<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let run = || -> Result<F::Output> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a tokio runtime")?;
        Ok(runtime.block_on(future))
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return run();
    }
    std::thread::scope(|scope| scope.spawn(run).join())
        .map_err(|_| anyhow!("the HTTP client thread panicked"))?
}

/// Sends one request over `io` (plain TCP or TLS) and reads the response,
/// within [`EXCHANGE_TIMEOUT`].
pub async fn exchange<T>(
    io: T,
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let request = build_request(method, authority, path, headers, body)?;
    tokio::time::timeout(
        EXCHANGE_TIMEOUT,
        exchange_bounded(io, request, MAX_RESPONSE_BYTES),
    )
    .await
    .map_err(|_| anyhow!("no response within {EXCHANGE_TIMEOUT:?}"))
    .and_then(|response| response)
    .with_context(|| format!("{method} {path}"))
}

fn build_request(
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Request<Full<Bytes>>> {
    let method = Method::from_bytes(method.as_bytes())
        .with_context(|| format!("bad HTTP method {method:?}"))?;
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(HOST, authority)
        .header(CONNECTION, "close");
    for (name, value) in headers {
        request = request.header(
            HeaderName::from_bytes(name.as_bytes())
                .with_context(|| format!("bad header name {name:?}"))?,
            HeaderValue::from_str(value)
                .with_context(|| format!("bad value for header {name}: {value:?}"))?,
        );
    }
    // A POST or PUT always says how long its body is, even when empty:
    // some servers answer 411 to one that does not.
    if !body.is_empty() || method == Method::POST || method == Method::PUT {
        request = request.header(CONTENT_LENGTH, body.len());
    }
    request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .with_context(|| format!("building {method} {path}"))
}

/// The exchange on a fresh connection; the body is read up to `max_bytes`.
async fn exchange_bounded<T>(
    io: T,
    request: Request<Full<Bytes>>,
    max_bytes: usize,
) -> Result<HttpResponse>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .context("starting HTTP/1.1")?;
    let answer = async move {
        let response = sender.send_request(request).await?;
        // Without a sender the connection ends once the body is read.
        drop(sender);
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, max_bytes).collect().await;
        Ok::<_, hyper::Error>((parts, body))
    };
    // The connection is driven alongside; its own error, if any, is also
    // the exchange's.
    let (answer, _) = tokio::join!(answer, connection);
    let (parts, body) = answer.context("reading the response")?;
    let body = body.map_err(|e| {
        if e.is::<LengthLimitError>() {
            anyhow!("response body over {max_bytes} bytes")
        } else {
            anyhow::Error::from_boxed(e).context("reading the response body")
        }
    })?;
    Ok(HttpResponse {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes());
                (name.as_str().to_owned(), value.trim().to_owned())
            })
            .collect(),
        body: body.to_bytes().to_vec(),
    })
}

/// Opens a TCP connection with [`IO_TIMEOUT`] for connecting, reading and
/// writing, for the raw paths (the TLS probe, hand-written requests).
pub fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads one response from a connection the caller keeps, reading nothing
/// past it (the head byte by byte, then exactly Content-Length bytes), so
/// the caller can go on watching the socket. Bodies framed otherwise
/// (chunked, or by the end of the connection) are refused: [`send`] reads
/// those.
pub fn read_response<S: Read>(stream: &mut S) -> Result<HttpResponse> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        ensure!(
            head.len() < MAX_HEAD_BYTES,
            "response head over {MAX_HEAD_BYTES} bytes"
        );
        stream
            .read_exact(&mut byte)
            .context("reading the response head")?;
        head.push(byte[0]);
    }
    let mut parsed_headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut parsed_headers);
    ensure!(
        parsed
            .parse(&head)
            .context("parsing the response head")?
            .is_complete(),
        "incomplete response head"
    );
    let mut response = HttpResponse {
        status: parsed.code.context("response without a status")?,
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value);
                (h.name.to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect(),
        body: Vec::new(),
    };
    if matches!(response.status, 100..=199 | 204 | 304) {
        return Ok(response);
    }
    if response.header("transfer-encoding").is_some() {
        bail!("a response with Transfer-Encoding: read it with http1::send");
    }
    let length = response
        .header("content-length")
        .context("a response without Content-Length: read it with http1::send")?;
    let length: usize = length
        .parse()
        .with_context(|| format!("bad content-length {length:?}"))?;
    ensure!(
        length <= MAX_RESPONSE_BYTES,
        "response body of {length} bytes is over the limit"
    );
    response.body = vec![0; length];
    stream
        .read_exact(&mut response.body)
        .with_context(|| format!("reading a body of {length} bytes"))?;
    Ok(response)
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

#[cfg(test)]
#[path = "http1_tests.rs"]
mod tests;
