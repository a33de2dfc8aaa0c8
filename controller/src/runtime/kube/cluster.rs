//! Thin Kubernetes I/O: the watches that feed in-memory stores, and the few
//! reads and writes the reconciler performs. Every decision is in `core`;
//! this module only converts between kube types and the core's plain data,
//! so a real cluster sees exactly the requests the fake API server saw.
//!
//! Memory stays flat with the number of Secrets in the cluster: Secrets are
//! watched metadata-only with the `type=kubernetes.io/tls` field selector
//! into a compact store (`store`), and data is read (GET) only for selected
//! sources and only when their resourceVersion moved. No data is cached:
//! what cert-sync manages in the gateway namespace is kept by digest, and a
//! write reads the bytes it needs again (`reconcile`'s hydration).

use super::backoff::WatchBackoff;
use super::store::{self, ManagedStore, SourceStore, StoreError};
use crate::core::desired::DesiredSecret;
use crate::core::flat_map::FlatMap;
use crate::core::model::{keys, Blob, ObjectRef, PublishedSecret, SourceData, SourceMeta};
use crate::crd::CertMerge;
use crate::runtime::kube::sweep::NonTlsSources;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{DeleteParams, PartialObjectMeta, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The one field manager every cert-sync write uses.
pub const FIELD_MANAGER: &str = "cert-sync";

/// In-memory views kept current by watches.
#[derive(Clone)]
pub struct Stores {
    /// Every `kubernetes.io/tls` Secret, compact (see `store`).
    pub tls_sources: SourceStore,
    pub namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
    pub certmerges: Option<Store<CertMerge>>,
    /// Secrets in the gateway namespace labelled managed-by cert-sync (data by digest).
    pub managed: ManagedStore,
    /// Annotated Secrets of another type, filled by `sweep::spawn` where
    /// one runs (empty otherwise).
    pub non_tls: NonTlsSources,
}

/// List page sizes. A page is decoded whole before the store compacts it,
/// so it bounds the transient memory of a (re)list: ~1.5 KB per metadata-only
/// Secret, ~5 KB per managed Secret with its data (kube's default is 500).
const SOURCE_PAGE: u32 = 200;
const MANAGED_PAGE: u32 = 50;

/// Starts the watches. Every event (and every watch error, after which the
/// watcher relists) pokes the reconciler: `keyed` for the source and
/// managed Secrets, whose stores journal what changed (a scoped pass can
/// follow), `changed` for the others (a full pass).
pub fn watch(
    client: &Client,
    gateway_namespace: &str,
    with_namespaces: bool,
    with_certmerges: bool,
    changed: Arc<Notify>,
    keyed: Arc<Notify>,
) -> (Stores, Vec<JoinHandle<()>>) {
    #[cfg(feature = "alloc-stats")]
    crate::runtime::ops::alloc_stats::report();
    let mut tasks = Vec::new();
    let (tls_sources, writer) = store::source_store();
    spawn_watch(
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        watcher::Config::default()
            .fields(&format!("type={}", keys::TLS_TYPE))
            .page_size(SOURCE_PAGE),
        move |event| writer.apply(event),
        &keyed,
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
    let (managed, writer) = store::managed_store();
    spawn_watch(
        Api::<Secret>::namespaced(client.clone(), gateway_namespace),
        watcher::Config::default()
            .labels(&format!("{}={}", keys::MANAGED_BY, keys::MANAGED_BY_VALUE))
            .page_size(MANAGED_PAGE),
        move |event| writer.apply(event),
        &keyed,
        &mut tasks,
    );
    (
        Stores {
            tls_sources,
            namespaces,
            certmerges,
            managed,
            non_tls: NonTlsSources::default(),
        },
        tasks,
    )
}

pub(crate) fn spawn_reflector<K>(
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
    .backoff(WatchBackoff::default());
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

/// Runs a watch into a compact store: each event goes to `apply`; every
/// event (and every watch error, after which the watcher relists with
/// backoff) pokes `changed`.
fn spawn_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    mut apply: impl FnMut(watcher::Event<K>) + Send + 'static,
    changed: &Arc<Notify>,
    tasks: &mut Vec<JoinHandle<()>>,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let changed = Arc::clone(changed);
    let stream = watcher(api, config).backoff(WatchBackoff::default());
    tasks.push(tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => apply(event),
                Err(e) => {
                    tracing::warn!(error = %e, kind = std::any::type_name::<K>(), "watch failed; relisting with backoff");
                }
            }
            changed.notify_one();
        }
    }));
}

/// Why the watches never became ready.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Reflector(#[from] reflector::store::WriterDropped),
}

impl Stores {
    /// A store that drives writes is relisting (after a 410 or a watch
    /// failure): it still shows the state from before, so a pass now
    /// would write from stale preconditions. Its `InitDone` pokes the loop.
    pub fn relisting(&self) -> bool {
        self.tls_sources.relisting() || self.managed.relisting()
    }

    /// Waits until every watch has listed once.
    pub async fn wait_ready(&self) -> Result<(), ReadyError> {
        self.tls_sources.wait_until_ready().await?;
        if let Some(ns) = &self.namespaces {
            ns.wait_until_ready().await?;
        }
        if let Some(cm) = &self.certmerges {
            cm.wait_until_ready().await?;
        }
        Ok(self.managed.wait_until_ready().await?)
    }

    /// The sources a decision can involve: annotated TLS Secrets, and any
    /// TLS Secret in a namespace a CertMerge reads. Converting only these
    /// keeps a reconcile's cost with the number of candidates, not with all
    /// the TLS Secrets in the cluster.
    pub fn sources(
        &self,
        merge_namespaces: &std::collections::BTreeSet<String>,
    ) -> Vec<SourceMeta> {
        self.tls_sources.sources(merge_namespaces)
    }

    pub fn namespace_labels(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.namespaces
            .iter()
            .flat_map(|s| s.state())
            .map(|ns| (ns.name_any(), ns.labels().clone()))
            .collect()
    }

    /// [`Stores::namespace_labels`] of `names` only.
    pub fn namespace_labels_of<'a>(
        &self,
        names: impl Iterator<Item = &'a str>,
    ) -> BTreeMap<String, BTreeMap<String, String>> {
        let Some(store) = &self.namespaces else {
            return BTreeMap::new();
        };
        names
            .filter_map(|name| {
                let ns = store.get(&reflector::ObjectRef::new(name))?;
                Some((name.to_owned(), ns.labels().clone()))
            })
            .collect()
    }

    pub fn cert_merges(&self, gateway_namespace: &str) -> Vec<crate::core::model::CertMerge> {
        self.certmerges
            .iter()
            .flat_map(|s| s.state())
            .map(|cm| cm.to_model(gateway_namespace))
            .collect()
    }

    /// The managed Secrets by name; their data is shared with the store.
    pub fn managed_secrets(&self) -> BTreeMap<String, PublishedSecret> {
        self.managed.published()
    }
}

pub fn published_secret(secret: &Secret) -> PublishedSecret {
    let (data, certificates) = store::digested(secret);
    PublishedSecret {
        name: secret.name_any(),
        secret_type: secret.type_.clone().unwrap_or_else(|| "Opaque".to_owned()),
        labels: Arc::new(secret.labels().clone()),
        annotations: Arc::new(FlatMap::from(secret.annotations().clone())),
        data: Arc::new(data),
        certificates,
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
    let secret_type = secret.type_.clone().unwrap_or_else(|| "Opaque".to_owned());
    Ok(Some(source_meta(&secret, secret_type)))
}

/// What selection reads of a Secret (or of its metadata), keeping only the
/// autosync annotation: the others may carry anything
/// (`last-applied-configuration` holds a Secret's data).
pub(crate) fn source_meta(secret: &impl kube::Resource, secret_type: String) -> SourceMeta {
    SourceMeta {
        key: ObjectRef::new(secret.namespace().unwrap_or_default(), secret.name_any()),
        uid: secret.uid().unwrap_or_default(),
        resource_version: secret.resource_version().unwrap_or_default(),
        secret_type,
        labels: Arc::new(secret.labels().clone()),
        annotations: Arc::new(
            secret
                .annotations()
                .get_key_value(keys::AUTOSYNC)
                .map(|(k, v)| (k.clone(), v.clone()))
                .into_iter()
                .collect(),
        ),
        created: secret.creation_timestamp().map_or(0, |t| t.0.as_second()),
    }
}

/// Reads a source's data; `None` when it is gone.
pub async fn read_source(
    client: &Client,
    source: &ObjectRef,
) -> Result<Option<(String, SourceData)>, kube::Error> {
    let api = Api::<Secret>::namespaced(client.clone(), &source.namespace);
    let Some(mut secret) = api.get_opt(&source.name).await? else {
        return Ok(None);
    };
    // Moved out of the Secret, not copied.
    let mut data = secret.data.take().unwrap_or_default();
    let mut field = |key: &str| data.remove(key).map(|v| Blob::from(v.0));
    Ok(Some((
        secret.resource_version().unwrap_or_default(),
        SourceData {
            cert_pem: field(keys::TLS_CRT),
            key_pem: field(keys::TLS_KEY),
            ca_pem: field(keys::CA_CRT),
        },
    )))
}

/// A Secret's resourceVersion and every data value by key (`None` when it
/// is gone): a natively referenced Secret, whose keys are chosen the way
/// istiod chooses them (`core::referenced::istio_layout`).
pub async fn read_secret_data(
    client: &Client,
    key: &ObjectRef,
) -> Result<Option<(String, BTreeMap<String, Blob>)>, kube::Error> {
    let api = Api::<Secret>::namespaced(client.clone(), &key.namespace);
    let Some(mut secret) = api.get_opt(&key.name).await? else {
        return Ok(None);
    };
    let data = secret.data.take().unwrap_or_default();
    Ok(Some((
        secret.resource_version().unwrap_or_default(),
        data.into_iter()
            .map(|(k, v)| (k, Blob::from(v.0)))
            .collect(),
    )))
}

/// The data values of a Secret, with their bytes (empty when it is gone).
pub async fn read_secret_values(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Vec<Blob>, kube::Error> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    let data = api
        .get_opt(name)
        .await?
        .and_then(|mut s| s.data.take())
        .unwrap_or_default();
    Ok(data.into_values().map(|v| Blob::from(v.0)).collect())
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
    let body = ApplyBody {
        api_version: "v1",
        kind: "Secret",
        metadata: ApplyMeta {
            name: &desired.name,
            namespace: &desired.namespace,
            labels: &desired.labels,
            annotations: Some(&desired.annotations),
        },
        type_: Some(&desired.secret_type),
        data: Base64Data(&desired.data),
    };
    apply_discarding_response(client, &api, &desired.name, &body).await
}

/// A server-side apply body serialized straight from borrowed data: the
/// manifest is a megabyte and a thousand Secrets are megabytes, and a
/// `serde_json::Value` would copy all of it first.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ApplyBody<'a, D> {
    api_version: &'a str,
    kind: &'a str,
    metadata: ApplyMeta<'a>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    type_: Option<&'a str>,
    data: D,
}

#[derive(serde::Serialize)]
struct ApplyMeta<'a> {
    name: &'a str,
    namespace: &'a str,
    labels: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<&'a FlatMap<String>>,
}

/// A Secret's `data`, base64-encoded as it is written out.
struct Base64Data<'a>(&'a FlatMap<Blob>);

impl serde::Serialize for Base64Data<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeMap as _};
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            // Hydrated before every write (`reconcile`); never a digest alone.
            let bytes = value
                .bytes()
                .ok_or_else(|| S::Error::custom(format!("{key}: only its digest is known")))?;
            map.serialize_entry(key, &Base64Value(bytes))?;
        }
        map.end()
    }
}

struct Base64Value<'a>(&'a [u8]);

impl serde::Serialize for Base64Value<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&base64::display::Base64Display::new(
            self.0,
            &base64::engine::general_purpose::STANDARD,
        ))
    }
}

/// Server-side applies `body` to `name` and reads the answer only for its
/// status: the object the API server sends back (the whole manifest, or a
/// Secret with its data) is streamed past, never decoded or buffered. The
/// body is serialized into a buffer of its exact size (measured by a first
/// pass): the manifest is hundreds of kilobytes, and a growing buffer would
/// briefly hold up to twice that.
async fn apply_discarding_response<K>(
    client: &Client,
    api: &Api<K>,
    name: &str,
    body: &impl serde::Serialize,
) -> Result<(), kube::Error>
where
    K: kube::Resource,
{
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, body).map_err(kube::Error::SerdeError)?;
    let mut bytes = Vec::with_capacity(count.0);
    serde_json::to_writer(&mut bytes, body).map_err(kube::Error::SerdeError)?;
    // kube builds the URL, query and headers; the body is ours.
    let mut req = kube::core::Request::new(api.resource_url())
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(()),
        )
        .map_err(kube::Error::BuildRequest)?;
    *req.body_mut() = bytes;
    req.extensions_mut().insert("patch");
    let answer = client.request_stream(req).await?;
    futures::io::copy_buf(answer, &mut futures::io::sink())
        .await
        .map_err(kube::Error::ReadEvents)?;
    Ok(())
}

/// Deletes a Secret cert-sync manages. The resourceVersion precondition
/// comes from a fresh read, never from the watch store (which can lag,
/// e.g. while it relists after an API-server restart): the delete applies
/// to the object as it is now, and only while it still carries cert-sync's
/// managed-by label. Gone already, or no longer ours: nothing to do.
pub async fn delete_managed_secret(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<(), kube::Error> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    let Some(current) = api.get_opt(name).await? else {
        return Ok(());
    };
    let ours = current
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(keys::MANAGED_BY))
        .is_some_and(|v| v == keys::MANAGED_BY_VALUE);
    if !ours {
        tracing::warn!(secret = %name, "not managed by cert-sync (any more); left in place");
        return Ok(());
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: current.metadata.resource_version,
            uid: current.metadata.uid,
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
    data: &impl serde::Serialize,
) -> Result<(), kube::Error> {
    let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    let body = ApplyBody {
        api_version: "v1",
        kind: "ConfigMap",
        metadata: ApplyMeta {
            name,
            namespace,
            labels,
            annotations: None,
        },
        type_: None,
        data,
    };
    apply_discarding_response(client, &api, name, &body).await
}

/// Server-side applies a CertMerge's status subresource.
pub async fn apply_certmerge_status(
    client: &Client,
    merge: &ObjectRef,
    status: &crate::crd::CertMergeStatus,
) -> Result<(), kube::Error> {
    let api = Api::<CertMerge>::namespaced(client.clone(), &merge.namespace);
    let body = serde_json::json!({
        // The CRD's own group, version and kind (`crate::crd`).
        "apiVersion": CertMerge::api_version(&()),
        "kind": CertMerge::kind(&()),
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

/// The manifest as its ConfigMaps hold it: the index's JSON and each
/// shard's JSON by label (`core::manifest::shards`); `None` when there is
/// no index. One GET and one LIST (by label, so only the shards travel).
pub async fn read_manifest_parts(
    client: &Client,
    namespace: &str,
) -> Result<Option<(String, BTreeMap<String, String>)>, kube::Error> {
    use crate::core::manifest::{self, shards};
    use kube::api::ListParams;
    let api = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    let Some(index) = api
        .get_opt(manifest::NAME)
        .await?
        .and_then(|cm| cm.data?.remove(manifest::DATA_KEY))
    else {
        return Ok(None);
    };
    let selector = format!("{}={}", shards::PART_LABEL, shards::PART_SHARD);
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    let parts = list
        .items
        .into_iter()
        .filter_map(|cm| {
            let label = cm
                .name_any()
                .strip_prefix(&format!("{}-", manifest::NAME))?
                .to_owned();
            Some((label, cm.data?.remove(manifest::DATA_KEY)?))
        })
        .collect();
    Ok(Some((index, parts)))
}
