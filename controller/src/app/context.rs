//! What every stage of the app loop shares: one API client, the policy the
//! core decides with, the metrics, and the one Event recorder (its series
//! cache is what keeps a repeated Event from becoming a new object, so there
//! must be exactly one).

use crate::core::model::Policy;
use crate::runtime::kube::events::Events;
use crate::runtime::ops::metrics::Metrics;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;

pub struct Context {
    pub client: Client,
    pub policy: Policy,
    pub metrics: Metrics,
    pub events: Events,
}

impl Context {
    /// `instance` names this replica in the Events it records.
    pub fn new(client: Client, policy: Policy, metrics: Metrics, instance: &str) -> Self {
        Context {
            events: Events::new(client.clone(), instance),
            client,
            policy,
            metrics,
        }
    }

    /// Records a publication Event (`Refuse` when `warning`, else
    /// `Publish`). A failure is logged, never fatal: Events are best-effort
    /// in Kubernetes too.
    pub async fn emit(&self, on: ObjectReference, warning: bool, reason: &str, message: &str) {
        if let Err(e) = self.events.emit(on, warning, reason, message).await {
            tracing::warn!(error = %e, "could not record an Event");
        }
    }

    /// Records an Event with its own action (`Verify`, `Retrigger`).
    pub async fn emit_action(
        &self,
        on: ObjectReference,
        warning: bool,
        action: &str,
        reason: &str,
        message: &str,
    ) {
        if let Err(e) = self
            .events
            .emit_action(on, warning, action, reason, message)
            .await
        {
            tracing::warn!(error = %e, "could not record an Event");
        }
    }
}
