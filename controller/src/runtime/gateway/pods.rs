//! Gateway pod discovery: the Ready pods in the gateway namespace that match
//! the gateway selector, or that Istio deployed for one of the Gateway API
//! Gateways cert-sync attaches its filter to (labelled
//! `gateway.networking.k8s.io/gateway-name`). They are who must serve, and
//! the only ones allowed to report.
//!
//! The namespace's pods are watched whole and filtered here: a label
//! selector cannot say "this selector, or that label among these values",
//! and a gateway namespace holds few pods.

use crate::core::rollout::LivePod;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A store of the gateway pods, kept current by a watch.
#[derive(Clone)]
pub struct GatewayPods {
    store: Store<Pod>,
    /// `--gateway-selector` (equality terms).
    selector: BTreeMap<String, String>,
    /// Gateway API Gateways whose pods count too.
    gateway_api: Arc<RwLock<BTreeSet<String>>>,
}

/// The label Istio gives the pods of a Gateway API Gateway.
const GATEWAY_NAME_LABEL: &str = crate::core::gateways::GATEWAY_NAME_LABEL;

impl GatewayPods {
    /// Watches pods in `namespace` matching `selector` (`k=v,...`); every
    /// change pokes `changed`.
    pub fn watch(
        client: &Client,
        namespace: &str,
        selector: &str,
        changed: Arc<Notify>,
    ) -> (GatewayPods, JoinHandle<()>) {
        let (store, writer) = reflector::store();
        let api = Api::<Pod>::namespaced(client.clone(), namespace);
        let selector = selector
            .split(',')
            .filter_map(|term| term.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let stream = reflector::reflector(
            writer,
            watcher(api, watcher::Config::default()).modify(|pod| pod.managed_fields_mut().clear()),
        )
        .backoff(crate::runtime::kube::backoff::WatchBackoff::default());
        let task = tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "gateway pod watch failed; relisting with backoff");
                }
                changed.notify_one();
            }
        });
        (
            GatewayPods {
                store,
                selector,
                gateway_api: Arc::default(),
            },
            task,
        )
    }

    /// The Gateway API Gateways whose pods are gateway pods too.
    pub fn set_gateway_api(&self, gateways: &[String]) {
        let mut set = self
            .gateway_api
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if set.iter().ne(gateways.iter()) {
            *set = gateways.iter().cloned().collect();
        }
    }

    fn is_gateway(&self, pod: &Pod) -> bool {
        let labels = pod.labels();
        let selected = self.selector.iter().all(|(k, v)| labels.get(k) == Some(v));
        selected
            || labels.get(GATEWAY_NAME_LABEL).is_some_and(|name| {
                self.gateway_api
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .contains(name)
            })
    }

    pub async fn wait_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.store.wait_until_ready().await
    }

    /// Ready, running, not being deleted; sorted by name.
    pub fn live(&self) -> Vec<LivePod> {
        let mut pods: Vec<LivePod> = self
            .store
            .state()
            .iter()
            .filter(|p| is_live(p) && self.is_gateway(p))
            .map(|p| LivePod {
                name: p.name_any(),
                ips: pod_ips(p),
                labels: p.labels().clone(),
            })
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        pods
    }
}

fn is_live(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    pod.metadata.deletion_timestamp.is_none()
        && status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// `status.podIPs`, or `status.podIP` where a server does not fill the list.
fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let listed = status.pod_ips.iter().flatten().map(|p| p.ip.as_str());
    let mut ips: Vec<IpAddr> = listed
        .chain(status.pod_ip.as_deref())
        .filter_map(|ip| ip.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mk_pod(phase: &str, ready: &str, deleting: bool) -> Pod {
        let mut pod = json!({
            "metadata": {"name": "gw", "namespace": "istio-system"},
            "status": {
                "phase": phase,
                "podIP": "10.1.2.3",
                "conditions": [{"type": "Ready", "status": ready}]
            }
        });
        if deleting {
            pod["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
        }
        serde_json::from_value(pod).unwrap_or_default()
    }

    #[test]
    fn only_ready_running_pods_count() {
        assert!(is_live(&mk_pod("Running", "True", false)));
        assert!(!is_live(&mk_pod("Running", "False", false)));
        assert!(!is_live(&mk_pod("Pending", "True", false)));
        assert!(!is_live(&mk_pod("Running", "True", true)));
        assert!(!is_live(&Pod::default()));
        assert_eq!(
            pod_ips(&mk_pod("Running", "True", false)),
            ["10.1.2.3".parse::<IpAddr>().ok()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_dual_stack_pod_has_both_addresses() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "gw"},
            "status": {
                "podIP": "10.1.2.3",
                "podIPs": [{"ip": "10.1.2.3"}, {"ip": "fd00::3"}]
            }
        }))
        .unwrap_or_default();
        let ips: Vec<String> = pod_ips(&pod).iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["10.1.2.3", "fd00::3"]);
        assert!(pod_ips(&Pod::default()).is_empty());
    }
}
