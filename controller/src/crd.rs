//! The `CertMerge` custom resource (certsync.istio.io/v1alpha1), a drop-in
//! for certmerge-operator's: one merged Secret in the gateway namespace built
//! from Secrets chosen by label selector per namespace and by explicit list.
//! Its CRD is generated from these types (`crds/certmerge.yaml`, checked in;
//! `tests/crd.rs` writes it as YAML and fails when it is stale).

pub mod vault;

pub use vault::VaultCertificate;

use crate::core::conditions;
use crate::core::model::{self, LabelExpression, ObjectRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "certsync.istio.io",
    version = "v1alpha1",
    kind = "CertMerge",
    namespaced,
    status = "CertMergeStatus",
    shortname = "certmerge",
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CertMergeSpec {
    /// Name of the merged Secret to write. Outside the gateway namespace it
    /// must start with `<namespace of this CertMerge>.`.
    pub name: String,
    /// Namespace of the merged Secret; only the gateway namespace is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Secrets selected by labels, per namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selector: Vec<SecretSelector>,
    /// Secrets named explicitly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_list: Vec<SecretReference>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretSelector {
    pub label_selector: LabelSelector,
    pub namespace: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SecretReference {
    pub name: String,
    pub namespace: String,
}

/// Written by the controller through the status subresource.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertMergeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the merged Secret holds every valid member) and `RolledOut`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// `<namespace>/<name>` of the source Secret.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// `Published`, or the reason it is not.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl CertMerge {
    /// The core's view of this object; `gateway_namespace` fills an empty target namespace.
    pub fn to_model(&self, gateway_namespace: &str) -> model::CertMerge {
        let namespace = self.metadata.namespace.clone().unwrap_or_default();
        model::CertMerge {
            key: ObjectRef::new(namespace, self.metadata.name.clone().unwrap_or_default()),
            created: self
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(0, |t| t.0.as_second()),
            target: ObjectRef::new(
                self.spec
                    .namespace
                    .clone()
                    .unwrap_or_else(|| gateway_namespace.to_owned()),
                self.spec.name.clone(),
            ),
            selectors: self
                .spec
                .selector
                .iter()
                .map(|s| model::MergeSelector {
                    label_selector: label_selector(&s.label_selector),
                    namespace: s.namespace.clone(),
                })
                .collect(),
            secrets: self
                .spec
                .secret_list
                .iter()
                .map(|s| ObjectRef::new(s.namespace.clone(), s.name.clone()))
                .collect(),
        }
    }
}

/// Kubernetes' selector type into the core's.
pub fn label_selector(selector: &LabelSelector) -> model::LabelSelector {
    model::LabelSelector {
        match_labels: selector.match_labels.clone().unwrap_or_default(),
        match_expressions: selector
            .match_expressions
            .iter()
            .flatten()
            .map(|e| LabelExpression {
                key: e.key.clone(),
                operator: e.operator.clone(),
                values: e.values.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

/// The CRD status for a computed merge status. Conditions keep their
/// `lastTransitionTime` while their status does not change.
pub fn status_from(
    computed: &crate::core::merge_status::MergeStatus,
    rolled_out: &crate::core::merge_status::RolledOut,
    generation: Option<i64>,
    previous: &CertMergeStatus,
    now: i64,
) -> CertMergeStatus {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let stamps = previous.conditions.iter().map(|c| conditions::Stamp {
        type_: &c.type_,
        status: &c.status,
        since: c.last_transition_time.0.as_second(),
    });
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        let since = conditions::transition_time(stamps.clone(), type_, status, now);
        let since =
            Time(jiff::Timestamp::from_second(since).unwrap_or(jiff::Timestamp::UNIX_EPOCH));
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: since,
            observed_generation: generation,
        }
    };
    let ready = if computed.ready {
        conditions::TRUE
    } else {
        conditions::FALSE
    };
    CertMergeStatus {
        observed_generation: generation,
        conditions: vec![
            condition(
                conditions::READY,
                ready,
                &computed.reason,
                &computed.message,
            ),
            condition(
                conditions::ROLLED_OUT,
                rolled_out.status,
                &rolled_out.reason,
                &rolled_out.message,
            ),
        ],
        members: computed
            .members
            .iter()
            .map(|m| MemberStatus {
                source: m.source.to_string(),
                sha256: m.sha256.clone(),
                not_after: m.not_after.map(crate::core::manifest::rfc3339),
                state: m.state.clone(),
                message: m.message.clone(),
            })
            .collect(),
    }
}

/// Equal but for the conditions' transition times.
pub fn same_status(a: &CertMergeStatus, b: &CertMergeStatus) -> bool {
    let strip = |s: &CertMergeStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time =
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(a) == strip(b)
}
