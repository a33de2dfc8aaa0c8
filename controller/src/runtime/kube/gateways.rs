//! The gateway configuration cert-sync reads to know what gateways should
//! serve: Istio `Gateway`s (`networking.istio.io/v1`), Gateway API
//! `Gateway`s (`gateway.networking.k8s.io/v1`) and `ReferenceGrant`s
//! (`v1beta1`), watched cluster-wide and converted into `core::gateways`'
//! plain types. Only the fields that decide placement are read; the rest of
//! each object is ignored (the view types below are that subset of the
//! published schemas, not copies of them).
//!
//! The Gateway API kinds are watched only where their CRDs are installed
//! (checked once at start through discovery): a cluster without them would
//! otherwise see a failing watch every few seconds. The `gateway-api` crate
//! (kube-rs/gateway-api-rs 0.22) would give full types, but it needs kube 4
//! and k8s-openapi 0.28 (cert-sync is on kube 5 / k8s-openapi 0.29): two
//! kube stacks for a dozen fields.

use super::backoff::WatchBackoff;
use crate::core::gateways::{
    ApiGateway, GrantFrom, GrantTo, IstioGateway, IstioServer, Listener, ListenerTls,
    ReferenceGrant, SecretObjectRef,
};
use crate::core::model::ObjectRef;
use crate::core::served::{ServerTls, TlsMode};
use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// Watched gateway configuration, held converted: the core's few fields per
/// object, not the objects (at 1,000 Gateways the JSON objects were most of
/// the verify-only controller's extra memory, and were converted again on
/// every pass).
#[derive(Clone)]
pub struct GatewayStores {
    istio: Converted<IstioGateway>,
    api: Option<Converted<ApiGateway>>,
    grants: Option<Converted<ReferenceGrant>>,
}

/// What the stores hold.
#[derive(Debug, Clone, Default)]
pub struct GatewaySnapshot {
    pub istio: Vec<IstioGateway>,
    pub api: Vec<ApiGateway>,
    pub grants: Vec<ReferenceGrant>,
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

impl GatewayStores {
    /// Starts the watches; every event pokes `changed`.
    pub async fn watch(client: &Client, changed: &Arc<Notify>) -> (Self, Vec<JoinHandle<()>>) {
        use crate::core::gateways::GATEWAY_API_GROUP;
        let mut tasks = Vec::new();
        let istio = spawn(
            client,
            resource("networking.istio.io", "v1", "Gateway", "gateways"),
            istio_gateway,
            changed,
            &mut tasks,
        );
        let (mut api, mut grants) = (None, None);
        match kube::discovery::group(client, GATEWAY_API_GROUP).await {
            Ok(_) => {
                api = Some(spawn(
                    client,
                    resource(GATEWAY_API_GROUP, "v1", "Gateway", "gateways"),
                    api_gateway,
                    changed,
                    &mut tasks,
                ));
                grants = Some(spawn(
                    client,
                    resource(
                        GATEWAY_API_GROUP,
                        "v1beta1",
                        "ReferenceGrant",
                        "referencegrants",
                    ),
                    reference_grant,
                    changed,
                    &mut tasks,
                ));
            }
            Err(e) => {
                tracing::info!(error = %e, "Gateway API CRDs not found: verifying Istio Gateways only (restart cert-sync after installing them)")
            }
        }
        (GatewayStores { istio, api, grants }, tasks)
    }

    /// Waits until every gateway watch has listed once: a first pass
    /// without them would drop every referenced row from the manifest, and
    /// their return would be announced as new rollouts.
    pub async fn wait_ready(&self) -> Result<(), StoreError> {
        self.istio.wait_ready().await?;
        if let Some(api) = &self.api {
            api.wait_ready().await?;
        }
        if let Some(grants) = &self.grants {
            grants.wait_ready().await?;
        }
        Ok(())
    }

    /// Every watched object (objects that do not parse are left out, with a
    /// debug line: istiod rejects them too).
    pub fn snapshot(&self) -> GatewaySnapshot {
        GatewaySnapshot {
            istio: self.istio.values(),
            api: self.api.as_ref().map_or_else(Vec::new, Converted::values),
            grants: self
                .grants
                .as_ref()
                .map_or_else(Vec::new, Converted::values),
        }
    }
}

/// Why the gateway watches never became ready.
#[derive(Debug, thiserror::Error)]
#[error("a gateway watch stopped before it listed")]
pub struct StoreError;

type Objects<T> = BTreeMap<(String, String), T>;
/// The live objects, and a relist's objects until it completes.
type Shared<T> = Arc<RwLock<(Objects<T>, Option<Objects<T>>)>>;

/// A watch-fed map of converted objects, relisted as kube's reflector does
/// (a relist's objects replace the old set when it is complete).
struct Converted<T> {
    state: Shared<T>,
    ready: watch::Receiver<bool>,
}

impl<T> Clone for Converted<T> {
    fn clone(&self) -> Self {
        Converted {
            state: Arc::clone(&self.state),
            ready: self.ready.clone(),
        }
    }
}

impl<T: Clone> Converted<T> {
    fn values(&self) -> Vec<T> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.0.values().cloned().collect()
    }

    async fn wait_ready(&self) -> Result<(), StoreError> {
        let mut ready = self.ready.clone();
        ready
            .wait_for(|r| *r)
            .await
            .map(|_| ())
            .map_err(|_| StoreError)
    }
}

/// Starts a watch of `ar` into a store of `convert`ed objects.
fn spawn<T: Clone + Send + Sync + 'static>(
    client: &Client,
    ar: ApiResource,
    convert: fn(&DynamicObject) -> Option<T>,
    changed: &Arc<Notify>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Converted<T> {
    let state: Shared<T> = Arc::default();
    let (ready_tx, ready) = watch::channel(false);
    let api = Api::<DynamicObject>::all_with(client.clone(), &ar);
    let stream = watcher(api, watcher::Config::default()).backoff(WatchBackoff::default());
    let changed = Arc::clone(changed);
    let kind = format!("{}/{}", ar.api_version, ar.kind);
    let writer = Arc::clone(&state);
    tasks.push(tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    let mut state = writer.write().unwrap_or_else(PoisonError::into_inner);
                    let (live, relist) = &mut *state;
                    match event {
                        watcher::Event::Init => *relist = Some(BTreeMap::new()),
                        watcher::Event::InitApply(o) => {
                            if let (Some(relist), Some(v)) = (relist.as_mut(), convert(&o)) {
                                relist.insert(object_key(&o), v);
                            }
                        }
                        watcher::Event::InitDone => {
                            if let Some(fresh) = relist.take() {
                                *live = fresh;
                            }
                            let _ = ready_tx.send(true);
                        }
                        watcher::Event::Apply(o) => match convert(&o) {
                            Some(v) => {
                                live.insert(object_key(&o), v);
                            }
                            None => {
                                live.remove(&object_key(&o));
                            }
                        },
                        watcher::Event::Delete(o) => {
                            live.remove(&object_key(&o));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, %kind, "watch failed; relisting with backoff")
                }
            }
            changed.notify_one();
        }
    }));
    Converted { state, ready }
}

fn object_key(o: &DynamicObject) -> (String, String) {
    (o.namespace().unwrap_or_default(), o.name_any())
}

fn key(o: &DynamicObject) -> ObjectRef {
    ObjectRef::new(o.namespace().unwrap_or_default(), o.name_any())
}

fn spec<T: for<'de> Deserialize<'de>>(o: &DynamicObject) -> Option<T> {
    match serde_json::from_value(o.data.get("spec").cloned().unwrap_or_default()) {
        Ok(spec) => Some(spec),
        Err(e) => {
            tracing::debug!(object = %key(o), error = %e, "skipping a gateway object that does not parse");
            None
        }
    }
}

// The subset of `networking.istio.io/v1` Gateway read here.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct IstioSpec {
    selector: BTreeMap<String, String>,
    servers: Vec<IstioServerSpec>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct IstioServerSpec {
    name: Option<String>,
    port: Option<PortSpec>,
    hosts: Vec<String>,
    tls: Option<IstioTlsSpec>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PortSpec {
    name: Option<String>,
    number: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct IstioTlsSpec {
    mode: Option<String>,
    credential_name: Option<String>,
    credential_names: Vec<String>,
    ca_cert_credential_name: Option<String>,
    server_certificate: Option<String>,
    private_key: Option<String>,
    ca_certificates: Option<String>,
}

fn istio_gateway(o: &DynamicObject) -> Option<IstioGateway> {
    let s: IstioSpec = spec(o)?;
    let servers = s
        .servers
        .into_iter()
        .enumerate()
        .map(|(i, server)| {
            let port = server.port.unwrap_or_default();
            let label = server
                .name
                .or(port.name)
                .or(port.number.map(|n| format!("port {n}")))
                .unwrap_or_else(|| format!("servers[{i}]"));
            let tls = server.tls.map(|t| ServerTls {
                // Istio's default mode is SIMPLE (an unknown one is rejected
                // by the CRD schema; treated as serving nothing here).
                mode: match t.mode.as_deref() {
                    None => Some(TlsMode::Simple),
                    Some(m) => TlsMode::parse(m),
                }
                .unwrap_or(TlsMode::Passthrough),
                credential_name: t.credential_name,
                credential_names: t.credential_names,
                ca_cert_credential_name: t.ca_cert_credential_name,
                server_certificate: t.server_certificate,
                private_key: t.private_key,
                ca_certificates: t.ca_certificates,
            });
            IstioServer {
                label,
                hosts: server.hosts,
                tls,
            }
        })
        .collect();
    Some(IstioGateway {
        key: key(o),
        selector: s.selector,
        servers,
    })
}

// The subset of `gateway.networking.k8s.io/v1` Gateway read here.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ApiSpec {
    gateway_class_name: String,
    listeners: Vec<ListenerSpec>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ListenerSpec {
    name: String,
    hostname: Option<String>,
    tls: Option<ListenerTlsSpec>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ListenerTlsSpec {
    mode: Option<String>,
    certificate_refs: Vec<RefSpec>,
    options: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RefSpec {
    group: String,
    kind: String,
    namespace: Option<String>,
    name: String,
}

fn api_gateway(o: &DynamicObject) -> Option<ApiGateway> {
    let s: ApiSpec = spec(o)?;
    Some(ApiGateway {
        key: key(o),
        class: s.gateway_class_name,
        listeners: s
            .listeners
            .into_iter()
            .map(|l| Listener {
                name: l.name,
                hostname: l.hostname,
                tls: l.tls.map(|t| ListenerTls {
                    mode: t.mode,
                    certificate_refs: t
                        .certificate_refs
                        .into_iter()
                        .map(|r| SecretObjectRef {
                            group: r.group,
                            kind: r.kind,
                            namespace: r.namespace,
                            name: r.name,
                        })
                        .collect(),
                    options: t.options,
                }),
            })
            .collect(),
    })
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct GrantSpec {
    from: Vec<GrantFromSpec>,
    to: Vec<GrantToSpec>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct GrantFromSpec {
    group: String,
    kind: String,
    namespace: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct GrantToSpec {
    group: String,
    kind: String,
    name: Option<String>,
}

fn reference_grant(o: &DynamicObject) -> Option<ReferenceGrant> {
    let s: GrantSpec = spec(o)?;
    Some(ReferenceGrant {
        namespace: o.namespace().unwrap_or_default(),
        from: s
            .from
            .into_iter()
            .map(|f| GrantFrom {
                group: f.group,
                kind: f.kind,
                namespace: f.namespace,
            })
            .collect(),
        to: s
            .to
            .into_iter()
            .map(|t| GrantTo {
                group: t.group,
                kind: t.kind,
                name: t.name,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(api_version: &str, kind: &str, spec: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": api_version, "kind": kind,
            "metadata": {"namespace": "apps", "name": "shop"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn an_istio_gateway_converts_with_istios_defaults() {
        let o = object(
            "networking.istio.io/v1",
            "Gateway",
            json!({
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {"port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                     "hosts": ["shop.example.com"],
                     "tls": {"credentialName": "shop-tls"}},
                    {"port": {"number": 80, "protocol": "HTTP"}, "hosts": ["*"]}
                ]
            }),
        );
        let gw = istio_gateway(&o).unwrap();
        assert_eq!(gw.key, ObjectRef::new("apps", "shop"));
        assert_eq!(
            gw.selector.get("istio").map(String::as_str),
            Some("ingressgateway")
        );
        assert_eq!(gw.servers[0].label, "https");
        let tls = gw.servers[0].tls.as_ref().unwrap();
        assert_eq!(tls.mode, TlsMode::Simple, "SIMPLE when unset");
        assert_eq!(tls.credential_name.as_deref(), Some("shop-tls"));
        assert_eq!(gw.servers[1].label, "port 80");
        assert!(gw.servers[1].tls.is_none());
    }

    #[test]
    fn a_gateway_api_gateway_and_a_grant_convert() {
        let o = object(
            "gateway.networking.k8s.io/v1",
            "Gateway",
            json!({
                "gatewayClassName": "istio",
                "listeners": [{"name": "https", "port": 443, "protocol": "HTTPS",
                    "hostname": "shop.example.com",
                    "tls": {"mode": "Terminate", "certificateRefs": [{"name": "shop-tls", "namespace": "shop"}]}}]
            }),
        );
        let gw = api_gateway(&o).unwrap();
        assert_eq!(gw.class, "istio");
        let tls = gw.listeners[0].tls.as_ref().unwrap();
        assert_eq!(tls.certificate_refs[0].namespace.as_deref(), Some("shop"));
        assert_eq!(tls.certificate_refs[0].kind, "");

        let g = object(
            "gateway.networking.k8s.io/v1beta1",
            "ReferenceGrant",
            json!({
                "from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "istio-system"}],
                "to": [{"group": "", "kind": "Secret"}]
            }),
        );
        let grant = reference_grant(&g).unwrap();
        assert_eq!(grant.namespace, "apps");
        assert_eq!(grant.to[0].name, None);
    }

    #[test]
    fn a_spec_of_the_wrong_shape_is_skipped() {
        let o = object(
            "networking.istio.io/v1",
            "Gateway",
            json!({"servers": "nope"}),
        );
        assert!(istio_gateway(&o).is_none());
    }
}
