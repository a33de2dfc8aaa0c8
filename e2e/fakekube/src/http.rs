//! The HTTP front: accept loop, connection handling, request reading,
//! query parsing and response encoding. API semantics live in `api.rs`,
//! the `/__fake` endpoints in `admin.rs`.
//!
//! kube-rs starts query strings with `?&` and asks for metadata-only
//! objects through the `Accept` header
//! (`as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`); both are handled
//! here.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

use crate::body::RespBody;
use crate::error::ApiError;
use crate::{admin, api, Shared};

/// Largest request body accepted.
const MAX_BODY: usize = 32 << 20;

/// Accepts connections until shutdown.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    if *shutdown.borrow_and_update() {
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_conn(stream, shared.clone()));
            }
        }
    }
}

async fn serve_conn(stream: TcpStream, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let svc_shared = shared.clone();
    let svc = service_fn(move |req| {
        let s = svc_shared.clone();
        async move { Ok::<_, Infallible>(handle(s, req).await) }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    if *shutdown.borrow_and_update() {
        conn.as_mut().graceful_shutdown();
    }
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A request, read in full (bodies are small JSON documents).
pub struct Ctx {
    pub method: Method,
    pub path: String,
    pub raw_query: String,
    pub query: HashMap<String, String>,
    pub accept: String,
    pub content_type: String,
    pub user_agent: String,
    /// The `Authorization` header: the fake authenticates no one, but a
    /// TokenReview needs a caller, as on a real API server.
    pub authorization: String,
    pub body: Vec<u8>,
}

impl Ctx {
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.q(key), Some("true" | "1"))
    }

    pub fn metadata_only(&self) -> bool {
        self.accept.contains("as=PartialObjectMetadata")
    }

    pub fn json_body(&self) -> Result<Value, ApiError> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
    }

    /// The field manager of a non-apply write: `fieldManager`, else the
    /// User-Agent up to its first `/`, as the API server derives it.
    pub fn manager(&self) -> String {
        match self.q("fieldManager").filter(|m| !m.is_empty()) {
            Some(m) => m.to_string(),
            None => {
                let prefix = self.user_agent.split('/').next().unwrap_or("").trim();
                if prefix.is_empty() {
                    "unknown".to_string()
                } else {
                    prefix.to_string()
                }
            }
        }
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<RespBody> {
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (accept, content_type, user_agent, authorization) = (
        header(ACCEPT),
        header(CONTENT_TYPE),
        header(USER_AGENT),
        header(AUTHORIZATION),
    );
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => {
            return error_response(&ApiError::new(413, "request body too large or unreadable"))
        }
    };
    let ctx = Ctx {
        method,
        query: parse_query(&raw_query),
        path,
        raw_query,
        accept,
        content_type,
        user_agent,
        authorization,
        body,
    };
    if ctx.path == "/__fake" || ctx.path.starts_with("/__fake/") {
        return admin::handle(&shared, &ctx);
    }
    api::api(shared, ctx).await
}

pub fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec())
}

pub fn error_bytes(e: &ApiError) -> Vec<u8> {
    to_bytes(&e.to_status())
}

/// A JSON response.
pub fn json_response(code: u16, body: Vec<u8>, retry_after: Option<u64>) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::full(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// A `Status` error response.
pub fn error_response(e: &ApiError) -> Response<RespBody> {
    json_response(e.code, error_bytes(e), e.retry_after)
}

/// Parses a query string (tolerating kube-rs' leading `&`).
pub fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = parse_query("&watch=true&labelSelector=a%3Db%2Cc+in+%28x%29&x=%zz&y=%4");
        assert_eq!(q.get("watch").map(String::as_str), Some("true"));
        assert_eq!(
            q.get("labelSelector").map(String::as_str),
            Some("a=b,c in (x)")
        );
        assert_eq!(q.get("x").map(String::as_str), Some("%zz"));
        assert_eq!(q.get("y").map(String::as_str), Some("%4"));
    }
}
