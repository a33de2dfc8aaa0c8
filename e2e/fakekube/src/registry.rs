//! Which resources the fake serves.
//!
//! The store is generic (objects are `serde_json::Value`), so the only
//! per-resource knowledge is kept here: the URL plural, the kind, whether it
//! is namespaced, whether it has a `/status` subresource, whether
//! `metadata.generation` is tracked, and which field selectors it accepts
//! (the real API server refuses unsupported field labels, so the fake does
//! too, to catch controller bugs early). Tests and the standalone binary can
//! register further custom resources at runtime.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A resource type: group/version/plural and what the server knows of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceType {
    /// API group; empty for the core group.
    #[serde(default)]
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// URL plural, e.g. `secrets`.
    pub plural: String,
    /// Kind, e.g. `Secret`.
    pub kind: String,
    /// Namespaced (true) or cluster-scoped (false).
    #[serde(default = "yes")]
    pub namespaced: bool,
    /// Has a `/status` subresource: writes to the main resource ignore
    /// `.status`, writes to `/status` change only `.status`.
    #[serde(default)]
    pub status_subresource: bool,
    /// Tracks `metadata.generation` (bumped when anything but metadata and
    /// status changes), as custom resources do.
    #[serde(default)]
    pub generation: bool,
    /// Field selector labels accepted besides `metadata.name` and
    /// `metadata.namespace` (dotted JSON paths into the object).
    #[serde(default)]
    pub field_selectors: Vec<String>,
}

fn yes() -> bool {
    true
}

impl ResourceType {
    /// A namespaced resource with no status subresource.
    pub fn new(group: &str, version: &str, kind: &str, plural: &str) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced: true,
            status_subresource: false,
            generation: false,
            field_selectors: Vec::new(),
        }
    }

    /// A custom resource: namespaced, `/status` subresource, generation.
    pub fn custom(group: &str, version: &str, kind: &str, plural: &str) -> Self {
        Self::new(group, version, kind, plural)
            .with_status()
            .with_generation()
    }

    /// Makes it cluster-scoped.
    pub fn cluster_scoped(mut self) -> Self {
        self.namespaced = false;
        self
    }

    /// Adds a `/status` subresource.
    pub fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self
    }

    /// Tracks `metadata.generation`.
    pub fn with_generation(mut self) -> Self {
        self.generation = true;
        self
    }

    /// Accepts these extra field selector labels.
    pub fn with_fields(mut self, fields: &[&str]) -> Self {
        self.field_selectors = fields.iter().map(|f| f.to_string()).collect();
        self
    }

    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The name used in logs, counters and the direct-store API:
    /// `secrets` for the core group, `leases.coordination.k8s.io` otherwise.
    pub fn id(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// True if `name` designates this resource (`plural` or `plural.group`).
    pub fn is_named(&self, name: &str) -> bool {
        name == self.plural || name == self.id()
    }

    /// True if `label` is an accepted field selector label.
    pub fn accepts_field(&self, label: &str) -> bool {
        label == "metadata.name"
            || (label == "metadata.namespace" && self.namespaced)
            || self.field_selectors.iter().any(|f| f == label)
    }
}

/// The set of served resources.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: Vec<Arc<ResourceType>>,
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Adds (or replaces, by group/version/plural) a resource type.
    pub fn register(&mut self, rt: ResourceType) -> Arc<ResourceType> {
        let rt = Arc::new(rt);
        self.types
            .retain(|t| !(t.group == rt.group && t.version == rt.version && t.plural == rt.plural));
        self.types.push(rt.clone());
        rt
    }

    /// All registered types, in registration order.
    pub fn types(&self) -> &[Arc<ResourceType>] {
        &self.types
    }

    /// Looks up by URL coordinates.
    pub fn by_path(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// Looks up by apiVersion and kind.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.kind == kind && t.api_version() == api_version)
            .cloned()
    }

    /// Looks up by `plural.group` first, then by a bare plural (the core
    /// group wins, so `events` is core v1 events).
    pub fn resolve(&self, name: &str) -> Option<Arc<ResourceType>> {
        if let Some(t) = self.types.iter().find(|t| t.id() == name) {
            return Some(t.clone());
        }
        let mut candidates = self.types.iter().filter(|t| t.plural == name);
        let first = candidates.next()?;
        if first.group.is_empty() {
            return Some(first.clone());
        }
        Some(
            candidates
                .find(|t| t.group.is_empty())
                .unwrap_or(first)
                .clone(),
        )
    }

    /// The registry cert-sync needs: core v1 secrets, configmaps, events,
    /// pods, namespaces, services; events.k8s.io/v1 events;
    /// coordination.k8s.io/v1 leases; policy/v1 poddisruptionbudgets (pod
    /// evictions are the `pods/eviction` subresource); Istio envoyfilters,
    /// gateways, wasmplugins; Gateway API gateways and referencegrants;
    /// and cert-sync's certmerges and vaultcertificates.
    pub fn kubernetes() -> Self {
        let mut r = Self::empty();
        r.register(ResourceType::new("", "v1", "Secret", "secrets").with_fields(&["type"]));
        r.register(ResourceType::new("", "v1", "ConfigMap", "configmaps"));
        r.register(
            ResourceType::new("", "v1", "Event", "events").with_fields(&[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ]),
        );
        r.register(
            ResourceType::new("", "v1", "Pod", "pods")
                .with_status()
                .with_fields(&[
                    "spec.nodeName",
                    "spec.restartPolicy",
                    "spec.schedulerName",
                    "spec.serviceAccountName",
                    "status.phase",
                    "status.podIP",
                    "status.nominatedNodeName",
                ]),
        );
        r.register(
            ResourceType::new("", "v1", "Namespace", "namespaces")
                .cluster_scoped()
                .with_status()
                .with_fields(&["status.phase"]),
        );
        r.register(ResourceType::new("", "v1", "Service", "services").with_status());
        r.register(
            ResourceType::new("events.k8s.io", "v1", "Event", "events").with_fields(&[
                "regarding.kind",
                "regarding.namespace",
                "regarding.name",
                "regarding.uid",
                "reason",
                "reportingController",
                "type",
            ]),
        );
        r.register(ResourceType::new(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
        ));
        r.register(
            ResourceType::new(
                "policy",
                "v1",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
            )
            .with_status()
            .with_generation(),
        );
        r.register(ResourceType::custom(
            "networking.istio.io",
            "v1alpha3",
            "EnvoyFilter",
            "envoyfilters",
        ));
        r.register(ResourceType::custom(
            "networking.istio.io",
            "v1",
            "Gateway",
            "gateways",
        ));
        r.register(ResourceType::custom(
            "gateway.networking.k8s.io",
            "v1",
            "Gateway",
            "gateways",
        ));
        r.register(
            ResourceType::new(
                "gateway.networking.k8s.io",
                "v1beta1",
                "ReferenceGrant",
                "referencegrants",
            )
            .with_generation(),
        );
        r.register(ResourceType::custom(
            "extensions.istio.io",
            "v1alpha1",
            "WasmPlugin",
            "wasmplugins",
        ));
        r.register(ResourceType::custom(
            "certsync.istio.io",
            "v1alpha1",
            "CertMerge",
            "certmerges",
        ));
        r.register(ResourceType::custom(
            "certsync.istio.io",
            "v1alpha1",
            "VaultCertificate",
            "vaultcertificates",
        ));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_prefers_core_for_bare_plural() {
        let r = Registry::kubernetes();
        assert_eq!(
            r.resolve("events").map(|t| t.group.clone()),
            Some(String::new())
        );
        assert_eq!(
            r.resolve("events.events.k8s.io").map(|t| t.group.clone()),
            Some("events.k8s.io".into())
        );
        assert_eq!(
            r.resolve("leases").map(|t| t.id()),
            Some("leases.coordination.k8s.io".into())
        );
        assert!(r.resolve("nope").is_none());
    }

    #[test]
    fn by_kind_uses_api_version() {
        let r = Registry::kubernetes();
        let t = r.by_kind("events.k8s.io/v1", "Event");
        assert_eq!(t.map(|t| t.group.clone()), Some("events.k8s.io".into()));
        assert!(r.by_kind("v2", "Secret").is_none());
    }
}
