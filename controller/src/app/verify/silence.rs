//! Carrying out what `core::rollout::Silence` decides about gateway pods
//! that do not report: re-apply the gateway-side objects for pods without
//! the filter, and tell about the ones nothing helped.

use super::{pod_ref, Verifier};
use crate::app::Context;
use crate::core::reasons::{self, actions};
use crate::core::rollout::SilenceAction;
use crate::runtime::gateway::config::GatewayConfig;
use crate::runtime::ops::metrics::LadderStep;
use k8s_openapi::api::core::v1::ObjectReference;

impl Verifier {
    pub(super) async fn tell_silence(
        &mut self,
        ctx: &Context,
        silence: &[SilenceAction],
        mut gateway_config: Option<&mut GatewayConfig>,
        reapplied_this_step: bool,
    ) {
        let window = self.settings.heartbeat_window.as_secs();
        for action in silence {
            match action {
                SilenceAction::ReapplyForFilter { pods, attempt } => {
                    // The rollout ladder's re-apply this step already made
                    // istiod push: one push serves both.
                    let Some(config) = gateway_config
                        .as_deref_mut()
                        .filter(|_| !reapplied_this_step)
                    else {
                        continue;
                    };
                    ctx.metrics.ladder_step(LadderStep::ReapplyForFilter);
                    let stamp = jiff::Timestamp::now().to_string();
                    let why = format!(
                        "{} never reported within {window}s of being Ready, so istiod pushes the WasmPlugin again (attempt {attempt})",
                        pods.join(", ")
                    );
                    self.reapply(ctx, config, &stamp, &why).await;
                }
                SilenceAction::FilterNotLoaded { pod, reapplied } => {
                    ctx.metrics.ladder_step(LadderStep::FilterNotLoaded);
                    let message = format!(
                        "gateway pod {pod} has never reported ({window}s heartbeat window; WasmPlugin re-applied {reapplied}×): the cert-sync filter is not loaded there, or its reports are refused. Check istio-agent's log for the module fetch, the controller's Service endpoints, and certsync_reports_total by outcome (a wrong token or source address); its rollouts are Unknown"
                    );
                    tracing::warn!(%pod, "{message}");
                    ctx.emit_action(
                        pod_ref(&self.gateway_namespace, pod),
                        true,
                        actions::VERIFY,
                        reasons::FILTER_NOT_LOADED,
                        &message,
                    )
                    .await;
                }
                SilenceAction::NotReporting { pod } => {
                    let message = format!(
                        "gateway pod {pod} has not reported for over {window}s after reporting before: is it wedged, or cut off from the controller? Its rollouts are Unknown"
                    );
                    tracing::warn!(%pod, "{message}");
                    ctx.emit_action(
                        pod_ref(&self.gateway_namespace, pod),
                        true,
                        actions::VERIFY,
                        reasons::POD_NOT_REPORTING,
                        &message,
                    )
                    .await;
                }
            }
        }
    }

    /// Writes the gateway-side objects again with a new stamp (so istiod
    /// pushes them) and tells why on the WasmPlugin.
    pub(super) async fn reapply(
        &self,
        ctx: &Context,
        config: &mut GatewayConfig,
        stamp: &str,
        why: &str,
    ) {
        let message = match config.reapply(&ctx.client, stamp).await {
            Ok(n) => format!("re-applied {n} gateway-side objects: {why}"),
            Err(e) => format!("re-applying the gateway-side objects failed ({why}): {e}"),
        };
        tracing::warn!("{message}");
        let about = ObjectReference {
            api_version: Some("extensions.istio.io/v1alpha1".into()),
            kind: Some("WasmPlugin".into()),
            namespace: Some(self.gateway_namespace.clone()),
            name: Some(certsync_wasmplugin::WASM_PLUGIN_NAME.into()),
            ..ObjectReference::default()
        };
        ctx.emit_action(
            about,
            true,
            actions::RETRIGGER,
            reasons::GATEWAY_CONFIG_REAPPLIED,
            &message,
        )
        .await;
    }
}
