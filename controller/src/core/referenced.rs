//! Certificates a gateway references natively — a cert-manager Secret named
//! by an Istio Gateway's `credentialName`, a Gateway API listener's
//! `certificateRefs` (across namespaces through a `ReferenceGrant`) — proved
//! per pod like the ones cert-sync publishes, and checked before Istio
//! serves them. cert-sync writes nothing for them: it predicts what each
//! gateway pod must load (the SDS resource name and the leaf's SHA-256 from
//! the Secret) and lets rollout verification compare that with the reports.
//!
//! ```text
//!  IstioGateway* ─┐                          ┌─▶ Refusal* (RefNotPermitted, InvalidReference)
//!  ApiGateway*   ─┼─▶ references ────────────┤
//!  ReferenceGrant*┘                          └─▶ Reference* (gateway, server, pods, SDS name,
//!                                                    Secret, hosts)
//!  referenced Secret data ─▶ check_secret ─▶ SecretCheck (summary with SANs | unservable)
//!                                                    │
//!  Reference* + SecretCheck* + copied SDS names ─▶ assemble ─▶ ManifestEntry* (rollout input)
//!                                                              Refusal* (HostNotCovered, Expired,
//!                                                              NotFound, KeyMismatch, ... on the Gateway)
//! ```
//!
//! What Istio would serve is what is expected, findings or not: an expired
//! certificate, or one that misses a host, is served by Istio all the same
//! (`pilot/pkg/xds/sds.go` only logs), so it is both a rollout row and a
//! Warning. A Secret Istio cannot serve (no key, a key that does not match,
//! garbage) is only a Warning: no pod will load it, there is nothing to
//! prove. A certificate cert-sync also publishes (same SDS name) is one
//! row, its publication's; only the host check is added.
//!
//! Out of scope here: `file-cert:` servers (files in the pod: no Secret to
//! predict from) and client CA bundles (`-cacert`), which carry no leaf.

use super::gateways::{self, ApiGateway, GatewayKind, GatewayRef, IstioGateway, ReferenceGrant};
use super::hosts;
use super::manifest::{rfc3339, ManifestEntry, TargetRef};
use super::model::{Blob, ObjectRef, SourceData};
use super::reasons::{self, Refusal, Subject};
use super::served::{self, ExpectedResource, Holds};
use certsync_contract::validate::check_window;
use certsync_contract::{cert, key, CertSummary};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Which gateways count: those whose pods cert-sync verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The gateway pods' namespace: where a bare `credentialName` is read
    /// and where Gateway API Gateways (whose pods Istio deploys beside
    /// them) are considered.
    pub gateway_namespace: String,
    /// `gatewayClassName`s Istio implements (`istio` by default).
    pub classes: Vec<String>,
}

impl Scope {
    /// Whether a Gateway API Gateway's pods are ones cert-sync verifies.
    pub fn covers(&self, gateway: &ApiGateway) -> bool {
        gateway.key.namespace == self.gateway_namespace && self.classes.contains(&gateway.class)
    }
}

/// One certificate one server (or listener) of one gateway makes its pods load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub gateway: GatewayRef,
    /// The server or listener, as status rows name it.
    pub server: String,
    /// Labels of the pods that load it.
    pub pods: BTreeMap<String, String>,
    pub resource: ExpectedResource,
}

/// Every certificate the gateways in `scope` reference, and the references
/// Istio will not serve.
pub fn references(
    scope: &Scope,
    istio: &[IstioGateway],
    api: &[ApiGateway],
    grants: &[ReferenceGrant],
) -> (Vec<Reference>, Vec<Refusal>) {
    let mut refs = Vec::new();
    let mut refusals = Vec::new();
    for gw in istio {
        let gateway = GatewayRef {
            kind: GatewayKind::Istio,
            key: gw.key.clone(),
        };
        for server in &gw.servers {
            let Some(tls) = &server.tls else { continue };
            for resource in served::expected(&scope.gateway_namespace, tls, &server.hosts) {
                if resource.holds != Holds::Certificate || resource.secret.is_none() {
                    continue;
                }
                if let Some(why) = resource.refused {
                    refusals.push(Refusal::new(
                        Subject::Gateway(gateway.clone()),
                        reasons::REF_NOT_PERMITTED,
                        format!("server {}: {}: {why}", server.label, resource.sds),
                    ));
                    continue;
                }
                refs.push(Reference {
                    gateway: gateway.clone(),
                    server: server.label.clone(),
                    pods: gw.selector.clone(),
                    resource,
                });
            }
        }
    }
    for gw in api.iter().filter(|gw| scope.covers(gw)) {
        let gateway = GatewayRef {
            kind: GatewayKind::GatewayApi,
            key: gw.key.clone(),
        };
        let pods = BTreeMap::from([(gateways::GATEWAY_NAME_LABEL.to_owned(), gw.key.name.clone())]);
        for listener in &gw.listeners {
            let translated = gateways::translate(&gw.key, listener, grants);
            refusals.extend(
                translated
                    .refused
                    .into_iter()
                    .map(|r| Refusal::new(Subject::Gateway(gateway.clone()), r.reason, r.message)),
            );
            let Some(tls) = translated.tls else { continue };
            let hosts: Vec<String> = listener.hostname.iter().cloned().collect();
            for resource in served::expected(&scope.gateway_namespace, &tls, &hosts) {
                if resource.holds == Holds::Certificate {
                    refs.push(Reference {
                        gateway: gateway.clone(),
                        server: listener.name.clone(),
                        pods: pods.clone(),
                        resource,
                    });
                }
            }
        }
    }
    (refs, refusals)
}

/// The Secrets `refs` read.
pub fn secrets(refs: &[Reference]) -> BTreeSet<ObjectRef> {
    refs.iter()
        .filter_map(|r| r.resource.secret.clone())
        .collect()
}

/// A Secret's data the way istiod reads a gateway credential: `cert`/`key`
/// win over `tls.crt`/`tls.key`, `cacert` over `ca.crt`
/// (`pilot/pkg/credentials/kube/secrets.go:228-361`).
pub fn istio_layout(mut data: BTreeMap<String, Blob>) -> SourceData {
    let mut pick = |generic: &str, tls: &str| {
        let g = data.remove(generic);
        let t = data.remove(tls);
        g.or(t)
    };
    SourceData {
        cert_pem: pick("cert", "tls.crt"),
        key_pem: pick("key", "tls.key"),
        ca_pem: pick("cacert", "ca.crt"),
    }
}

/// A referenced Secret, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretCheck {
    /// Istio can serve it: its leaf (SANs kept, for the host check) and
    /// whether its chain is out of order (served all the same).
    Servable {
        summary: Arc<CertSummary>,
        chain_in_order: bool,
    },
    /// No pod will load it.
    Unservable {
        reason: &'static str,
        message: String,
    },
    /// There is no such Secret.
    Missing,
}

/// Checks a referenced Secret's data. The validity window is left to
/// [`assemble`] (it moves with the clock, not the data).
pub fn check_secret(data: &SourceData) -> SecretCheck {
    let unservable = |reason, message: String| SecretCheck::Unservable { reason, message };
    let bytes = |b: &Option<Blob>| b.as_ref().and_then(|b| b.bytes().map(<[u8]>::to_vec));
    let (Some(cert_pem), Some(key_pem)) = (bytes(&data.cert_pem), bytes(&data.key_pem)) else {
        return unservable(
            reasons::MISSING_KEY,
            "the Secret has no certificate and key (tls.crt/tls.key or cert/key)".to_owned(),
        );
    };
    let summary = match cert::summarize_chain(&cert_pem) {
        Ok(s) => s,
        Err(e) => return unservable(reasons::MALFORMED_CERTIFICATE, e.to_string()),
    };
    if let Err(e) = key::check_matches(&cert_pem, &key_pem) {
        let invalid = match e {
            key::KeyError::Certificate(c) => certsync_contract::validate::Invalid::Certificate(c),
            other => certsync_contract::validate::Invalid::Key(other),
        };
        return unservable(reasons::for_invalid(invalid.kind()), invalid.to_string());
    }
    SecretCheck::Servable {
        chain_in_order: cert::chain_in_order(&cert_pem).unwrap_or(false),
        summary: Arc::new(summary),
    }
}

/// Rollout entries and findings for `refs` at `now` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assembled {
    /// One per SDS resource and pod set, sorted by source then target.
    pub entries: Vec<ManifestEntry>,
    pub refusals: Vec<Refusal>,
}

/// What `refs` amount to given the checked Secrets. `copied`: SDS names
/// cert-sync publishes itself (their rows are the publications').
pub fn assemble(
    refs: &[Reference],
    checks: &BTreeMap<ObjectRef, SecretCheck>,
    copied: &BTreeSet<&str>,
    now: i64,
) -> Assembled {
    let mut out = Assembled::default();
    let mut groups: BTreeMap<(&str, &BTreeMap<String, String>), Vec<&Reference>> = BTreeMap::new();
    for r in refs {
        groups
            .entry((r.resource.sds.as_str(), &r.pods))
            .or_default()
            .push(r);
    }
    let mut told: BTreeSet<(GatewayRef, &'static str, String)> = BTreeSet::new();
    let mut tell = |out: &mut Assembled, gateway: &GatewayRef, reason, message: String| {
        if told.insert((gateway.clone(), reason, message.clone())) {
            out.refusals.push(Refusal::new(
                Subject::Gateway(gateway.clone()),
                reason,
                message,
            ));
        }
    };
    for ((sds, pods), group) in groups {
        let Some(secret) = group[0].resource.secret.as_ref() else {
            continue;
        };
        let summary = match checks.get(secret) {
            None | Some(SecretCheck::Missing) => {
                for r in &group {
                    let message = format!("server {}: Secret {secret} ({sds}) does not exist: Istio serves no certificate there", r.server);
                    tell(&mut out, &r.gateway, reasons::NOT_FOUND, message);
                }
                continue;
            }
            Some(SecretCheck::Unservable { reason, message }) => {
                for r in &group {
                    let message = format!(
                        "server {}: Secret {secret} ({sds}) cannot be served: {message}",
                        r.server
                    );
                    tell(&mut out, &r.gateway, reason, message);
                }
                continue;
            }
            Some(SecretCheck::Servable {
                summary,
                chain_in_order,
            }) => {
                for r in &group {
                    let about = |what: String| {
                        format!("server {}: Secret {secret} ({sds}) {what}", r.server)
                    };
                    if let Err(e) = check_window(summary, now) {
                        tell(
                            &mut out,
                            &r.gateway,
                            reasons::for_invalid(e.kind()),
                            about(format!("is served with {e}")),
                        );
                    }
                    if !chain_in_order {
                        tell(&mut out, &r.gateway, reasons::CHAIN_ORDER, about("has a chain out of order (leaf first, each issued by the next); clients may fail to build a path".to_owned()));
                    }
                    let missed: Vec<String> = hosts::uncovered(&summary.sans, &r.resource.hosts)
                        .into_iter()
                        .map(|(host, error)| match error {
                            Some(e) => e.to_string(),
                            None => host.to_owned(),
                        })
                        .collect();
                    if !missed.is_empty() {
                        tell(
                            &mut out,
                            &r.gateway,
                            reasons::HOST_NOT_COVERED,
                            about(format!(
                                "does not cover {}: TLS clients of {} fail the handshake",
                                missed.join(", "),
                                if missed.len() == 1 { "it" } else { "them" }
                            )),
                        );
                    }
                }
                summary
            }
        };
        if copied.contains(sds) {
            continue;
        }
        let mut by: Vec<String> = group
            .iter()
            .map(|r| format!("{} {}", r.gateway, r.server))
            .collect();
        by.sort();
        by.dedup();
        out.entries.push(ManifestEntry {
            source: secret.to_string(),
            target: TargetRef::Referenced {
                by,
                pods: pods.clone(),
            },
            sds_resource: sds.to_owned(),
            sds_ca_resource: None,
            sha256: summary.sha256,
            serial: summary.serial.clone(),
            not_after: rfc3339(summary.not_after),
            kept: None,
            published_at: None,
            converged_at: None,
            state: None,
            rollout: BTreeMap::new(),
        });
    }
    out.entries.sort_by(|a, b| {
        (a.source.as_str(), a.sds_resource.as_str())
            .cmp(&(b.source.as_str(), b.sds_resource.as_str()))
    });
    out
}

#[cfg(test)]
#[path = "referenced_tests.rs"]
mod tests;
