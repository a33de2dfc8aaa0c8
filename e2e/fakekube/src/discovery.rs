//! Discovery documents (`/version`, `/api`, `/api/v1`, `/apis`,
//! `/apis/<group>`, `/apis/<group>/<version>`), built from the registry.
//!
//! kube-rs' typed `Api<K>` needs none of them (URLs come from the type), but
//! `kube::discovery` (used to check whether a CRD such as Istio's is
//! installed) and `Client::apiserver_version` do, so the legacy,
//! non-aggregated forms are served.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::registry::{Registry, ResourceType};
use crate::tokenreview;

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `GET /version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-certsync-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// `GET /api`.
pub fn core_versions(addr: SocketAddr) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string()}]
    })
}

/// The registered resources and the built-in, never stored `tokenreviews`.
fn served(reg: &Registry) -> Vec<Arc<ResourceType>> {
    let mut types = reg.types().to_vec();
    types.push(tokenreview::resource_type());
    types
}

fn group_versions(reg: &Registry) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in served(reg).iter().filter(|t| !t.group.is_empty()) {
        let versions = groups.entry(t.group.clone()).or_default();
        if !versions.contains(&t.version) {
            versions.push(t.version.clone());
        }
    }
    groups
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({"name": name, "versions": vs, "preferredVersion": preferred})
}

/// `GET /apis`.
pub fn groups(reg: &Registry) -> Value {
    let groups: Vec<Value> = group_versions(reg)
        .iter()
        .map(|(name, versions)| group_doc(name, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>`.
pub fn group(reg: &Registry, name: &str) -> Option<Value> {
    let gv = group_versions(reg);
    let versions = gv.get(name)?;
    let mut doc = group_doc(name, versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn resource_doc(t: &ResourceType) -> Value {
    let verbs: &[&str] = if tokenreview::is_resource(t) {
        &["create"]
    } else {
        &VERBS
    };
    json!({
        "name": t.plural,
        "singularName": t.kind.to_lowercase(),
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": verbs,
    })
}

/// `GET /api/v1` or `GET /apis/<group>/<version>`.
pub fn resources(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut list = Vec::new();
    for t in served(reg)
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        list.push(resource_doc(t));
        if t.status_subresource {
            list.push(json!({
                "name": format!("{}/status", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if group.is_empty() && t.plural == "pods" {
            list.push(json!({
                "name": "pods/eviction",
                "singularName": "",
                "namespaced": true,
                "group": "policy",
                "version": "v1",
                "kind": "Eviction",
                "verbs": ["create"],
            }));
        }
    }
    if list.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": list,
    }))
}
