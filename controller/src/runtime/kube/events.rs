//! Events on sources and CertMerges (`events.k8s.io/v1`), with the small
//! series cache that turns repeats into series updates.

use crate::core::model::ObjectRef;
use crate::core::reasons::actions;
use crate::crd::CertMerge;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use std::collections::HashMap;
use tokio::sync::Mutex;

/// How long a written Event is remembered so that a repeat becomes a series
/// update instead of a new Event (kube's `Recorder` uses the same six minutes).
const EVENT_CACHE_TTL: jiff::SignedDuration = jiff::SignedDuration::from_mins(6);
/// At most this many are remembered (the least recently seen go first), so
/// a burst of distinct Events does not keep a cache entry each for minutes.
const EVENT_CACHE_MAX: usize = 256;

/// What is remembered of an Event already written. kube's `Recorder` keeps
/// the whole Event object for this; a thousand publications are a thousand
/// Events, megabytes held for six minutes, where a name, a time and the
/// note suffice to write the same series update.
struct Recorded {
    name: String,
    event_time: jiff::Timestamp,
    note: Option<String>,
    /// Occurrences so far when more than one (`series.count`).
    count: Option<i32>,
    last_observed: jiff::Timestamp,
}

impl Recorded {
    fn last_seen(&self) -> jiff::Timestamp {
        if self.count.is_some() {
            self.last_observed
        } else {
            self.event_time
        }
    }
}

/// Events on sources and CertMerges (`events.k8s.io/v1`), written as
/// kube's `Recorder` writes them: a new Event, or, for the same type,
/// action, reason and object within six minutes, a merge patch of the
/// first one with a `series`.
pub struct Events {
    client: Client,
    controller: String,
    instance: String,
    recorded: Mutex<HashMap<String, Recorded>>,
}

impl Events {
    pub fn new(client: Client, instance: &str) -> Self {
        Events {
            client,
            controller: "cert-sync".to_owned(),
            instance: instance.to_owned(),
            recorded: Mutex::new(HashMap::new()),
        }
    }

    /// A publication Event: `Refuse` when `warning`, else `Publish`.
    pub async fn emit(
        &self,
        about: ObjectReference,
        warning: bool,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let action = if warning {
            actions::REFUSE
        } else {
            actions::PUBLISH
        };
        self.emit_action(about, warning, action, reason, message)
            .await
    }

    /// An Event with its own `action` (e.g. `Verify`, `Retrigger`).
    pub async fn emit_action(
        &self,
        about: ObjectReference,
        warning: bool,
        action: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let now = jiff::Timestamp::now();
        let type_ = if warning { "Warning" } else { "Normal" };
        let key = event_key(&about, type_, action, reason, message);
        let mut recorded = self.recorded.lock().await;
        recorded.retain(|_, r| r.last_seen() + EVENT_CACHE_TTL > now);
        let (name, event_time, note, count) = match recorded.get(&key) {
            Some(r) => (
                r.name.clone(),
                r.event_time,
                r.note.clone(),
                Some(r.count.map_or(2, |c| c + 1)),
            ),
            None => (
                format!(
                    "{}.{:x}",
                    about.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                ),
                now,
                Some(message.chars().take(1000).collect()),
                None,
            ),
        };
        let event = K8sEvent {
            action: Some(action.to_owned()),
            reason: Some(reason.to_owned()),
            event_time: Some(MicroTime(event_time)),
            note: note.clone(),
            metadata: ObjectMeta {
                namespace: about.namespace.clone(),
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            series: count.map(|count| EventSeries {
                count,
                last_observed_time: MicroTime(now),
            }),
            type_: Some(type_.to_owned()),
            regarding: Some(about.clone()),
            ..K8sEvent::default()
        };
        let api = Api::<K8sEvent>::namespaced(
            self.client.clone(),
            about.namespace.as_deref().unwrap_or("default"),
        );
        if count.is_some() {
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&event))
                .await?;
        } else {
            api.create(&PostParams::default(), &event).await?;
        }
        recorded.insert(
            key,
            Recorded {
                name,
                event_time,
                note,
                count,
                last_observed: now,
            },
        );
        if recorded.len() > EVENT_CACHE_MAX {
            // An initial sync announces a thousand publications once each:
            // keep the recent ones, which are those that can repeat.
            let oldest = recorded
                .iter()
                .min_by_key(|(_, r)| r.last_seen())
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                recorded.remove(&oldest);
            }
        }
        Ok(())
    }
}

/// What makes two Events "the same" for a series (kube's `EventKey`; the
/// reporter is fixed per process).
/// What makes a repeat: the same object, type, action, reason *and note*.
/// kube's `Recorder` leaves the note out, so a new fingerprint published
/// within six minutes only bumped the first Event's count while its note
/// kept the first fingerprint; here an Event always says what happened.
fn event_key(
    about: &ObjectReference,
    type_: &str,
    action: &str,
    reason: &str,
    message: &str,
) -> String {
    let field = |f: &Option<String>| f.as_deref().unwrap_or_default().to_owned();
    [
        type_.to_owned(),
        action.to_owned(),
        reason.to_owned(),
        message.chars().take(1000).collect(),
        field(&about.api_version),
        field(&about.kind),
        field(&about.namespace),
        field(&about.name),
        field(&about.uid),
        field(&about.field_path),
        field(&about.resource_version),
    ]
    .join("\0")
}

/// An ObjectReference to a Secret (Events are recorded against sources).
pub fn secret_reference(source: &ObjectRef) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        namespace: Some(source.namespace.clone()),
        name: Some(source.name.clone()),
        ..ObjectReference::default()
    }
}

/// An ObjectReference to a VaultCertificate (a source kept in Vault).
pub fn vault_certificate_reference(source: &ObjectRef) -> ObjectReference {
    use crate::crd::VaultCertificate;
    ObjectReference {
        api_version: Some(VaultCertificate::api_version(&()).into_owned()),
        kind: Some(VaultCertificate::kind(&()).into_owned()),
        namespace: Some(source.namespace.clone()),
        name: Some(source.name.clone()),
        ..ObjectReference::default()
    }
}

/// An ObjectReference to an Istio or Gateway API Gateway.
pub fn gateway_reference(gateway: &crate::core::gateways::GatewayRef) -> ObjectReference {
    ObjectReference {
        api_version: Some(gateway.kind.api_version().into()),
        kind: Some("Gateway".into()),
        namespace: Some(gateway.key.namespace.clone()),
        name: Some(gateway.key.name.clone()),
        ..ObjectReference::default()
    }
}

/// An ObjectReference to a CertMerge.
pub fn certmerge_reference(merge: &ObjectRef) -> ObjectReference {
    ObjectReference {
        api_version: Some(CertMerge::api_version(&()).into_owned()),
        kind: Some(CertMerge::kind(&()).into_owned()),
        namespace: Some(merge.namespace.clone()),
        name: Some(merge.name.clone()),
        ..ObjectReference::default()
    }
}
