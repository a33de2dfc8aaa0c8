//! Warnings about what pods serve: expiring or expired certificates, and
//! resources in cert-sync's namespace of names that nothing publishes.

use super::{LivePod, Observation};
use crate::core::manifest::ManifestEntry;
use certsync_contract::{sds, Fingerprint};
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

/// Why a served certificate deserves a Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WarningKind {
    /// notAfter is within the expiry-warning window.
    Expiring,
    /// notAfter has passed: clients are failing.
    Expired,
    /// A pod serves a resource in cert-sync's namespace of names that no
    /// source publishes (left over after an unpublish, or written by hand).
    Drift,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Warning {
    pub kind: WarningKind,
    pub pod: String,
    pub resource: String,
    pub sha256: Fingerprint,
    /// Unix seconds.
    pub not_after: i64,
}

impl Warning {
    pub fn message(&self) -> String {
        let when = crate::core::manifest::rfc3339(self.not_after);
        let sha = self.sha256.short();
        match self.kind {
            WarningKind::Expiring => format!(
                "pod {} serves {} (sha256 {sha}) which expires at {when}",
                self.pod, self.resource
            ),
            WarningKind::Expired => format!(
                "pod {} serves {} (sha256 {sha}) which EXPIRED at {when}",
                self.pod, self.resource
            ),
            WarningKind::Drift => format!(
                "pod {} serves {} (sha256 {sha}, notAfter {when}) but no source publishes it",
                self.pod, self.resource
            ),
        }
    }
}

/// Expiry and drift over what live pods serve. `ours` says whether a
/// resource name is in cert-sync's namespace of names (so the pod's mesh
/// identity and hand-configured credentials are not judged).
pub fn warnings<E: Borrow<ManifestEntry>>(
    publications: &[E],
    pods: &[LivePod],
    observations: &BTreeMap<String, Observation>,
    ours: impl Fn(&str) -> bool,
    now: i64,
    expiry_warning_secs: i64,
) -> Vec<Warning> {
    // Nothing served is known: no set of every SDS name to build.
    let served = |p: &LivePod| {
        observations
            .get(&p.name)
            .is_some_and(|o| !o.certificates.is_empty())
    };
    if !pods.iter().any(served) {
        return Vec::new();
    }
    let published: BTreeSet<&str> = publications
        .iter()
        .map(Borrow::borrow)
        .flat_map(|p: &ManifestEntry| {
            std::iter::once(p.sds_resource.as_str()).chain(p.sds_ca_resource.as_deref())
        })
        .collect();
    let mut out = Vec::new();
    for pod in pods {
        let Some(obs) = observations.get(&pod.name) else {
            continue;
        };
        for (resource, served) in &obs.certificates {
            let is_published = published.contains(resource.as_str());
            if !is_published && !ours(resource) {
                continue;
            }
            let kind = if !is_published {
                Some(WarningKind::Drift)
            } else if served.not_after < now {
                Some(WarningKind::Expired)
            } else if served.not_after - now <= expiry_warning_secs {
                Some(WarningKind::Expiring)
            } else {
                None
            };
            if let Some(kind) = kind {
                out.push(Warning {
                    kind,
                    pod: pod.name.clone(),
                    resource: resource.clone(),
                    sha256: served.sha256,
                    not_after: served.not_after,
                });
            }
        }
    }
    out.sort();
    out
}

/// Whether an SDS resource is in the namespace of names cert-sync
/// publishes under `mode`: what drift is judged on. Credential-mode names
/// are `<namespace>.<name>` (a namespace has no dots, so the first dot
/// splits them); CA resources (`-cacert`) belong to their certificate.
pub fn is_ours(mode: &crate::core::model::Mode, certdir: &str, resource: &str) -> bool {
    use crate::core::model::Mode;
    match mode {
        Mode::Directory => resource
            .strip_prefix(sds::FILE_CERT_PREFIX)
            .is_some_and(|p| p.starts_with(&format!("{}/", certdir.trim_end_matches('/')))),
        Mode::Merged { secret_name } => {
            resource
                .strip_prefix(sds::FILE_CERT_PREFIX)
                .is_some_and(|p| {
                    p.starts_with(&format!(
                        "{}/",
                        crate::core::naming::merged_mount_dir(secret_name)
                    ))
                })
        }
        Mode::Credential => sds::credential_secret(resource)
            .and_then(|name| name.split_once('.'))
            .is_some_and(|(ns, name)| {
                !ns.is_empty()
                    && !name.is_empty()
                    && ns
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            }),
    }
}
