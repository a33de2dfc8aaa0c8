//! Errors.
//!
//! Two kinds live here and are kept apart on purpose: [`Error`] is what the
//! Rust API of the fake returns to a test (bind failed, unknown kind, bad seed
//! file), while [`ApiError`] is a Kubernetes `Status` failure that the fake
//! serves over HTTP (404, 409, 410, 429, ...), exactly as a real API server
//! would, so the client code under test sees the same errors.

use serde_json::{json, Value};

/// Errors of the fake's Rust API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding or serving the listening socket failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A value could not be (de)serialized.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// No registered resource has this apiVersion and kind.
    #[error("no resource registered for apiVersion {api_version:?} kind {kind:?}")]
    UnknownKind {
        /// apiVersion of the object
        api_version: String,
        /// kind of the object
        kind: String,
    },
    /// No registered resource has this name (`plural` or `plural.group`).
    #[error("no resource registered as {0:?}")]
    UnknownResource(String),
    /// An object handed to a direct-store helper was not acceptable.
    #[error("invalid object: {0}")]
    InvalidObject(String),
    /// The store refused a write the way the API server would.
    #[error("api: {0}")]
    Api(#[from] ApiError),
    /// Building a kube client for the fake failed.
    #[error("kube client: {0}")]
    Kube(#[from] kube::Error),
    /// The fake's URL could not be parsed as a URI.
    #[error("uri: {0}")]
    Uri(#[from] hyper::http::uri::InvalidUri),
    /// A kubeconfig could not be loaded by kube.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
}

/// A Kubernetes API failure, served as a `Status` object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `Conflict`, `Expired`, ...).
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// `details` of the Status: name, group and kind (the plural) of the object.
    pub details: Option<Box<StatusDetails>>,
    /// Seconds to put in a `Retry-After` header (429/503).
    pub retry_after: Option<u64>,
}

/// The `details` part of a `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusDetails {
    /// Object name.
    pub name: String,
    /// API group ("" for core).
    pub group: String,
    /// Resource plural, which is what the API server puts in `details.kind`.
    pub kind: String,
}

impl ApiError {
    /// A failure with the conventional reason for `code`.
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason_for(code).to_string(),
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// 404 for a path the server does not serve.
    pub fn no_route() -> Self {
        Self::new(404, "the server could not find the requested resource")
    }

    /// 404 NotFound for an object.
    pub fn not_found(plural: &str, group: &str, name: &str) -> Self {
        Self::new(
            404,
            format!("{} \"{name}\" not found", qualified(plural, group)),
        )
        .with_details(plural, group, name)
    }

    /// 409 AlreadyExists for a create of an existing name.
    pub fn already_exists(plural: &str, group: &str, name: &str) -> Self {
        let mut e = Self::new(
            409,
            format!("{} \"{name}\" already exists", qualified(plural, group)),
        )
        .with_details(plural, group, name);
        e.reason = "AlreadyExists".into();
        e
    }

    /// 409 Conflict for a stale resourceVersion.
    pub fn conflict(plural: &str, group: &str, name: &str) -> Self {
        Self::new(
            409,
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(plural, group)
            ),
        )
        .with_details(plural, group, name)
    }

    /// 410 Expired: the resourceVersion or continue token is older than the
    /// retained history.
    pub fn expired(message: impl Into<String>) -> Self {
        let mut e = Self::new(410, message);
        e.reason = "Expired".into();
        e
    }

    /// Sets the `details` of the Status.
    pub fn with_details(mut self, plural: &str, group: &str, name: &str) -> Self {
        self.details = Some(Box::new(StatusDetails {
            name: name.to_string(),
            group: group.to_string(),
            kind: plural.to_string(),
        }));
        self
    }

    /// The `Status` object the API server sends for this failure.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = json!({"name": d.name, "group": d.group, "kind": d.kind});
        }
        if let Some(secs) = self.retry_after {
            status["details"]["retryAfterSeconds"] = json!(secs);
        }
        status
    }
}

/// The reason the API server uses for an HTTP code.
pub fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

fn qualified(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}
