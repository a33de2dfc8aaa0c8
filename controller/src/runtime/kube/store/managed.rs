//! The managed half of the stores: cert-sync's Secrets in the gateway
//! namespace, their data kept by digest (see `core::model::Blob`).

use super::{new_store, CompactStore, Interner, Labels, Record, Text, Writer};
use crate::core::flat_map::FlatMap;
use crate::core::model::{Blob, Certificates, PublishedSecret};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PartialObjectMeta;
use kube::core::PartialObjectMetaExt;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One Secret cert-sync manages in the gateway namespace.
pub struct ManagedRecord {
    resource_version: Text,
    secret_type: Option<Arc<str>>,
    labels: Arc<Labels>,
    annotations: Arc<FlatMap<String>>,
    data: Arc<FlatMap<Blob>>,
    certificates: Certificates,
}

impl Record for ManagedRecord {
    type Object = Secret;

    fn compact(
        object: Self::Object,
        _namespace: &str,
        _name: &str,
        previous: Option<&Self>,
        interner: &mut Interner,
    ) -> Self {
        let (data, certificates) = digested(&object);
        // Unchanged across a watch event: keep sharing the previous maps.
        let (data, certificates) = match previous {
            Some(p) if *p.data == data => (Arc::clone(&p.data), Arc::clone(&p.certificates)),
            _ => (Arc::new(data), certificates),
        };
        let meta = object.metadata;
        ManagedRecord {
            resource_version: Text::new(meta.resource_version.as_deref().unwrap_or_default()),
            secret_type: object.type_.as_deref().map(|t| interner.string(t)),
            labels: interner.labels(meta.labels.unwrap_or_default()),
            annotations: Arc::new(FlatMap::from(meta.annotations.unwrap_or_default())),
            data,
            certificates,
        }
    }
}

impl ManagedRecord {
    fn published(&self, name: &str) -> PublishedSecret {
        PublishedSecret {
            name: name.to_owned(),
            secret_type: self.secret_type.as_deref().unwrap_or("Opaque").to_owned(),
            labels: Arc::clone(&self.labels),
            annotations: Arc::clone(&self.annotations),
            data: Arc::clone(&self.data),
            certificates: Arc::clone(&self.certificates),
        }
    }
}

/// A Secret's data by digest, with its certificates' summaries.
pub(crate) fn digested(secret: &Secret) -> (FlatMap<Blob>, Certificates) {
    PublishedSecret::digest_data(
        secret
            .data
            .iter()
            .flatten()
            .map(|(key, value)| (key.clone(), value.0.as_slice())),
    )
}

/// cert-sync's Secrets in the gateway namespace, their data by digest.
pub type ManagedStore = CompactStore<ManagedRecord>;

pub(crate) fn managed_store() -> (ManagedStore, Writer<ManagedRecord>) {
    new_store()
}

impl CompactStore<ManagedRecord> {
    /// Every managed Secret by name, as the core compares it. The data is
    /// shared, not copied.
    pub fn published(&self) -> BTreeMap<String, PublishedSecret> {
        let mut out = BTreeMap::new();
        self.each(|_, name, r| {
            out.insert(name.to_owned(), r.published(name));
        });
        out
    }

    /// The managed Secret `name`, as [`CompactStore::published`] gives it.
    pub fn published_one(&self, name: &str) -> Option<PublishedSecret> {
        let state = self.read();
        state
            .live
            .values()
            .find_map(|records| records.get(name))
            .map(|r| r.published(name))
    }

    /// The resourceVersion of the managed Secret `name` (a delete is
    /// conditional on it).
    pub fn resource_version(&self, name: &str) -> Option<String> {
        let state = self.read();
        state
            .live
            .values()
            .find_map(|records| records.get(name))
            .map(|r| r.resource_version.to_string())
    }

    /// The kube-shaped view, without data (name, namespace,
    /// resourceVersion, labels, annotations).
    pub fn state(&self) -> Vec<Arc<PartialObjectMeta<Secret>>> {
        let mut out = Vec::with_capacity(self.len());
        self.each(|namespace, name, r| {
            out.push(Arc::new(
                ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some(namespace.to_owned()),
                    resource_version: Some(r.resource_version.to_string()),
                    labels: Some((*r.labels).clone()),
                    annotations: Some(
                        r.annotations
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    ),
                    ..ObjectMeta::default()
                }
                .into_request_partial::<Secret>(),
            ));
        });
        out
    }
}
