//! API request handling: URL routing, verb dispatch, fault injection,
//! request recording, and encoding of objects, lists and watch streams.
//!
//! Routing follows the API server's URL layout:
//! `/api/v1[/namespaces/<ns>]/<plural>[/<name>[/<subresource>]]` and the
//! same under `/apis/<group>/<version>`, plus the discovery documents and
//! the create-only `tokenreviews` (see `tokenreview.rs`).

use std::sync::Arc;

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Response};
use serde_json::{json, Value};

use crate::body::RespBody;
use crate::error::ApiError;
use crate::faults::RequestInfo;
use crate::http::{error_bytes, json_response, to_bytes, Ctx};
use crate::meta;
use crate::patch::PatchType;
use crate::record::{RequestRecord, Verb};
use crate::registry::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{ListPage, ListQuery, WatchFilter};
use crate::watch::{self, WatchRequest};
use crate::{discovery, tokenreview, Shared};

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

pub async fn api(shared: Arc<Shared>, ctx: Ctx) -> Response<RespBody> {
    let routed = route(&shared, &ctx);
    let (verb, target) = match routed {
        Ok(vt) => vt,
        Err(e) => {
            let resp = error_bytes(&e);
            record(
                &shared,
                &ctx,
                fallback_verb(&ctx.method),
                None,
                &e,
                resp.len(),
                false,
            );
            tracing::info!(method = %ctx.method, path = %ctx.path, code = e.code, "request refused");
            return json_response(e.code, resp, e.retry_after);
        }
    };
    let (rt, namespace, name, sub) = match &target {
        Target::Discovery(_) => (None, None, None, None),
        Target::Resource {
            rt,
            namespace,
            name,
            sub,
        } => (
            Some(rt.clone()),
            namespace.clone(),
            name.clone(),
            sub.clone(),
        ),
    };
    let info = RequestInfo {
        verb,
        rt: rt.as_deref(),
        namespace: namespace.as_deref(),
        name: name.as_deref(),
        subresource: sub.as_deref(),
    };
    let effects = shared.faults().take(&info);
    if !effects.delay.is_zero() {
        tokio::time::sleep(effects.delay).await;
    }
    for object in effects.writes {
        if let Err(e) = shared.store().put_raw(object) {
            tracing::warn!(error = %e, "injected write refused");
        }
    }
    let injected = effects.error;
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
        Target::Resource {
            rt,
            namespace,
            name,
            sub,
        } => exec(
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
            request_bytes: ctx.body.len() as u64,
        });
    }
}

fn record(
    shared: &Shared,
    ctx: &Ctx,
    verb: Verb,
    rt: Option<&ResourceType>,
    e: &ApiError,
    bytes: usize,
    injected: bool,
) {
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
            return Err(ApiError::new(
                405,
                "the server does not allow this method on the requested resource",
            ));
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
    if tokenreview::is_path(group, version, rest) {
        // Create-only and never stored: no names, no reads, no watches.
        return match (rest, &ctx.method) {
            (["tokenreviews"], &Method::POST) => Ok((
                Verb::Create,
                Target::Resource {
                    rt: tokenreview::resource_type(),
                    namespace: None,
                    name: None,
                    sub: None,
                },
            )),
            (["tokenreviews"], _) => Err(ApiError::new(
                405,
                "the server does not allow this method on the requested resource",
            )),
            _ => Err(ApiError::no_route()),
        };
    }
    let (rt, namespace, name, sub) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if tail.len() <= 2
                && reg
                    .by_path(group, version, plural)
                    .is_some_and(|t| t.namespaced) =>
        {
            let rt = reg
                .by_path(group, version, plural)
                .ok_or_else(ApiError::no_route)?;
            (rt, Some(ns.to_string()), tail.first(), tail.get(1))
        }
        [plural, tail @ ..] if tail.len() <= 2 => {
            let rt = reg
                .by_path(group, version, plural)
                .ok_or_else(ApiError::no_route)?;
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
        Some("eviction")
            if rt.group.is_empty() && rt.plural == "pods" && ctx.method == Method::POST => {}
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
            return Err(ApiError::new(
                405,
                "the server does not allow this method on the requested resource",
            ))
        }
    };
    if verb == Verb::Create && rt.namespaced && namespace.is_none() {
        return Err(ApiError::new(
            405,
            "the server does not allow this method on the requested resource",
        ));
    }
    if ctx.query.contains_key("dryRun") && verb.is_write() {
        return Err(ApiError::bad_request(
            "dryRun is not supported by the fake API server",
        ));
    }
    Ok((
        verb,
        Target::Resource {
            rt,
            namespace,
            name,
            sub,
        },
    ))
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
    if tokenreview::is_resource(rt) {
        return tokenreview::create(shared, ctx).map(|(code, bytes)| Reply::Json(code, bytes));
    }
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
            let obj = store.patch(
                rt,
                ns,
                name,
                ptype,
                &body,
                &manager,
                ctx.flag("force"),
                status_sub,
            )?;
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
            let page = store.list(
                rt,
                &ListQuery {
                    limit: None,
                    continue_token: None,
                    ..q
                },
            )?;
            let mut deleted = Vec::new();
            for item in &page.items {
                let item_ns = meta::namespace(item).unwrap_or("").to_string();
                let item_name = meta::name(item).unwrap_or("").to_string();
                if let Ok(gone) = store.delete(rt, &item_ns, &item_name, &Value::Null) {
                    deleted.push(gone);
                }
            }
            let page = ListPage {
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

fn watch_request(
    ctx: &Ctx,
    rt: &Arc<ResourceType>,
    ns: Option<&str>,
) -> Result<WatchRequest, ApiError> {
    let (labels, fields) = selectors(ctx, rt)?;
    let initial_events = ctx.flag("sendInitialEvents");
    let start = match ctx
        .q("resourceVersion")
        .filter(|s| !s.is_empty() && *s != "0")
    {
        _ if initial_events => None,
        None => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))?,
        ),
    };
    let timeout = match ctx.q("timeoutSeconds").filter(|s| !s.is_empty()) {
        Some(s) => Some(std::time::Duration::from_secs(s.parse::<u64>().map_err(
            |_| ApiError::bad_request(format!("invalid timeoutSeconds {s:?}")),
        )?)),
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
fn list_bytes(rt: &ResourceType, page: &ListPage, meta_only: bool) -> Vec<u8> {
    let (kind, api_version) = if meta_only {
        (
            "PartialObjectMetadataList".to_string(),
            "meta.k8s.io/v1".to_string(),
        )
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
