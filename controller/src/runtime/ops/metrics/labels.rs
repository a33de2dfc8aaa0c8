//! The closed sets metric labels take their values from: one enum per
//! label, each value spelled once in `as_str`.

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use std::fmt::{self, Write as _};

/// What kind of object a publication count is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublishedKind {
    /// `credential` mode: one Secret per source.
    Secret,
    /// `merged` mode: one `.crt`/`.key` entry pair in the merged Secret.
    MergedEntry,
    /// `directory` mode: one `.crt`/`.key` file pair.
    FilePair,
}

impl PublishedKind {
    /// Every kind, e.g. to report zero for the ones not in use.
    pub const ALL: [PublishedKind; 3] = [Self::Secret, Self::MergedEntry, Self::FilePair];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::MergedEntry => "merged_entry",
            Self::FilePair => "file_pair",
        }
    }
}

/// The API verb of a request to the Kubernetes API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiVerb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Apply,
    Delete,
}

impl ApiVerb {
    /// The label value (Kubernetes audit-log verb names).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Apply => "apply",
            Self::Delete => "delete",
        }
    }
}

/// How a request to the API server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiOutcome {
    /// 2xx.
    Ok,
    /// 404: often expected (absent object, already deleted), so it is kept
    /// apart from `error`.
    NotFound,
    /// 409: optimistic-concurrency conflict or AlreadyExists.
    Conflict,
    /// 429: the API server asked us to slow down.
    Throttled,
    /// Anything else: 5xx, transport errors, timeouts.
    Error,
}

impl ApiOutcome {
    /// Classifies a kube client result.
    pub fn of<T>(result: &Result<T, kube::Error>) -> Self {
        match result {
            Ok(_) => Self::Ok,
            Err(kube::Error::Api(status)) => match status.code {
                404 => Self::NotFound,
                409 => Self::Conflict,
                429 => Self::Throttled,
                _ => Self::Error,
            },
            Err(_) => Self::Error,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Throttled => "throttled",
            Self::Error => "error",
        }
    }
}

/// How one reconcile pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReconcileOutcome {
    Ok,
    Error,
}

impl ReconcileOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }
}

/// What became of one `POST /v1/reports`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportOutcome {
    Accepted,
    /// No or a wrong bearer token: 401.
    Unauthenticated,
    /// Authenticated, but not a live gateway pod reporting for itself: 403.
    Forbidden,
    /// Not a report this controller understands: 400.
    Malformed,
    /// Over the size or certificate-count bounds: 413.
    TooLarge,
    /// An older sequence number than the pod's last report: 409.
    Stale,
    /// This replica is not the leader: 503, the filter retries.
    NotLeader,
    /// A standby passed the report to the leader, which accepted it.
    Forwarded,
}

impl ReportOutcome {
    pub const ALL: [ReportOutcome; 8] = [
        Self::Accepted,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::Malformed,
        Self::TooLarge,
        Self::Stale,
        Self::NotLeader,
        Self::Forwarded,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::Stale => "stale",
            Self::NotLeader => "not_leader",
            Self::Forwarded => "forwarded",
        }
    }
}

/// A step the rollout ladder took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LadderStep {
    /// A rollout passed its timeout unconverged (an Event, no action yet).
    Stalled,
    RePush,
    ReapplyGatewayConfig,
    Evict,
    /// Re-applied the gateway-side objects for pods that never reported
    /// (the filter is not loaded there).
    ReapplyForFilter,
    /// Told that the filter is not loaded on a pod (after re-applies).
    FilterNotLoaded,
}

impl LadderStep {
    pub const ALL: [LadderStep; 6] = [
        Self::Stalled,
        Self::RePush,
        Self::ReapplyGatewayConfig,
        Self::Evict,
        Self::ReapplyForFilter,
        Self::FilterNotLoaded,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stalled => "stalled",
            Self::RePush => "repush",
            Self::ReapplyGatewayConfig => "reapply_gateway_config",
            Self::Evict => "evict",
            Self::ReapplyForFilter => "reapply_for_filter",
            Self::FilterNotLoaded => "filter_not_loaded",
        }
    }
}

macro_rules! label_value_via_as_str {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
                encoder.write_str(self.as_str())
            }
        }
    )*};
}
label_value_via_as_str!(
    PublishedKind,
    ApiVerb,
    ApiOutcome,
    ReconcileOutcome,
    ReportOutcome,
    LadderStep
);
