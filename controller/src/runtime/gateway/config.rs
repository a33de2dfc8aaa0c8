//! The gateway-side Istio objects (EnvoyFilter, status Gateway, WasmPlugin),
//! rendered by `certsync-wasmplugin` and server-side applied with the one
//! field manager. Re-applied only when the rendering changes (or when a
//! re-trigger asks), so a quiet controller writes nothing. Before any write
//! the module the WasmPlugin names is fetched and checked through the URL
//! the gateways use ([`ModuleProbe`]), and an object of the same name that
//! cert-sync does not manage is left alone (the apply fails instead).

// The annotation a re-apply stamps on every gateway-side object: identical
// objects would be a no-op for the API server and for istiod.
use super::module::{ModuleError, ModuleProbe};
use crate::core::model::keys::REAPPLIED_AT;
use crate::runtime::kube::cluster::FIELD_MANAGER;
use certsync_wasmplugin::{
    gateway_api_names, render, render_for_gateway_api, GatewaySettings, SettingsError,
    LABEL_MANAGED_BY, LABEL_VALUE,
};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GatewayConfigError {
    #[error("gateway settings: {0}")]
    Settings(#[from] SettingsError),
    #[error("rendered object lacks {0}")]
    Malformed(&'static str),
    #[error("{0}; the WasmPlugin is left as it was")]
    ModuleUnavailable(#[from] ModuleError),
    #[error("{kind} {name} exists without {LABEL_MANAGED_BY}={LABEL_VALUE}: cert-sync does not write over objects it does not manage (delete it, or label it to hand it over)")]
    NotOurs { kind: String, name: String },
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Applies the rendered objects when they differ from the last applied set.
pub struct GatewayConfig {
    settings: GatewaySettings,
    /// Checks the controller-served module before a write.
    probe: Option<ModuleProbe>,
    applied: Option<Vec<Value>>,
    /// Set by [`GatewayConfig::reapply`]; kept in every later rendering so a
    /// normal apply does not take the annotation away again.
    reapplied_at: Option<String>,
    /// Gateway API Gateways whose pods get the filter too (sorted).
    gateway_api: Vec<String>,
}

impl GatewayConfig {
    pub fn new(settings: GatewaySettings) -> Self {
        GatewayConfig {
            probe: ModuleProbe::for_settings(&settings),
            settings,
            applied: None,
            reapplied_at: None,
            gateway_api: Vec::new(),
        }
    }

    /// The Gateway API Gateways (of Istio's classes, in the gateway
    /// namespace) whose pods must load the filter; applied at the next
    /// [`GatewayConfig::apply`] when it changed.
    pub fn set_gateway_api(&mut self, mut gateways: Vec<String>) {
        gateways.sort();
        gateways.dedup();
        self.gateway_api = gateways;
    }

    /// Returns how many objects were written (0 when nothing changed).
    pub async fn apply(&mut self, client: &Client) -> Result<usize, GatewayConfigError> {
        let mut objects = render(&self.settings)?;
        objects.extend(render_for_gateway_api(&self.settings, &self.gateway_api)?);
        if let Some(stamp) = &self.reapplied_at {
            for object in &mut objects {
                object["metadata"]["annotations"][REAPPLIED_AT] = Value::from(stamp.as_str());
            }
        }
        if self.applied.as_ref() == Some(&objects) {
            return Ok(0);
        }
        if let Some(probe) = &self.probe {
            probe.check().await?;
        }
        for object in &objects {
            apply_object(client, object).await?;
        }
        if self.gateway_api.is_empty() {
            // The last Gateway API Gateway went (or never was): its objects
            // must not stay behind with an empty target list.
            for (kind, name) in gateway_api_names() {
                delete_ours(client, &self.settings.namespace, kind, &name).await?;
            }
        }
        let written = objects.len();
        self.applied = Some(objects);
        Ok(written)
    }

    /// Forget what was applied, so the next `apply` writes again (the
    /// re-trigger ladder's "re-apply gateway config" step).
    pub fn invalidate(&mut self) {
        self.applied = None;
    }

    /// Writes every object again with a new `stamp` in [`REAPPLIED_AT`], so
    /// istiod sees a change and pushes the gateway's config again.
    pub async fn reapply(
        &mut self,
        client: &Client,
        stamp: &str,
    ) -> Result<usize, GatewayConfigError> {
        self.reapplied_at = Some(stamp.to_owned());
        self.invalidate();
        self.apply(client).await
    }
}

/// The API of a rendered kind.
fn api_for(client: &Client, namespace: &str, kind: &str) -> Api<DynamicObject> {
    let (group, version) = match kind {
        "EnvoyFilter" => ("networking.istio.io", "v1alpha3"),
        "Gateway" => ("networking.istio.io", "v1"),
        _ => ("extensions.istio.io", "v1alpha1"),
    };
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// Labelled managed-by cert-sync.
fn is_ours(object: &DynamicObject) -> bool {
    object
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .is_some_and(|v| v == LABEL_VALUE)
}

/// Deletes `kind/name` when it exists and is cert-sync's.
async fn delete_ours(
    client: &Client,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Result<(), GatewayConfigError> {
    let api = api_for(client, namespace, kind);
    let failed = |source| GatewayConfigError::Apply {
        kind: kind.to_owned(),
        name: name.to_owned(),
        source,
    };
    let Some(existing) = api.get_opt(name).await.map_err(failed)? else {
        return Ok(());
    };
    if is_ours(&existing) {
        api.delete(name, &kube::api::DeleteParams::default())
            .await
            .map_err(failed)?;
    }
    Ok(())
}

async fn apply_object(client: &Client, object: &Value) -> Result<(), GatewayConfigError> {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let api_version =
        text(&object["apiVersion"]).ok_or(GatewayConfigError::Malformed("apiVersion"))?;
    let kind = text(&object["kind"]).ok_or(GatewayConfigError::Malformed("kind"))?;
    let name =
        text(&object["metadata"]["name"]).ok_or(GatewayConfigError::Malformed("metadata.name"))?;
    let namespace = text(&object["metadata"]["namespace"])
        .ok_or(GatewayConfigError::Malformed("metadata.namespace"))?;
    let (group, version) = api_version
        .split_once('/')
        .unwrap_or(("", api_version.as_str()));
    let gvk = GroupVersionKind::gvk(group, version, &kind);
    let resource = ApiResource::from_gvk(&gvk);
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), &namespace, &resource);
    let existing = api
        .get_opt(&name)
        .await
        .map_err(|source| GatewayConfigError::Apply {
            kind: kind.clone(),
            name: name.clone(),
            source,
        })?;
    if existing.is_some_and(|e| !is_ours(&e)) {
        return Err(GatewayConfigError::NotOurs { kind, name });
    }
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map(|_| ())
    .map_err(|source| GatewayConfigError::Apply { kind, name, source })
}
