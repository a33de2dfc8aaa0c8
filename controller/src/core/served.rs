//! What a gateway should serve, from its own configuration: each TLS server
//! of a `networking.istio.io` Gateway becomes the SDS resources Istio gives
//! the gateway's Envoy, the Secret each is read from, and the hosts it must
//! cover — so certificates cert-sync did not copy (a cert-manager Secret
//! referenced by `credentialName`) can be proved per pod like its own.
//!
//! ```text
//!  Gateway server { hosts, tls } ──expected──▶ ExpectedResource*
//!                                                 sds: kubernetes://<name> | kubernetes://<name>-cacert | file-cert:… | file-root:…
//!                                                 secret: <namespace>/<name> (None for files)
//!                                                 hosts (certificates only)
//! ```
//!
//! Istio's rules (1.28.10), mirrored here:
//! * a credential name becomes `credentials.ToResourceName(name)`: kept as is
//!   when it already names a type (`kubernetes://`, `kubernetes-gateway://`,
//!   `configmap://`), else prefixed `kubernetes://`
//!   (`pilot/pkg/model/credentials/resource.go:79-95`);
//! * `kubernetes://<name>` is read from the *proxy's* namespace,
//!   `kubernetes://<namespace>/<name>` names that namespace
//!   (`resource.go:101-119`), but istiod serves a `kubernetes://` Secret only
//!   from the proxy's own namespace, ReferenceGrant or not: any other is
//!   denied, and the server has no certificate (`pilot/pkg/xds/sds.go:291-317`);
//! * `credentialNames` (one RSA and one ECDSA certificate) win over
//!   `credentialName`; the CA for MUTUAL and OPTIONAL_MUTUAL is
//!   `caCertCredentialName`, else the first credential plus `-cacert`
//!   (`pilot/pkg/security/model/authentication.go:248-283`);
//! * without credentials, `serverCertificate`/`privateKey` are served as
//!   `file-cert:<cert>~<key>` and `caCertificates` as `file-root:<ca>`
//!   (`authentication_test.go:228,252`);
//! * PASSTHROUGH, AUTO_PASSTHROUGH and ISTIO_MUTUAL servers serve no
//!   certificate of their own (ISTIO_MUTUAL serves the mesh identity), nor
//!   does a `builtin://` credential (the pod's own `default`/`ROOTCA`,
//!   `authentication.go:71-76`): nothing to expect for them.

use super::model::ObjectRef;
use certsync_contract::sds;

/// Istio's `builtin://`: the gateway's own mesh identity.
const BUILTIN_PREFIX: &str = "builtin://";

/// `tls.mode` of a Gateway server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Passthrough,
    Simple,
    Mutual,
    AutoPassthrough,
    IstioMutual,
    OptionalMutual,
}

impl TlsMode {
    /// The mode as the Gateway spells it; `None` for an unknown one.
    pub fn parse(mode: &str) -> Option<TlsMode> {
        Some(match mode {
            "PASSTHROUGH" => TlsMode::Passthrough,
            "SIMPLE" => TlsMode::Simple,
            "MUTUAL" => TlsMode::Mutual,
            "AUTO_PASSTHROUGH" => TlsMode::AutoPassthrough,
            "ISTIO_MUTUAL" => TlsMode::IstioMutual,
            "OPTIONAL_MUTUAL" => TlsMode::OptionalMutual,
            _ => return None,
        })
    }

    fn verifies_clients(self) -> bool {
        matches!(self, TlsMode::Mutual | TlsMode::OptionalMutual)
    }

    fn serves_own_certificate(self) -> bool {
        matches!(
            self,
            TlsMode::Simple | TlsMode::Mutual | TlsMode::OptionalMutual
        )
    }
}

/// The TLS settings of one Gateway server, as far as placement goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub mode: TlsMode,
    pub credential_name: Option<String>,
    pub credential_names: Vec<String>,
    pub ca_cert_credential_name: Option<String>,
    pub server_certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_certificates: Option<String>,
}

/// What a resource holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// A certificate and key the gateway presents for the server's hosts.
    Certificate,
    /// A CA bundle it verifies clients with.
    ClientCa,
}

/// One SDS resource a gateway pod should have loaded for a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedResource {
    /// The name Envoy knows it by (what the filter reports).
    pub sds: String,
    pub holds: Holds,
    /// The Secret Istio reads it from; `None` for files in the pod.
    pub secret: Option<ObjectRef>,
    /// For a `<name>-cacert` CA: the Secret `<name>`, whose `ca.crt`/`cacert`
    /// Istio reads when no `<name>-cacert` Secret exists (cert-manager's
    /// layout; `pilot/pkg/credentials/kube/secrets.go:228-240`).
    pub fallback_secret: Option<ObjectRef>,
    /// The hosts the certificate must cover (empty for a CA).
    pub hosts: Vec<String>,
    /// Why Istio will not serve it, when it will not.
    pub refused: Option<&'static str>,
}

/// [`ExpectedResource::refused`]: a `kubernetes://` Secret outside the
/// gateway's namespace.
pub const CROSS_NAMESPACE_CREDENTIAL: &str = "istiod serves a credentialName Secret only from the gateway's own namespace (a ReferenceGrant does not apply to Istio Gateways)";

/// The SDS resources a server makes its gateway load. `proxy_namespace` is
/// the gateway pods' namespace (where a bare credential name is read).
pub fn expected(proxy_namespace: &str, tls: &ServerTls, hosts: &[String]) -> Vec<ExpectedResource> {
    if !tls.mode.serves_own_certificate() {
        return Vec::new();
    }
    let credentials: Vec<&str> = if tls.credential_names.is_empty() {
        tls.credential_name.as_deref().into_iter().collect()
    } else {
        tls.credential_names.iter().map(String::as_str).collect()
    };
    let credentials: Vec<&str> = credentials
        .into_iter()
        .filter(|c| !c.is_empty() && !c.starts_with(BUILTIN_PREFIX))
        .collect();
    let mut out = Vec::new();
    if let Some(first) = credentials.first() {
        for name in &credentials {
            out.push(from_credential(
                proxy_namespace,
                name,
                Holds::Certificate,
                hosts,
            ));
        }
        if tls.mode.verifies_clients() {
            let ca = match tls.ca_cert_credential_name.as_deref() {
                Some(ca) if !ca.is_empty() => ca.to_owned(),
                _ => format!("{first}{}", sds::CA_SUFFIX),
            };
            out.push(from_credential(proxy_namespace, &ca, Holds::ClientCa, &[]));
        }
        return out;
    }
    if let (Some(cert), Some(key)) = (&tls.server_certificate, &tls.private_key) {
        out.push(ExpectedResource {
            sds: sds::file_cert(cert, key),
            holds: Holds::Certificate,
            secret: None,
            fallback_secret: None,
            hosts: hosts.to_vec(),
            refused: None,
        });
        if let (true, Some(ca)) = (tls.mode.verifies_clients(), &tls.ca_certificates) {
            out.push(ExpectedResource {
                sds: sds::file_root(ca),
                holds: Holds::ClientCa,
                secret: None,
                fallback_secret: None,
                hosts: Vec::new(),
                refused: None,
            });
        }
    }
    out
}

/// `credentials.ToResourceName` and the Secret `ParseResourceName` reads.
fn from_credential(
    proxy_namespace: &str,
    name: &str,
    holds: Holds,
    hosts: &[String],
) -> ExpectedResource {
    let typed = [
        sds::KUBERNETES_PREFIX,
        sds::KUBERNETES_GATEWAY_PREFIX,
        "configmap://",
    ]
    .iter()
    .any(|p| name.starts_with(p));
    let resource = if typed {
        name.to_owned()
    } else {
        format!("{}{name}", sds::KUBERNETES_PREFIX)
    };
    let secret = if let Some(rest) = resource.strip_prefix(sds::KUBERNETES_PREFIX) {
        Some(match rest.split_once('/') {
            Some((namespace, name)) => ObjectRef::new(namespace, name),
            None => ObjectRef::new(proxy_namespace, rest),
        })
    } else {
        resource
            .strip_prefix(sds::KUBERNETES_GATEWAY_PREFIX)
            .and_then(|rest| rest.split_once('/'))
            .map(|(namespace, name)| ObjectRef::new(namespace, name))
    };
    let cross_namespace = resource.starts_with(sds::KUBERNETES_PREFIX)
        && secret
            .as_ref()
            .is_some_and(|s| s.namespace != proxy_namespace);
    let fallback_secret = match holds {
        Holds::ClientCa => secret.as_ref().and_then(|s| {
            s.name
                .strip_suffix(sds::CA_SUFFIX)
                .map(|base| ObjectRef::new(s.namespace.clone(), base))
        }),
        Holds::Certificate => None,
    };
    ExpectedResource {
        refused: cross_namespace.then_some(CROSS_NAMESPACE_CREDENTIAL),
        fallback_secret,
        sds: resource,
        holds,
        secret,
        hosts: match holds {
            Holds::Certificate => hosts.to_vec(),
            Holds::ClientCa => Vec::new(),
        },
    }
}

#[cfg(test)]
#[path = "served_tests.rs"]
mod tests;
