//! The `/__fake/…` HTTP API: the fault and inspection API of
//! [`FakeApiServer`](crate::FakeApiServer) for a fake running as a separate
//! process (the end-to-end suite drives `fake-apiserver` this way). The
//! endpoints are listed in the crate documentation.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::{Method, Response};
use serde_json::{json, Value};

use crate::body::RespBody;
use crate::error::ApiError;
use crate::faults::Fault;
use crate::http::{error_response, json_response, Ctx};
use crate::registry::ResourceType;
use crate::tokenreview::ServiceAccountToken;
use crate::Shared;

/// Handles one `/__fake/…` request.
pub fn handle(shared: &Arc<Shared>, ctx: &Ctx) -> Response<RespBody> {
    match dispatch(shared, ctx) {
        Ok(v) => json_response(200, serde_json::to_vec(&v).unwrap_or_default(), None),
        Err(e) => error_response(&e),
    }
}

fn body(ctx: &Ctx) -> Result<Value, ApiError> {
    serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn to_value<T: serde::Serialize>(v: T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::new(500, e.to_string()))
}

fn dispatch(shared: &Arc<Shared>, ctx: &Ctx) -> Result<Value, ApiError> {
    let sub = ctx.path.trim_start_matches("/__fake").trim_matches('/');
    let q = |k: &str| ctx.query.get(k).map(String::as_str).unwrap_or("");
    match (&ctx.method, sub) {
        (&Method::GET, "health") => {
            Ok(json!({"ok": true, "resourceVersion": shared.store().resource_version()}))
        }
        (&Method::GET, "requests") => to_value(shared.recorder().requests()),
        (&Method::DELETE, "requests") => {
            shared.recorder().clear();
            Ok(json!({}))
        }
        (&Method::GET, "traffic") => to_value(shared.recorder().traffic()),
        (&Method::GET, "writes") => Ok(json!({
            "writes": shared.write_count(q("resource"), q("namespace"), q("name")),
            "writeRequests": shared.write_requests(q("resource"), q("namespace"), q("name")),
        })),
        (&Method::GET, "evictions") => to_value(shared.store().evictions()),
        (&Method::GET, "watches") => {
            Ok(json!({"open": shared.open_watches.load(Ordering::SeqCst)}))
        }
        (&Method::POST, "faults") => {
            let fault: Fault = serde_json::from_slice(&ctx.body)
                .map_err(|e| ApiError::bad_request(format!("invalid fault: {e}")))?;
            Ok(json!({"id": shared.faults().add(fault)}))
        }
        (&Method::DELETE, "faults") => {
            shared.faults().clear();
            Ok(json!({}))
        }
        (&Method::POST, "drop-watches") => {
            shared.drop_watches();
            Ok(json!({}))
        }
        (&Method::POST, "restart") => {
            shared.restart();
            Ok(json!({"resourceVersion": shared.store().resource_version()}))
        }
        (&Method::POST, "compact") => {
            let rv = match q("resourceVersion") {
                "" => body(ctx)?
                    .get("resourceVersion")
                    .and_then(|v| {
                        v.as_u64()
                            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    })
                    .ok_or_else(|| ApiError::bad_request("resourceVersion is required"))?,
                s => s
                    .parse()
                    .map_err(|_| ApiError::bad_request("resourceVersion must be a number"))?,
            };
            shared.store().compact(rv);
            Ok(json!({"compacted": shared.store().compacted()}))
        }
        (&Method::POST, "objects") => {
            let stored = shared
                .put_many(body(ctx)?)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            Ok(json!({"stored": stored}))
        }
        (&Method::POST, "tokens") => {
            let token: ServiceAccountToken = serde_json::from_slice(&ctx.body)
                .map_err(|e| ApiError::bad_request(format!("invalid token: {e}")))?;
            let username = token.username();
            shared.tokens().add(token);
            Ok(json!({"registered": username}))
        }
        (&Method::DELETE, "tokens") => {
            shared.tokens().clear();
            Ok(json!({}))
        }
        (&Method::GET, "token-reviews") => to_value(shared.tokens().reviews()),
        (&Method::POST, "resources") => {
            let rt: ResourceType = serde_json::from_slice(&ctx.body)
                .map_err(|e| ApiError::bad_request(format!("invalid resource type: {e}")))?;
            let id = rt.id();
            shared.store().registry_mut().register(rt);
            Ok(json!({"registered": id}))
        }
        _ => Err(ApiError::no_route()),
    }
}
