//! The mesh CA against the fake API server: a cert-manager CA Secret
//! becomes istiod's `cacerts` in Istio's layout; a CA that is not one, has
//! the wrong key, does not chain to its root or expires too soon is
//! refused and `cacerts` keeps the last good; a `cacerts` cert-sync does
//! not manage is never overwritten; a new root is warned about.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

mod support;

use certsync_controller::app::publish::{MeshCa, MeshCaFrom, MeshCaSettings};
use certsync_controller::core::model::ObjectRef;
use certsync_testkit::mesh_pki::{CaSpec, MeshIntermediate, MeshRoot};
use support::*;

const CA_NS: &str = "cert-manager";
const DAY: i64 = 86_400;

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

async fn mk_rig() -> Rig {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.publisher = Publisher::new(rig.stores.clone(), None, std::path::Path::new(""))
        .with_mesh_ca(MeshCa::new(
            MeshCaSettings {
                from: MeshCaFrom::Secret(ObjectRef::new(CA_NS, "istio-ca")),
                target: ObjectRef::new(GW, "cacerts"),
                min_left: 7 * DAY,
            },
            None,
        ));
    rig
}

/// The CA Secret cert-manager writes for an `isCA: true` Certificate.
fn mk_ca_secret(ca: &MeshIntermediate, roots: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "istio-ca", "namespace": CA_NS},
        "data": {"tls.crt": b64(&ca.cert_pem), "tls.key": b64(&ca.key_pem), "ca.crt": b64(roots)},
    })
}

async fn pass(rig: &mut Rig) {
    rig.pass(now()).await.unwrap();
    rig.record(None).await;
}

fn cacerts(rig: &Rig) -> Value {
    rig.server.get("secrets", GW, "cacerts").expect("cacerts")
}

fn warned_ca(rig: &Rig, reason: &str) -> bool {
    rig.events_about("istio-ca")
        .iter()
        .any(|e| e["type"] == "Warning" && e["reason"] == reason)
}

#[tokio::test]
async fn a_ca_secret_becomes_cacerts_and_a_bad_one_never_replaces_it() {
    let mut rig = mk_rig().await;
    let root = MeshRoot::new("mesh root").unwrap();
    let ca = root.intermediate(&CaSpec::default()).unwrap();
    rig.put(mk_ca_secret(&ca, &root.pem())).await;
    pass(&mut rig).await;

    let written = cacerts(&rig);
    assert_eq!(
        written["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "cert-sync"
    );
    assert_eq!(data_of(&written, "ca-key.pem"), ca.key_pem);
    assert_eq!(data_of(&written, "cert-chain.pem"), ca.cert_pem);
    assert_eq!(data_of(&written, "root-cert.pem"), root.pem());
    assert!(data_of(&written, "ca-cert.pem").starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(
        written["data"].get("tls.crt").is_none(),
        "istiod would prefer tls.crt"
    );
    let published = rig
        .events_about("istio-ca")
        .iter()
        .any(|e| e["reason"] == "Published" && e["type"] == "Normal");
    assert!(published, "a Published Event on the CA Secret");
    // The manifest proves it per pod: ROOTCA trusts the root, default is
    // issued by the CA.
    let written_manifest = manifest(&rig);
    let rows: Vec<(&str, &str)> = written_manifest["publications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["target"]["kind"] == "meshCa")
        .map(|p| {
            (
                p["sdsResource"].as_str().unwrap(),
                p["sha256"].as_str().unwrap(),
            )
        })
        .collect();
    let (root_sha, ca_sha) = (root.sha256().to_string(), ca.sha256.to_string());
    assert_eq!(
        rows,
        [("ROOTCA", root_sha.as_str()), ("default", ca_sha.as_str())]
    );
    let version = written["metadata"]["resourceVersion"].clone();
    pass(&mut rig).await;
    assert_eq!(
        cacerts(&rig)["metadata"]["resourceVersion"],
        version,
        "no write when nothing changed"
    );

    // Each kind of bad CA is refused; cacerts keeps the good one.
    let other_root = MeshRoot::new("mesh root").unwrap();
    let bad = [
        (
            "NotACA",
            mk_ca_secret(
                &root
                    .intermediate(&CaSpec {
                        is_ca: false,
                        ..CaSpec::default()
                    })
                    .unwrap(),
                &root.pem(),
            ),
        ),
        (
            "NotACA",
            mk_ca_secret(
                &root
                    .intermediate(&CaSpec {
                        key_cert_sign: false,
                        ..CaSpec::default()
                    })
                    .unwrap(),
                &root.pem(),
            ),
        ),
        ("ChainNotTrusted", mk_ca_secret(&ca, &other_root.pem())),
        (
            "CAExpiring",
            mk_ca_secret(
                &root
                    .intermediate(&CaSpec {
                        not_after: Some(now() + 2 * DAY),
                        ..CaSpec::default()
                    })
                    .unwrap(),
                &root.pem(),
            ),
        ),
        ("KeyMismatch", {
            let mut s = mk_ca_secret(&ca, &root.pem());
            s["data"]["tls.key"] =
                json!(b64(&root.intermediate(&CaSpec::default()).unwrap().key_pem));
            s
        }),
    ];
    for (reason, secret) in bad {
        rig.put(secret).await;
        pass(&mut rig).await;
        assert!(warned_ca(&rig, reason), "{reason} told on the CA Secret");
        assert_eq!(
            data_of(&cacerts(&rig), "ca-key.pem"),
            ca.key_pem,
            "{reason}: last good kept"
        );
        assert!(
            manifest(&rig)["refusals"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["reason"] == reason && r["subject"] == format!("mesh-ca {GW}/cacerts")),
            "{reason} in the status"
        );
    }

    // A good new intermediate under the same root replaces it, quietly.
    let next = root.intermediate(&CaSpec::default()).unwrap();
    rig.put(mk_ca_secret(&next, &root.pem())).await;
    pass(&mut rig).await;
    assert_eq!(data_of(&cacerts(&rig), "ca-key.pem"), next.key_pem);
    assert!(!warned_ca(&rig, "MeshRootChanged"));

    // A new root is written but warned about: istiod needs a restart.
    let new_root = MeshRoot::new("new mesh root").unwrap();
    let under_new = new_root.intermediate(&CaSpec::default()).unwrap();
    rig.put(mk_ca_secret(&under_new, &new_root.pem())).await;
    pass(&mut rig).await;
    assert_eq!(data_of(&cacerts(&rig), "root-cert.pem"), new_root.pem());
    assert!(warned_ca(&rig, "MeshRootChanged"));
    assert_no_ca_key(&rig, &[&ca, &next, &under_new]);
    assert_allowed_by_base_rbac(&rig);
}

#[tokio::test]
async fn a_cacerts_not_managed_by_cert_sync_is_never_overwritten() {
    let mut rig = mk_rig().await;
    let theirs = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "cacerts", "namespace": GW},
        "data": {"ca-cert.pem": b64("theirs")},
    });
    rig.put(theirs).await;
    let root = MeshRoot::new("mesh root").unwrap();
    let ca = root.intermediate(&CaSpec::default()).unwrap();
    rig.put(mk_ca_secret(&ca, &root.pem())).await;
    pass(&mut rig).await;
    assert_eq!(data_of(&cacerts(&rig), "ca-cert.pem"), "theirs");
    assert!(warned_ca(&rig, "TargetNotManaged"));
    let writes = rig
        .server
        .requests()
        .into_iter()
        .filter(|r| {
            r.resource.as_deref() == Some("secrets")
                && r.name.as_deref() == Some("cacerts")
                && r.verb.is_write()
        })
        .count();
    assert_eq!(writes, 0, "no write request for cacerts at all");
}

fn manifest(rig: &Rig) -> Value {
    rig.manifest()
}

/// No line of a CA key in Events or ConfigMaps.
fn assert_no_ca_key(rig: &Rig, cas: &[&MeshIntermediate]) {
    let mut dump = String::new();
    for resource in ["events", "events.events.k8s.io", "configmaps"] {
        dump.push_str(&serde_json::to_string(&rig.server.list(resource, None)).unwrap());
    }
    for ca in cas {
        for line in ca.key_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!dump.contains(line), "CA key bytes leaked");
        }
    }
}

#[path = "support/rbac_rules.rs"]
mod rbac_rules;

/// Every request of the scenario is allowed by `deploy/base/rbac.yaml`.
fn assert_allowed_by_base_rbac(rig: &Rig) {
    let rules = rbac_rules::rules_of(include_str!("../deploy/base/rbac.yaml"));
    rbac_rules::assert_all_allowed(&rules, &rig.server.requests(), |_| false);
}
