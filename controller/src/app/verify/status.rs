//! `GET /v1/status`: the verify stage's last view, rendered when asked for.

use crate::core::manifest::{rfc3339_ms, ManifestEntry};
use crate::core::rollout::{self, PublicationView, RolloutNotes, Warning};
use crate::core::status::{PodSummary, PublicationStatus, Publications, StatusView};
use std::sync::{Arc, RwLock};

/// What `/v1/status` serves: the latest view, shared with the HTTP server.
pub type SharedStatus = Arc<RwLock<Option<StatusSnapshot>>>;

/// The last pass's inputs, kept for `GET /v1/status`: the view is rendered
/// when asked for, not copied from the manifest on every tick.
pub struct StatusSnapshot {
    pub(super) published: Publications,
    pub(super) views: Vec<PublicationView>,
    pub(super) notes: RolloutNotes,
    pub(super) pods: Vec<PodSummary>,
    pub(super) warnings: Vec<Warning>,
    pub(super) now_ms: i64,
}

impl StatusSnapshot {
    pub fn view(&self) -> StatusView {
        let manifest = &*self.published;
        let refusals = &manifest.refusals;
        let publications = manifest
            .publications
            .iter()
            .zip(&self.views)
            .map(|(entry, v)| {
                let mut entry = ManifestEntry::clone(entry);
                if let Some(note) = self.notes.get(&v.key) {
                    rollout::annotate(&mut entry, note);
                }
                PublicationStatus {
                    verified: v.verified(),
                    total: v.pods.len(),
                    pods: v.pods.clone(),
                    entry,
                }
            })
            .collect();
        StatusView {
            gateway_namespace: manifest.gateway_namespace.clone(),
            mode: manifest.mode.clone(),
            generated_at: Some(rfc3339_ms(self.now_ms)),
            pods: self.pods.clone(),
            publications,
            refusals: refusals.clone(),
            warnings: self.warnings.iter().cloned().map(Into::into).collect(),
        }
    }
}

/// `GET /v1/status`: the latest view as JSON (503 until the first pass).
pub fn status_router(status: SharedStatus) -> axum::Router {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    axum::Router::new().route(
        "/v1/status",
        axum::routing::get(move || {
            let status = Arc::clone(&status);
            async move {
                let view = status
                    .read()
                    .ok()
                    .and_then(|s| s.as_ref().map(StatusSnapshot::view));
                match view {
                    Some(view) => axum::Json(view).into_response(),
                    None => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no status yet: the first reconcile has not finished\n",
                    )
                        .into_response(),
                }
            }
        }),
    )
}
