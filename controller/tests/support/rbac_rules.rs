//! RBAC rules as the API server evaluates them, for checking every request
//! a scenario made against the fake API server (`RequestRecord`s) against
//! shipped ClusterRoles and Roles.
#![allow(dead_code)] // each test binary uses part of this

use certsync_fakekube::Verb;
use serde_json::Value;

#[derive(Debug)]
pub struct Rule {
    pub groups: Vec<String>,
    pub resources: Vec<String>,
    pub names: Vec<String>,
    pub verbs: Vec<String>,
    /// `None` for a ClusterRole (every namespace).
    pub namespace: Option<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub fn rules_of(text: &str) -> Vec<Rule> {
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let doc: Value = serde::Deserialize::deserialize(doc).unwrap();
        let namespace = match doc["kind"].as_str() {
            Some("ClusterRole") => None,
            Some("Role") => Some(doc["metadata"]["namespace"].as_str().unwrap().to_owned()),
            _ => continue,
        };
        for rule in doc["rules"].as_array().unwrap() {
            out.push(Rule {
                groups: strings(&rule["apiGroups"]),
                resources: strings(&rule["resources"]),
                names: strings(&rule["resourceNames"]),
                verbs: strings(&rule["verbs"]),
                namespace: namespace.clone(),
            });
        }
    }
    out
}

fn rbac_verb(verb: Verb) -> Option<&'static str> {
    Some(match verb {
        Verb::Get => "get",
        Verb::List => "list",
        Verb::Watch => "watch",
        Verb::Create => "create",
        Verb::Update => "update",
        Verb::Patch | Verb::Apply => "patch",
        Verb::Delete => "delete",
        _ => return None,
    })
}

pub fn allowed(rules: &[Rule], r: &certsync_fakekube::RequestRecord) -> bool {
    let Some(verb) = rbac_verb(r.verb) else {
        return true;
    };
    let Some(resource) = &r.resource else {
        return true;
    };
    let (plural, group) = resource.split_once('.').unwrap_or((resource.as_str(), ""));
    let plural = match &r.subresource {
        Some(sub) => format!("{plural}/{sub}"),
        None => plural.to_owned(),
    };
    rules.iter().any(|rule| {
        rule.groups.iter().any(|g| g == group)
            && rule.resources.contains(&plural)
            && rule.verbs.iter().any(|v| v == verb)
            && (rule.names.is_empty() || r.name.as_ref().is_some_and(|n| rule.names.contains(n)))
            && rule
                .namespace
                .as_ref()
                .is_none_or(|ns| r.namespace.as_deref() == Some(ns))
    })
}

/// Only the ClusterRoles' rules of `text`.
pub fn cluster_rules_of(text: &str) -> Vec<Rule> {
    rules_of(text)
        .into_iter()
        .filter(|r| r.namespace.is_none())
        .collect()
}

/// Fails unless `rules` allow every request in `requests` (those `skip`
/// says are not cert-sync's own left out), naming the ones they do not.
pub fn assert_all_allowed(
    rules: &[Rule],
    requests: &[certsync_fakekube::RequestRecord],
    skip: impl Fn(&certsync_fakekube::RequestRecord) -> bool,
) {
    let denied: Vec<String> = requests
        .iter()
        .filter(|r| !skip(r) && !allowed(rules, r))
        .map(|r| format!("{:?} {} {}", r.verb, r.path, r.query))
        .collect();
    assert!(
        denied.is_empty(),
        "not allowed by the shipped RBAC: {denied:#?}"
    );
}
