//! The HTTP front: accept loop, URL routing, query parsing, verb dispatch,
//! fault injection, request recording and response encoding.
//!
//! Routing follows the API server's URL layout:
//! `/api/v1[/namespaces/<ns>]/<plural>[/<name>[/<subresource>]]` and the
//! same under `/apis/<group>/<version>`. kube-rs starts query strings with
//! `?&` and sends the metadata-only variants via the `Accept` header
//! (`as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`), both handled here.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use crate::body::RespBody;
use crate::error::ApiError;
use crate::faults::RequestInfo;
use crate::meta;
use crate::patch::PatchType;
use crate::record::{RequestRecord, Verb};
use crate::registry::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{ListQuery, WatchFilter};
use crate::watch::{self, WatchRequest};
use crate::{admin, discovery, Shared};

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
    pub body: Vec<u8>,
}

impl Ctx {
    fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.q(key), Some("true" | "1"))
    }

    fn metadata_only(&self) -> bool {
        self.accept.contains("as=PartialObjectMetadata")
    }

    fn json_body(&self) -> Result<Value, ApiError> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })
    }

    /// The field manager of a non-apply write: `fieldManager`, else the
    /// User-Agent up to its first `/`, as the API server derives it.
    fn manager(&self) -> String {
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
    let (accept, content_type, user_agent) = (header(ACCEPT), header(CONTENT_TYPE), header(USER_AGENT));
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => return error_response(&ApiError::new(413, "request body too large or unreadable")),
    };
    let ctx = Ctx {
        method,
        query: parse_query(&raw_query),
        path,
        raw_query,
        accept,
        content_type,
        user_agent,
        body,
    };
    if ctx.path == "/__fake" || ctx.path.starts_with("/__fake/") {
        return admin::handle(&shared, &ctx);
    }
    api(shared, ctx).await
}

/// Where a request goes.
enum Target {
    Discovery(Value),
    Resource {
        rt: Arc<ResourceType>,
        namespace: Option<String>,
        name: Option<String>,
        sub: Option<String>,
    },
}

enum Reply {
    Json(u16, Vec<u8>),
    Stream(tokio::sync::mpsc::Receiver<hyper::body::Bytes>),
}

async fn api(shared: Arc<Shared>, ctx: Ctx) -> Response<RespBody> {
    let routed = route(&shared, &ctx);
    let (verb, target) = match routed {
        Ok(vt) => vt,
        Err(e) => {
            let resp = error_bytes(&e);
            record(&shared, &ctx, fallback_verb(&ctx.method), None, &e, resp.len(), false);
            tracing::info!(method = %ctx.method, path = %ctx.path, code = e.code, "request refused");
            return json_response(e.code, resp, e.retry_after);
        }
    };
    let (rt, namespace, name, sub) = match &target {
        Target::Discovery(_) => (None, None, None, None),
        Target::Resource { rt, namespace, name, sub } => {
            (Some(rt.clone()), namespace.clone(), name.clone(), sub.clone())
        }
    };
    let info = RequestInfo {
        verb,
        rt: rt.as_deref(),
        namespace: namespace.as_deref(),
        name: name.as_deref(),
        subresource: sub.as_deref(),
    };
    let (delay, injected) = shared.faults().take(&info);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let meta_only = ctx.metadata_only();
    let entry = Entry {
        verb,
        rt: rt.as_deref(),
        namespace: namespace.as_deref(),
        name: name.as_deref(),
        sub: sub.as_deref(),
        metadata_only: meta_only,
    };
    if let Some(e) = injected {
        let bytes = error_bytes(&e);
        entry.record(&shared, &ctx, e.code, bytes.len(), true);
        tracing::info!(?verb, path = %ctx.path, code = e.code, "injected fault");
        return json_response(e.code, bytes, e.retry_after);
    }
    let result = match target {
        Target::Discovery(doc) => Ok(Reply::Json(200, to_bytes(&doc))),
        Target::Resource { rt, namespace, name, sub } => exec(
            &shared,
            &ctx,
            verb,
            &rt,
            namespace.as_deref().unwrap_or(""),
            namespace.is_some(),
            name.as_deref().unwrap_or(""),
            sub.as_deref(),
        ),
    };
    match result {
        Ok(Reply::Json(code, bytes)) => {
            entry.record(&shared, &ctx, code, bytes.len(), false);
            tracing::info!(?verb, path = %ctx.path, code, "request");
            json_response(code, bytes, None)
        }
        Ok(Reply::Stream(rx)) => {
            entry.record(&shared, &ctx, 200, 0, false);
            tracing::info!(?verb, path = %ctx.path, query = %ctx.raw_query, "watch started");
            let mut resp = Response::new(RespBody::Stream(rx));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(e) => {
            let bytes = error_bytes(&e);
            entry.record(&shared, &ctx, e.code, bytes.len(), false);
            tracing::info!(?verb, path = %ctx.path, code = e.code, reason = %e.reason, "request failed");
            json_response(e.code, bytes, e.retry_after)
        }
    }
}

struct Entry<'a> {
    verb: Verb,
    rt: Option<&'a ResourceType>,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    sub: Option<&'a str>,
    metadata_only: bool,
}

impl Entry<'_> {
    fn record(&self, shared: &Shared, ctx: &Ctx, status: u16, bytes: usize, injected: bool) {
        shared.recorder().record(RequestRecord {
            seq: 0,
            verb: self.verb,
            method: ctx.method.to_string(),
            path: ctx.path.clone(),
            query: ctx.raw_query.clone(),
            resource: self.rt.map(ResourceType::id),
            subresource: self.sub.map(str::to_string),
            namespace: self.namespace.map(str::to_string),
            name: self.name.map(str::to_string),
            field_manager: ctx.q("fieldManager").map(str::to_string),
            metadata_only: self.metadata_only,
            status,
            injected,
            bytes: bytes as u64,
        });
    }
}

fn record(shared: &Shared, ctx: &Ctx, verb: Verb, rt: Option<&ResourceType>, e: &ApiError, bytes: usize, injected: bool) {
    Entry {
        verb,
        rt,
        namespace: None,
        name: None,
        sub: None,
        metadata_only: ctx.metadata_only(),
    }
    .record(shared, ctx, e.code, bytes, injected);
}

fn fallback_verb(m: &Method) -> Verb {
    match *m {
        Method::POST => Verb::Create,
        Method::PUT => Verb::Update,
        Method::PATCH => Verb::Patch,
        Method::DELETE => Verb::Delete,
        _ => Verb::Get,
    }
}

/// Maps a request to its verb and target.
fn route(shared: &Shared, ctx: &Ctx) -> Result<(Verb, Target), ApiError> {
    let segs: Vec<&str> = ctx.path.split('/').filter(|s| !s.is_empty()).collect();
    let store = shared.store();
    let reg = store.registry();
    let discovery = |doc: Option<Value>| -> Result<(Verb, Target), ApiError> {
        if ctx.method != Method::GET {
            return Err(ApiError::new(405, "the server does not allow this method on the requested resource"));
        }
        doc.map(|d| (Verb::Discovery, Target::Discovery(d)))
            .ok_or_else(ApiError::no_route)
    };
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return discovery(Some(discovery::version())),
        ["api"] => return discovery(Some(discovery::core_versions(shared.addr))),
        ["apis"] => return discovery(Some(discovery::groups(reg))),
        ["api", v] => return discovery(discovery::resources(reg, "", v)),
        ["apis", g] => return discovery(discovery::group(reg, g)),
        ["apis", g, v] => return discovery(discovery::resources(reg, g, v)),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::no_route()),
    };
    let (rt, namespace, name, sub) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if tail.len() <= 2
                && reg.by_path(group, version, plural).is_some_and(|t| t.namespaced) =>
        {
            let rt = reg.by_path(group, version, plural).ok_or_else(ApiError::no_route)?;
            (rt, Some(ns.to_string()), tail.first(), tail.get(1))
        }
        [plural, tail @ ..] if tail.len() <= 2 => {
            let rt = reg.by_path(group, version, plural).ok_or_else(ApiError::no_route)?;
            if rt.namespaced && !tail.is_empty() {
                return Err(ApiError::no_route());
            }
            (rt, None, tail.first(), tail.get(1))
        }
        _ => return Err(ApiError::no_route()),
    };
    let name = name.map(|s| s.to_string());
    let sub = sub.map(|s| s.to_string());
    match sub.as_deref() {
        None => {}
        Some("status") if rt.status_subresource => {}
        Some("eviction") if rt.group.is_empty() && rt.plural == "pods" && ctx.method == Method::POST => {}
        Some(_) => return Err(ApiError::no_route()),
    }
    let verb = match (&ctx.method, name.is_some()) {
        (&Method::GET, false) if ctx.flag("watch") => Verb::Watch,
        (&Method::GET, false) => Verb::List,
        (&Method::GET, true) => Verb::Get,
        (&Method::POST, false) => Verb::Create,
        (&Method::POST, true) if sub.as_deref() == Some("eviction") => Verb::Create,
        (&Method::PUT, true) => Verb::Update,
        (&Method::PATCH, true) => {
            if PatchType::from_content_type(&ctx.content_type) == Some(PatchType::Apply) {
                Verb::Apply
            } else {
                Verb::Patch
            }
        }
        (&Method::DELETE, true) => Verb::Delete,
        (&Method::DELETE, false) => Verb::DeleteCollection,
        _ => {
            return Err(ApiError::new(405, "the server does not allow this method on the requested resource"))
        }
    };
    if ctx.query.contains_key("dryRun") && verb.is_write() {
        return Err(ApiError::bad_request("dryRun is not supported by the fake API server"));
    }
    Ok((verb, Target::Resource { rt, namespace, name, sub }))
}

/// Runs a resource request against the store.
#[allow(clippy::too_many_arguments)]
fn exec(
    shared: &Arc<Shared>,
    ctx: &Ctx,
    verb: Verb,
    rt: &Arc<ResourceType>,
    ns: &str,
    has_ns: bool,
    name: &str,
    sub: Option<&str>,
) -> Result<Reply, ApiError> {
    let meta_only = ctx.metadata_only();
    let status_sub = sub == Some("status");
    let one = |code: u16, obj: &Value| {
        if meta_only {
            Reply::Json(code, to_bytes(&meta::partial(obj)))
        } else {
            Reply::Json(code, to_bytes(obj))
        }
    };
    match verb {
        Verb::Get => {
            let obj = shared
                .store()
                .get(rt, ns, name)
                .ok_or_else(|| ApiError::not_found(&rt.plural, &rt.group, name))?;
            Ok(one(200, &obj))
        }
        Verb::List => {
            let q = list_query(ctx, rt, has_ns.then_some(ns))?;
            let page = shared.store().list(rt, &q)?;
            Ok(Reply::Json(200, list_bytes(rt, &page, meta_only)))
        }
        Verb::Watch => {
            let req = watch_request(ctx, rt, has_ns.then_some(ns))?;
            Ok(Reply::Stream(watch::spawn(shared.clone(), req)))
        }
        Verb::Create if sub == Some("eviction") => {
            shared.store().evict(ns, name)?;
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
            Ok(Reply::Json(201, to_bytes(&status)))
        }
        Verb::Create => {
            let body = ctx.json_body()?;
            let obj = shared.store().create(rt, ns, body, &ctx.manager())?;
            Ok(one(201, &obj))
        }
        Verb::Update => {
            let body = ctx.json_body()?;
            let obj = shared
                .store()
                .update(rt, ns, name, body, &ctx.manager(), status_sub)?;
            Ok(one(200, &obj))
        }
        Verb::Patch | Verb::Apply => {
            let ptype = PatchType::from_content_type(&ctx.content_type).ok_or_else(|| {
                ApiError::new(415, format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {:?})", ctx.content_type))
            })?;
            let body = ctx.json_body()?;
            let manager = if ptype == PatchType::Apply {
                ctx.q("fieldManager").unwrap_or("").to_string()
            } else {
                ctx.manager()
            };
            let mut store = shared.store();
            let existed = store.get(rt, ns, name).is_some();
            let obj = store.patch(rt, ns, name, ptype, &body, &manager, ctx.flag("force"), status_sub)?;
            Ok(one(if existed { 200 } else { 201 }, &obj))
        }
        Verb::Delete => {
            let body = ctx.json_body()?;
            let preconditions = body.get("preconditions").cloned().unwrap_or(Value::Null);
            let obj = shared.store().delete(rt, ns, name, &preconditions)?;
            Ok(one(200, &obj))
        }
        Verb::DeleteCollection => {
            let q = list_query(ctx, rt, has_ns.then_some(ns))?;
            let mut store = shared.store();
            let page = store.list(rt, &ListQuery { limit: None, continue_token: None, ..q })?;
            let mut deleted = Vec::new();
            for item in &page.items {
                let item_ns = meta::namespace(item).unwrap_or("").to_string();
                let item_name = meta::name(item).unwrap_or("").to_string();
                if let Ok(gone) = store.delete(rt, &item_ns, &item_name, &Value::Null) {
                    deleted.push(gone);
                }
            }
            let page = crate::store::ListPage {
                items: deleted,
                resource_version: store.resource_version(),
                continue_token: None,
                remaining: None,
            };
            Ok(Reply::Json(200, list_bytes(rt, &page, meta_only)))
        }
        Verb::Discovery => Err(ApiError::no_route()),
    }
}

fn selectors(ctx: &Ctx, rt: &ResourceType) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(ctx.q("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(ctx.q("fieldSelector").unwrap_or(""), rt)?;
    Ok((labels, fields))
}

fn list_query(ctx: &Ctx, rt: &ResourceType, ns: Option<&str>) -> Result<ListQuery, ApiError> {
    let (labels, fields) = selectors(ctx, rt)?;
    let limit = match ctx.q("limit").filter(|s| !s.is_empty()) {
        Some(s) => Some(
            s.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {s:?}")))?,
        ),
        None => None,
    };
    Ok(ListQuery {
        namespace: ns.map(str::to_string),
        labels,
        fields,
        limit,
        continue_token: ctx.q("continue").map(str::to_string),
        resource_version: ctx.q("resourceVersion").map(str::to_string),
        resource_version_match: ctx.q("resourceVersionMatch").map(str::to_string),
    })
}

fn watch_request(ctx: &Ctx, rt: &Arc<ResourceType>, ns: Option<&str>) -> Result<WatchRequest, ApiError> {
    let (labels, fields) = selectors(ctx, rt)?;
    let initial_events = ctx.flag("sendInitialEvents");
    let start = match ctx.q("resourceVersion").filter(|s| !s.is_empty() && *s != "0") {
        _ if initial_events => None,
        None => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))?,
        ),
    };
    let timeout = match ctx.q("timeoutSeconds").filter(|s| !s.is_empty()) {
        Some(s) => Some(std::time::Duration::from_secs(s.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid timeoutSeconds {s:?}"))
        })?)),
        None => None,
    };
    Ok(WatchRequest {
        filter: WatchFilter {
            rt: rt.clone(),
            namespace: ns.map(str::to_string),
            labels,
            fields,
        },
        start,
        bookmarks: ctx.flag("allowWatchBookmarks"),
        timeout,
        metadata_only: ctx.metadata_only(),
        initial_events_end: initial_events,
    })
}

/// Encodes a list without cloning its items.
fn list_bytes(rt: &ResourceType, page: &crate::store::ListPage, meta_only: bool) -> Vec<u8> {
    let (kind, api_version) = if meta_only {
        ("PartialObjectMetadataList".to_string(), "meta.k8s.io/v1".to_string())
    } else {
        (format!("{}List", rt.kind), rt.api_version())
    };
    let mut md = json!({"resourceVersion": page.resource_version.to_string()});
    if let Some(c) = &page.continue_token {
        md["continue"] = json!(c);
    }
    if let Some(n) = page.remaining {
        md["remainingItemCount"] = json!(n);
    }
    let mut out = Vec::with_capacity(256 + page.items.len() * 512);
    let head = json!({"kind": kind, "apiVersion": api_version, "metadata": md});
    let head = to_bytes(&head);
    // `head` is `{...}`: reopen it to append the items.
    out.extend_from_slice(&head[..head.len().saturating_sub(1)]);
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let written = if meta_only {
            serde_json::to_writer(&mut out, &meta::partial(item))
        } else {
            serde_json::to_writer(&mut out, &**item)
        };
        if written.is_err() {
            out.extend_from_slice(b"null");
        }
    }
    out.extend_from_slice(b"]}");
    out
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec())
}

fn error_bytes(e: &ApiError) -> Vec<u8> {
    to_bytes(&e.to_status())
}

/// A JSON response.
pub fn json_response(code: u16, body: Vec<u8>, retry_after: Option<u64>) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::full(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(secs) = retry_after {
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
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
        assert_eq!(q.get("labelSelector").map(String::as_str), Some("a=b,c in (x)"));
        assert_eq!(q.get("x").map(String::as_str), Some("%zz"));
        assert_eq!(q.get("y").map(String::as_str), Some("%4"));
    }
}
