//! Gateway configuration as the core reads it: Istio `Gateway`s, Kubernetes
//! Gateway API `Gateway`s and `ReferenceGrant`s, reduced to the fields that
//! decide which certificates a gateway serves (the runtime converts the
//! watched objects into these; `referenced` turns them into expectations).
//!
//! A Gateway API listener is translated the way istiod translates it into an
//! Istio server (1.28.10, `pilot/pkg/config/kube/gateway/conversion.go`):
//! * `tls.mode` defaults to `Terminate` (SIMPLE; the option
//!   `gateway.istio.io/tls-terminate-mode` may make it MUTUAL,
//!   OPTIONAL_MUTUAL, ISTIO_SIMPLE (the pod's own certificate) or
//!   ISTIO_MUTUAL); `Passthrough` serves no certificate (`:2256-2352`);
//! * every `certificateRef` must be a core `Secret`; its namespace defaults
//!   to the Gateway's and the resource is
//!   `kubernetes-gateway://<namespace>/<name>` (`:2356-2395`);
//! * a ref to another namespace counts only when a `ReferenceGrant` in that
//!   namespace allows `gateway.networking.k8s.io/Gateway` from the Gateway's
//!   namespace to that Secret (or to all Secrets); a refused ref is dropped
//!   and the listener reports `RefNotPermitted` (`:2289-2305`);
//! * at most two refs (one RSA, one ECDSA); more is an invalid listener
//!   (`:2280-2285`).

use super::model::ObjectRef;
use super::served::{ServerTls, TlsMode};
use certsync_contract::sds;
use std::collections::BTreeMap;

/// The Gateway API group.
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";
/// The label Istio puts on the pods it deploys for a Gateway API Gateway
/// (`manifests/charts/istio-control/istio-discovery/files/kube-gateway.yaml:45-71`).
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// The listener option Istio reads for a terminating listener's TLS mode.
pub const TERMINATE_MODE_OPTION: &str = "gateway.istio.io/tls-terminate-mode";

/// Which API a gateway object belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GatewayKind {
    /// `networking.istio.io/v1` Gateway.
    Istio,
    /// `gateway.networking.k8s.io/v1` Gateway.
    GatewayApi,
}

impl GatewayKind {
    /// How logs, status rows and the announce key name the kind.
    pub fn label(self) -> &'static str {
        match self {
            GatewayKind::Istio => "gateway",
            GatewayKind::GatewayApi => "k8s-gateway",
        }
    }

    /// `apiVersion` of the object (Events point at it).
    pub fn api_version(self) -> &'static str {
        match self {
            GatewayKind::Istio => "networking.istio.io/v1",
            GatewayKind::GatewayApi => "gateway.networking.k8s.io/v1",
        }
    }
}

/// One gateway object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GatewayRef {
    pub kind: GatewayKind,
    pub key: ObjectRef,
}

impl std::fmt::Display for GatewayRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            GatewayKind::Istio => write!(f, "Gateway {}", self.key),
            GatewayKind::GatewayApi => write!(f, "Gateway {} ({GATEWAY_API_GROUP})", self.key),
        }
    }
}

/// A `networking.istio.io` Gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IstioGateway {
    pub key: ObjectRef,
    /// `spec.selector`: the gateway pods it configures.
    pub selector: BTreeMap<String, String>,
    pub servers: Vec<IstioServer>,
}

/// One `spec.servers[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IstioServer {
    /// `name`, else `<port.name>` or the index: how status rows name it.
    pub label: String,
    pub hosts: Vec<String>,
    pub tls: Option<ServerTls>,
}

/// A Gateway API Gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiGateway {
    pub key: ObjectRef,
    pub class: String,
    pub listeners: Vec<Listener>,
}

/// One `spec.listeners[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    /// `hostname`; `None` means any host.
    pub hostname: Option<String>,
    /// `tls`; `None` for a plaintext listener.
    pub tls: Option<ListenerTls>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListenerTls {
    /// `Terminate` (also when unset) or `Passthrough`.
    pub mode: Option<String>,
    pub certificate_refs: Vec<SecretObjectRef>,
    pub options: BTreeMap<String, String>,
}

/// A `certificateRefs[]` entry (`SecretObjectReference`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretObjectRef {
    /// Empty is the core group.
    pub group: String,
    /// Empty means `Secret`.
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

/// A `ReferenceGrant` (`gateway.networking.k8s.io/v1beta1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceGrant {
    /// Where it lives: the namespace it grants access into.
    pub namespace: String,
    pub from: Vec<GrantFrom>,
    pub to: Vec<GrantTo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantFrom {
    pub group: String,
    pub kind: String,
    pub namespace: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantTo {
    pub group: String,
    pub kind: String,
    /// `None` grants every object of the kind.
    pub name: Option<String>,
}

/// Whether a Gateway in `from_namespace` may use Secret `secret`.
pub fn secret_allowed(grants: &[ReferenceGrant], from_namespace: &str, secret: &ObjectRef) -> bool {
    if from_namespace == secret.namespace {
        return true;
    }
    grants
        .iter()
        .filter(|g| g.namespace == secret.namespace)
        .any(|g| {
            g.from.iter().any(|f| {
                f.group == GATEWAY_API_GROUP && f.kind == "Gateway" && f.namespace == from_namespace
            }) && g.to.iter().any(|t| {
                t.group.is_empty()
                    && t.kind == "Secret"
                    && t.name.as_deref().is_none_or(|n| n == secret.name)
            })
        })
}

/// Why a listener's certificate reference is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRef {
    pub secret: ObjectRef,
    pub reason: &'static str,
    pub message: String,
}

/// What istiod makes of a listener: the Istio server TLS (when the listener
/// serves a certificate of its own) and the refs it dropped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListenerTranslation {
    pub tls: Option<ServerTls>,
    pub refused: Vec<RefusedRef>,
}

/// Istio's translation of `listener` of Gateway `gateway`.
pub fn translate(
    gateway: &ObjectRef,
    listener: &Listener,
    grants: &[ReferenceGrant],
) -> ListenerTranslation {
    use super::reasons;
    let Some(tls) = &listener.tls else {
        return ListenerTranslation::default();
    };
    if tls.mode.as_deref().is_some_and(|m| m != "Terminate") {
        return ListenerTranslation::default();
    }
    let mode = match tls.options.get(TERMINATE_MODE_OPTION).map(String::as_str) {
        Some("MUTUAL") => TlsMode::Mutual,
        Some("OPTIONAL_MUTUAL") => TlsMode::OptionalMutual,
        // The pod's own mesh certificate: nothing to expect.
        Some("ISTIO_SIMPLE" | "ISTIO_MUTUAL") => return ListenerTranslation::default(),
        _ => TlsMode::Simple,
    };
    let mut out = ListenerTranslation::default();
    let mut names = Vec::new();
    for r in &tls.certificate_refs {
        let secret = ObjectRef::new(
            r.namespace
                .clone()
                .unwrap_or_else(|| gateway.namespace.clone()),
            r.name.clone(),
        );
        let is_secret = r.group.is_empty() && (r.kind.is_empty() || r.kind == "Secret");
        if !is_secret {
            out.refused.push(RefusedRef {
                message: format!(
                    "listener {}: certificateRef {}/{} {secret} is not a Secret; Istio serves only Secrets",
                    listener.name, r.group, r.kind
                ),
                secret,
                reason: reasons::INVALID_REFERENCE,
            });
            continue;
        }
        if !secret_allowed(grants, &gateway.namespace, &secret) {
            out.refused.push(RefusedRef {
                message: format!(
                    "listener {}: certificateRef {secret} is in another namespace and no ReferenceGrant there allows Gateways from {:?}; Istio does not serve it",
                    listener.name, gateway.namespace
                ),
                secret,
                reason: reasons::REF_NOT_PERMITTED,
            });
            continue;
        }
        names.push(sds::gateway_credential(&secret.namespace, &secret.name));
    }
    if tls.certificate_refs.len() > 2 {
        // istiod refuses the whole listener.
        let refused = names.drain(..).filter_map(|n| {
            let (namespace, name) = n.strip_prefix(sds::KUBERNETES_GATEWAY_PREFIX)?.split_once('/')?;
            Some(RefusedRef {
                secret: ObjectRef::new(namespace, name),
                reason: reasons::INVALID_REFERENCE,
                message: format!(
                    "listener {}: {} certificateRefs; Istio serves at most two (one RSA, one ECDSA) and refuses the listener",
                    listener.name,
                    tls.certificate_refs.len()
                ),
            })
        });
        out.refused.extend(refused.collect::<Vec<_>>());
        return out;
    }
    if names.is_empty() {
        return out;
    }
    out.tls = Some(ServerTls {
        mode,
        credential_name: None,
        credential_names: names,
        ca_cert_credential_name: None,
        server_certificate: None,
        private_key: None,
        ca_certificates: None,
    });
    out
}

#[cfg(test)]
#[path = "gateways_tests.rs"]
mod tests;
