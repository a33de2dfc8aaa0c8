//! Thin Kubernetes I/O: the watches that feed in-memory stores, and the few
//! reads and writes the reconciler performs. Every decision is in `core`;
//! this module only converts between kube types and the core's plain data,
//! so a real cluster sees exactly the requests the fake API server saw.
//!
//! Memory stays flat with the number of Secrets in the cluster: Secrets are
//! watched metadata-only with the `type=kubernetes.io/tls` field selector,
//! and data is read (GET) only for selected sources and only when their
//! resourceVersion moved. Full objects are cached only for what cert-sync
//! itself manages in the gateway namespace.

use crate::core::desired::DesiredSecret;
use crate::core::model::{keys, ObjectRef, PublishedSecret, SourceData, SourceMeta};
use crate::crd::CertMerge;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ObjectReference, Secret};
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, PartialObjectMeta, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The one field manager every cert-sync write uses.
pub const FIELD_MANAGER: &str = "cert-sync";

/// In-memory views kept current by watches.
#[derive(Clone)]
pub struct Stores {
    pub tls_sources: Store<PartialObjectMeta<Secret>>,
    pub namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
    pub certmerges: Option<Store<CertMerge>>,
    /// Secrets in the gateway namespace labelled managed-by cert-sync (with data).
    pub managed: Store<Secret>,
}

/// Starts the watches. Every event (and every watch error, after which the
/// watcher relists) pokes `changed`, so the reconciler runs.
pub fn watch(
    client: &Client,
    gateway_namespace: &str,
    with_namespaces: bool,
    with_certmerges: bool,
    changed: Arc<Notify>,
) -> (Stores, Vec<JoinHandle<()>>) {
    let mut tasks = Vec::new();
    let tls_sources = spawn_reflector(
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        watcher::Config::default().fields(&format!("type={}", keys::TLS_TYPE)),
        &changed,
        &mut tasks,
    );
    let namespaces = with_namespaces.then(|| {
        spawn_reflector(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
            &changed,
            &mut tasks,
        )
    });
    let certmerges = with_certmerges.then(|| {
        spawn_reflector(
            Api::<CertMerge>::all(client.clone()),
            watcher::Config::default(),
            &changed,
            &mut tasks,
        )
    });
    let managed = spawn_reflector(
        Api::<Secret>::namespaced(client.clone(), gateway_namespace),
        watcher::Config::default().labels(&format!(
            "{}={}",
            keys::MANAGED_BY,
            keys::MANAGED_BY_VALUE
        )),
        &changed,
        &mut tasks,
    );
    (
        Stores {
            tls_sources,
            namespaces,
            certmerges,
            managed,
        },
        tasks,
    )
}

fn spawn_reflector<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: &Arc<Notify>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Store<K>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = reflector::store();
    let changed = Arc::clone(changed);
    // managedFields are often the largest part of an object's metadata and
    // cert-sync never reads them: drop them before they reach the store.
    let stream = reflector::reflector(
        writer,
        watcher(api, config).modify(|obj| obj.managed_fields_mut().clear()),
    )
    .default_backoff();
    tasks.push(tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!(error = %e, kind = std::any::type_name::<K>(), "watch failed; relisting with backoff");
            }
            changed.notify_one();
        }
    }));
    store
}

impl Stores {
    /// Waits until every watch has listed once.
    pub async fn wait_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.tls_sources.wait_until_ready().await?;
        if let Some(ns) = &self.namespaces {
            ns.wait_until_ready().await?;
        }
        if let Some(cm) = &self.certmerges {
            cm.wait_until_ready().await?;
        }
        self.managed.wait_until_ready().await
    }

    /// The sources a decision can involve: annotated TLS Secrets, and any
    /// TLS Secret in a namespace a CertMerge reads. Converting only these
    /// keeps a reconcile's cost with the number of candidates, not with all
    /// the TLS Secrets in the cluster.
    pub fn sources(
        &self,
        merge_namespaces: &std::collections::BTreeSet<String>,
    ) -> Vec<SourceMeta> {
        self.tls_sources
            .state()
            .iter()
            .filter(|m| {
                m.annotations().contains_key(keys::AUTOSYNC)
                    || m.namespace()
                        .is_some_and(|ns| merge_namespaces.contains(&ns))
            })
            .map(|m| source_meta(m))
            .collect()
    }

    pub fn namespace_labels(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.namespaces
            .iter()
            .flat_map(|s| s.state())
            .map(|ns| (ns.name_any(), ns.labels().clone()))
            .collect()
    }

    pub fn cert_merges(&self, gateway_namespace: &str) -> Vec<crate::core::model::CertMerge> {
        self.certmerges
            .iter()
            .flat_map(|s| s.state())
            .map(|cm| cm.to_model(gateway_namespace))
            .collect()
    }

    pub fn managed_secrets(&self) -> BTreeMap<String, PublishedSecret> {
        self.managed
            .state()
            .iter()
            .map(|s| (s.name_any(), published_secret(s)))
            .collect()
    }
}

fn source_meta(meta: &PartialObjectMeta<Secret>) -> SourceMeta {
    SourceMeta {
        key: ObjectRef::new(meta.namespace().unwrap_or_default(), meta.name_any()),
        uid: meta.uid().unwrap_or_default(),
        resource_version: meta.resource_version().unwrap_or_default(),
        // The watch's field selector admits only TLS Secrets.
        secret_type: keys::TLS_TYPE.to_owned(),
        labels: meta.labels().clone(),
        annotations: meta.annotations().clone(),
        created: meta.creation_timestamp().map_or(0, |t| t.0.as_second()),
    }
}

pub fn published_secret(secret: &Secret) -> PublishedSecret {
    PublishedSecret {
        name: secret.name_any(),
        secret_type: secret.type_.clone().unwrap_or_else(|| "Opaque".to_owned()),
        labels: secret.labels().clone(),
        annotations: secret.annotations().clone(),
        data: secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect(),
    }
}

/// Metadata of one Secret whatever its type: a CertMerge may list a Secret
/// the TLS-only watch never shows, and the user deserves the real reason
/// (`NotTLS`) rather than "not found".
pub async fn read_source_meta(
    client: &Client,
    source: &ObjectRef,
) -> Result<Option<SourceMeta>, kube::Error> {
    let api = Api::<Secret>::namespaced(client.clone(), &source.namespace);
    let Some(secret) = api.get_opt(&source.name).await? else {
        return Ok(None);
    };
    Ok(Some(SourceMeta {
        key: source.clone(),
        uid: secret.uid().unwrap_or_default(),
        resource_version: secret.resource_version().unwrap_or_default(),
        secret_type: secret.type_.clone().unwrap_or_else(|| "Opaque".to_owned()),
        labels: secret.labels().clone(),
        annotations: secret.annotations().clone(),
        created: secret.creation_timestamp().map_or(0, |t| t.0.as_second()),
    }))
}

/// Reads a source's data; `None` when it is gone.
pub async fn read_source(
    client: &Client,
    source: &ObjectRef,
) -> Result<Option<(String, SourceData)>, kube::Error> {
    let api = Api::<Secret>::namespaced(client.clone(), &source.namespace);
    let Some(secret) = api.get_opt(&source.name).await? else {
        return Ok(None);
    };
    let field = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.0.clone())
    };
    Ok(Some((
        secret.resource_version().unwrap_or_default(),
        SourceData {
            cert_pem: field(keys::TLS_CRT),
            key_pem: field(keys::TLS_KEY),
            ca_pem: field(keys::CA_CRT),
        },
    )))
}

/// Reads a Secret in the gateway namespace that is not in the managed store
/// (an object in a target's way); `None` when there is none.
pub async fn read_target(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<PublishedSecret>, kube::Error> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    Ok(api.get_opt(name).await?.as_ref().map(published_secret))
}

/// Server-side applies a desired Secret (cert and key in one object update).
pub async fn apply_secret(client: &Client, desired: &DesiredSecret) -> Result<(), kube::Error> {
    let api = Api::<Secret>::namespaced(client.clone(), &desired.namespace);
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": desired.name,
            "namespace": desired.namespace,
            "labels": desired.labels,
            "annotations": desired.annotations,
        },
        "type": desired.secret_type,
        "data": desired.data.iter().map(|(k, v)| (k.clone(), ByteString(v.clone()))).collect::<BTreeMap<_, _>>(),
    });
    api.patch(
        &desired.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map(|_| ())
}

/// Deletes a Secret cert-sync published, only if it is still the version
/// the decision was made on (so a concurrent change is never lost).
pub async fn delete_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    resource_version: Option<String>,
) -> Result<(), kube::Error> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version,
            uid: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Server-side applies the manifest ConfigMap.
pub async fn apply_config_map(
    client: &Client,
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    data: &BTreeMap<String, String>,
) -> Result<(), kube::Error> {
    let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": name, "namespace": namespace, "labels": labels },
        "data": data,
    });
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map(|_| ())
}

/// Server-side applies a CertMerge's status subresource.
pub async fn apply_certmerge_status(
    client: &Client,
    merge: &ObjectRef,
    status: &crate::crd::CertMergeStatus,
) -> Result<(), kube::Error> {
    let api = Api::<CertMerge>::namespaced(client.clone(), &merge.namespace);
    let body = serde_json::json!({
        "apiVersion": "certsync.istio.io/v1alpha1",
        "kind": "CertMerge",
        "status": status,
    });
    api.patch_status(
        &merge.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map(|_| ())
}

/// Events on sources and CertMerges.
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: Client, instance: &str) -> Self {
        let reporter = Reporter {
            controller: "cert-sync".into(),
            instance: Some(instance.to_owned()),
        };
        Events {
            recorder: Recorder::new(client, reporter),
        }
    }

    pub async fn emit(
        &self,
        about: ObjectReference,
        warning: bool,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(message.chars().take(1000).collect()),
            action: if warning { "Refuse" } else { "Publish" }.to_owned(),
            secondary: None,
        };
        self.recorder.publish(&event, &about).await
    }
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

/// An ObjectReference to a CertMerge.
pub fn certmerge_reference(merge: &ObjectRef) -> ObjectReference {
    ObjectReference {
        api_version: Some("certsync.istio.io/v1alpha1".into()),
        kind: Some("CertMerge".into()),
        namespace: Some(merge.namespace.clone()),
        name: Some(merge.name.clone()),
        ..ObjectReference::default()
    }
}
