//! A CertMerge as the API server hands it to the controller (JSON, any
//! namespace: tenants write their own), through what the controller does
//! with it: `to_model`, selection against a fixed set of Secrets under each
//! mode and namespace policy, validation, the desired state, the plan, the
//! manifest and the CertMerge's status. The tenancy rules must hold for
//! every spec: a CertMerge outside the gateway namespace publishes only its
//! own namespace's Secrets, only to targets named after its namespace.
//!
//! The same input is also read as a VaultCertificate: its `spec.path` must
//! never lead out of its namespace's KV prefix.
#![no_main]

use certsync_controller::core::model::{
    keys, Blob, Mode, NamespacePolicy, ObjectRef, Policy, Published, SourceData, SourceMeta,
};
use certsync_controller::core::selection::{self, Owner, Selection, Target};
use certsync_controller::core::validation::{self, Validated, Validations};
use certsync_controller::core::{desired, manifest, merge_status, status, vault};
use certsync_controller::crd::{self, CertMerge, CertMergeStatus, VaultCertificate};
use certsync_fuzz::{fixture, NOW, PAIRS};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

const GATEWAY: &str = "istio-system";

struct World {
    sources: Vec<SourceMeta>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Validated once: key matching per run would dwarf what is fuzzed.
    valid: BTreeMap<ObjectRef, Validated>,
    /// An older CertMerge every input competes with for `shared`.
    older: certsync_controller::core::model::CertMerge,
}

fn labels(pairs: &[(&str, &str)]) -> Arc<BTreeMap<String, String>> {
    Arc::new(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

fn source(
    ns: &str,
    name: &str,
    secret_type: &str,
    l: &[(&str, &str)],
    autosync: bool,
) -> SourceMeta {
    let annotations = if autosync {
        labels(&[(keys::AUTOSYNC, "true")])
    } else {
        labels(&[])
    };
    SourceMeta {
        key: ObjectRef::new(ns, name),
        uid: format!("uid-{ns}-{name}"),
        resource_version: "1".to_owned(),
        secret_type: secret_type.to_owned(),
        labels: labels(l),
        annotations,
        created: name.len() as i64,
    }
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let tls = keys::TLS_TYPE;
        let sources = vec![
            source(
                "shop",
                "a",
                tls,
                &[("merge", "yes"), ("tier", "web")],
                false,
            ),
            source("shop", "b", tls, &[("merge", "no")], true),
            source("shop", "opaque", "Opaque", &[("merge", "yes")], false),
            source("blog", "b", tls, &[("merge", "yes")], true),
            source("bank", "vault", tls, &[("merge", "yes")], false),
            source(GATEWAY, "gw", tls, &[("merge", "yes")], false),
            source(
                GATEWAY,
                "published",
                tls,
                &[(keys::MANAGED_BY, keys::MANAGED_BY_VALUE)],
                false,
            ),
        ];
        let namespaces = [
            ("shop", "shop"),
            ("blog", "blog"),
            ("bank", ""),
            (GATEWAY, "gw"),
        ]
        .into_iter()
        .map(|(ns, team)| (ns.to_owned(), (*labels(&[("team", team)])).clone()))
        .collect();
        let valid = sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let (cert, key) = PAIRS[i % PAIRS.len()];
                let data = SourceData {
                    cert_pem: Some(Blob::from(fixture(cert))),
                    key_pem: Some(Blob::from(fixture(key))),
                    ca_pem: None,
                };
                validation::check(&s.key, &data, NOW)
                    .ok()
                    .map(|v| (s.key.clone(), v))
            })
            .collect();
        let older = certsync_controller::core::model::CertMerge {
            key: ObjectRef::new(GATEWAY, "older"),
            created: i64::MIN + 1,
            target: ObjectRef::new(GATEWAY, "shared"),
            selectors: Vec::new(),
            secrets: vec![ObjectRef::new("shop", "a")],
        };
        World {
            sources,
            namespaces,
            valid,
            older,
        }
    })
}

fn policies() -> [Policy; 3] {
    let selector = certsync_controller::core::model::LabelSelector {
        match_labels: BTreeMap::new(),
        match_expressions: vec![certsync_controller::core::model::LabelExpression {
            key: "team".to_owned(),
            operator: "In".to_owned(),
            values: vec!["shop".to_owned(), "gw".to_owned()],
        }],
    };
    [
        (Mode::Credential, NamespacePolicy::All),
        (
            Mode::Merged {
                secret_name: "merged-certs".to_owned(),
            },
            NamespacePolicy::List(vec![
                "shop".to_owned(),
                "blog".to_owned(),
                GATEWAY.to_owned(),
            ]),
        ),
        (Mode::Directory, NamespacePolicy::Selector(selector)),
    ]
    .map(|(mode, namespaces)| Policy {
        gateway_namespace: GATEWAY.to_owned(),
        mode,
        namespaces,
    })
}

/// Tenancy and shape of a selection, whatever the CertMerges said.
fn check_selection(policy: &Policy, w: &World, selection: &Selection) {
    let targets: Vec<&Target> = selection.publications.iter().map(|p| &p.target).collect();
    assert!(
        targets.windows(2).all(|t| t[0] < t[1]),
        "sorted, one per target"
    );
    assert!(selection.refusals.windows(2).all(|r| r[0] < r[1]));
    for p in &selection.publications {
        for member in &p.members {
            let meta = w.sources.iter().find(|s| &s.key == member);
            let meta = meta.map(|m| (m.secret_type.as_str(), selection::is_managed(&m.labels)));
            assert_eq!(meta, Some((keys::TLS_TYPE, false)), "{member} published");
            assert!(
                selection::namespace_allowed(&policy.namespaces, &w.namespaces, &member.namespace),
                "{member} is outside the namespace policy"
            );
        }
        if let Owner::CertMerge(m) = &p.owner {
            if m.namespace != GATEWAY {
                let name = match &p.target {
                    Target::Merged(name) => name.as_str(),
                    _ => "",
                };
                let own = format!("{}.", m.namespace);
                assert!(name.starts_with(&own), "{m} writes {:?}", p.target);
                for member in &p.members {
                    assert_eq!(member.namespace, m.namespace, "{m} publishes {member}");
                }
            }
        }
    }
}

fn pipeline(policy: &Policy, w: &World, merge: &certsync_controller::core::model::CertMerge) {
    let merges = [w.older.clone(), merge.clone()];
    let selection = selection::select(policy, &w.sources, &w.namespaces, &merges);
    check_selection(policy, w, &selection);
    let mut validations = Validations::default();
    for source in selection.sources() {
        if let Some(v) = w.valid.get(source) {
            validations.ok.insert(source.clone(), v.clone());
        }
    }
    let current = Published::default();
    let desired = desired::render(policy, &selection, &validations, &current);
    let plan = desired::diff(&current, &desired);
    let built = manifest::build(policy, &desired, &plan, "/etc/istio/certsync");
    if let Ok(data) = manifest::render(&built) {
        if let Some(json) = data.get(manifest::DATA_KEY) {
            let view = status::parse(json);
            assert!(view.is_ok(), "the manifest written is read back: {view:?}");
        }
    }
    let mut refusals = selection.refusals.clone();
    refusals.extend(validations.refused.values().cloned());
    let computed = merge_status::compute(&merge.key, &selection, &desired, &plan, &refusals);
    let rolled_out = merge_status::rolled_out(&computed, &merge.target.name, &BTreeMap::new());
    let _ = crd::status_from(
        &computed,
        &rolled_out,
        Some(1),
        &CertMergeStatus::default(),
        NOW,
    );
}

fn vault_certificate(data: &[u8]) {
    let Ok(vc) = serde_json::from_slice::<VaultCertificate>(data) else {
        return;
    };
    let source = vc.to_model();
    let ns = &source.key.namespace;
    if let Ok(path) = vault::kv_path("/certsync/", ns, &source.path) {
        assert_eq!(path, format!("certsync/{ns}/{}", source.path));
        assert!(
            source
                .path
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."),
            "{path} leaves certsync/{ns}/"
        );
    }
    let poll = vault::Poll::Version(3);
    if let Some(meta) = vault::source_meta(&source, &poll) {
        assert!(selection::is_autosync(&meta));
    }
}

fuzz_target!(|data: &[u8]| {
    vault_certificate(data);
    let Ok(object) = serde_json::from_slice::<CertMerge>(data) else {
        return;
    };
    let w = world();
    let merge = object.to_model(GATEWAY);
    for policy in policies() {
        pipeline(&policy, w, &merge);
    }
});
