//! Certificates kept in a real OpenBao (`bao server -dev`, KV v2) and
//! named by VaultCertificates in the fake API server: published, rotated,
//! a broken version refused with the last good kept, deleted →
//! unpublished, OpenBao stopped or sealed → last good kept and the outage
//! told, access denied → told. Kubernetes auth runs for real: OpenBao
//! asks the fake API server's TokenReview about the controller's token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

mod support;

use certsync_controller::runtime::vault::{
    Auth, KvSettings, PollSettings, Settings, VaultClient, VaultSources,
};
use certsync_testkit::bao::{self, Bao};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::sync::Notify;

const SA: (&str, &str, &str) = (
    "istio-system",
    "cert-sync",
    "2b7c1a4e-0000-4000-8000-00000000c5c5",
);
const POLICY: &str = r#"
path "secret/data/cert-sync/*" { capabilities = ["read"] }
path "secret/metadata/cert-sync/*" { capabilities = ["read"] }
"#;
const POLL: Duration = Duration::from_millis(100);
/// How long a change in OpenBao may take to be published.
const WITHIN: Duration = Duration::from_secs(10);

struct VaultRig {
    rig: Rig,
    bao: Bao,
    settings: Settings,
    _dir: tempfile::TempDir,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A rig whose publisher reads VaultCertificates from `bao` with `auth`.
async fn mk_vault_rig(
    bao: Bao,
    auth: impl FnOnce(&Bao, &FakeApiServer, &std::path::Path) -> Auth,
) -> VaultRig {
    let mut rig = Rig::new(credential_policy(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        addr: bao.addr(),
        auth: auth(&bao, &rig.server, dir.path()),
        ca_file: None,
        namespace: None,
    };
    let tasks = with_vault(&mut rig, &settings).await;
    VaultRig {
        rig,
        bao,
        settings,
        _dir: dir,
        _tasks: tasks,
    }
}

/// Gives the rig's (new) publisher VaultCertificates read with `settings`.
async fn with_vault(rig: &mut Rig, settings: &Settings) -> Vec<tokio::task::JoinHandle<()>> {
    let client = VaultClient::new(settings.clone()).unwrap();
    let kube = rig.server.client().unwrap();
    let (vault, tasks) = VaultSources::start(
        &kube,
        client,
        KvSettings {
            mount: "secret".into(),
            prefix: "cert-sync".into(),
        },
        PollSettings {
            interval: POLL,
            rate: 50,
        },
        &Arc::new(Notify::new()),
    );
    vault.wait_ready().await.unwrap();
    rig.publisher =
        Publisher::new(rig.stores.clone(), None, std::path::Path::new("")).with_vault(vault);
    tasks
}

/// Kubernetes auth as deployed: OpenBao's `auth/kubernetes` reviews the
/// controller's ServiceAccount token with the (fake) API server.
fn kubernetes_auth(bao: &Bao, server: &FakeApiServer, dir: &std::path::Path) -> Auth {
    let jwt = bao::service_account_jwt(SA.0, SA.1, SA.2);
    server.add_token(&jwt, SA.0, SA.1, SA.2);
    bao.write_policy("cert-sync", POLICY).unwrap();
    bao.enable_kubernetes_auth(&format!("http://{}", server.addr()), None)
        .unwrap();
    bao.kubernetes_role("cert-sync", &[SA.1], &[SA.0], &["cert-sync"], None)
        .unwrap();
    let jwt_file = dir.join("token");
    std::fs::write(&jwt_file, &jwt).unwrap();
    Auth::Kubernetes {
        mount: "kubernetes".into(),
        role: "cert-sync".into(),
        jwt_file,
    }
}

fn kv(pair: Pair) -> Value {
    json!({ "tls.crt": pair.cert, "tls.key": pair.key })
}

fn mk_vault_certificate(ns: &str, name: &str, path: &str) -> Value {
    json!({
        "apiVersion": "certsync.istio.io/v1alpha1", "kind": "VaultCertificate",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"path": path},
    })
}

impl VaultRig {
    /// `apps/shop` kept in OpenBao as `pair`, its VaultCertificate created,
    /// and published.
    async fn publish_shop(&mut self, pair: Pair) {
        self.bao
            .kv_put("secret", "cert-sync/apps/shop", &kv(pair))
            .unwrap();
        self.rig
            .put(mk_vault_certificate("apps", "shop", "shop"))
            .await;
        self.until("published", |r| serves(r, pair)).await;
    }

    /// Passes until `done` holds (the poller runs on its own clock).
    async fn until(&mut self, what: &str, done: impl Fn(&Rig) -> bool) {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            self.rig.pass(NOW).await.unwrap();
            self.rig.record(None).await;
            self.rig.settle().await;
            if done(&self.rig) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{what}: not within {WITHIN:?}; OpenBao log:\n{}",
                    self.bao.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn serves(rig: &Rig, pair: Pair) -> bool {
    rig.published("apps.shop")
        .is_some_and(|s| data_of(&s, "tls.crt") == pair.cert && data_of(&s, "tls.key") == pair.key)
}

fn warned(rig: &Rig, reason: &str) -> bool {
    rig.events_about("shop").iter().any(|e| {
        e["type"] == "Warning"
            && e["reason"] == reason
            && (e["regarding"]["kind"] == "VaultCertificate"
                || e["involvedObject"]["kind"] == "VaultCertificate")
    })
}

fn status_lists(rig: &Rig, reason: &str) -> bool {
    rig.manifest()["refusals"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["reason"] == reason && r["subject"] == "vaultcertificate apps/shop")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_certificate_is_published_rotated_kept_and_unpublished() {
    let bao = Bao::start().unwrap();
    let mut v = mk_vault_rig(bao, kubernetes_auth).await;
    v.publish_shop(P256).await;
    let published = v.rig.published("apps.shop").unwrap();
    assert_eq!(
        published["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "cert-sync"
    );
    assert!(
        v.rig
            .events_about("shop")
            .iter()
            .any(|e| e["reason"] == "Published"),
        "a Published Event on the VaultCertificate"
    );
    // Logged in through Kubernetes auth: OpenBao reviewed our token.
    let reviews = v.rig.server.token_reviews();
    assert!(!reviews.is_empty(), "OpenBao never asked the API server");

    // A new version is published.
    v.bao
        .kv_put("secret", "cert-sync/apps/shop", &kv(P384))
        .unwrap();
    v.until("rotated", |r| serves(r, P384)).await;

    // A broken version (key of another certificate) is refused; P384 stays.
    let broken = json!({ "tls.crt": P256.cert, "tls.key": P384.key });
    v.bao
        .kv_put("secret", "cert-sync/apps/shop", &broken)
        .unwrap();
    v.until("refused", |r| warned(r, "KeyMismatch")).await;
    assert!(serves(&v.rig, P384), "the last good certificate stays");
    assert!(status_lists(&v.rig, "KeyMismatch"));

    // Deleted in OpenBao: unpublished, and told.
    v.bao
        .kv_delete_all("secret", "cert-sync/apps/shop")
        .unwrap();
    v.until("unpublished", |r| r.published("apps.shop").is_none())
        .await;
    assert!(status_lists(&v.rig, "NotFound"));
    assert_no_key_material(&v.rig);
    assert_allowed_by_base_rbac(&v.rig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_keeps_the_last_good_and_is_told() {
    let bao = Bao::start().unwrap();
    let mut v = mk_vault_rig(bao, kubernetes_auth).await;
    v.publish_shop(RSA).await;

    // Sealed: 503 on every request.
    v.bao.seal().unwrap();
    v.until("sealed told", |r| warned(r, "VaultUnavailable"))
        .await;
    assert!(serves(&v.rig, RSA));
    assert!(status_lists(&v.rig, "VaultUnavailable"));
    v.bao.unseal().unwrap();
    v.bao
        .kv_put("secret", "cert-sync/apps/shop", &kv(P256))
        .unwrap();
    v.until("back after unseal", |r| serves(r, P256)).await;

    // Stopped: nothing answers. The Secret stays; a restarted controller
    // (nothing polled yet, Vault still down) keeps it too.
    v.bao.stop();
    v.until("outage told", |r| status_lists(r, "VaultUnavailable"))
        .await;
    assert!(serves(&v.rig, P256));
    for _ in 0..3 {
        v.rig.pass(NOW).await.unwrap();
    }
    assert!(
        serves(&v.rig, P256),
        "never unpublished while Vault is down"
    );
    v.rig.restart().await;
    v._tasks = with_vault(&mut v.rig, &v.settings.clone()).await;
    v.until("outage told after restart", |r| {
        status_lists(r, "VaultUnavailable")
    })
    .await;
    assert!(
        serves(&v.rig, P256),
        "a restart while Vault is down unpublishes nothing"
    );
    assert_no_key_material(&v.rig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_access_is_told_and_tenants_stay_in_their_prefix() {
    let bao = Bao::start().unwrap();
    // Token auth with a policy that reads only team-a's subtree.
    let mut v = mk_vault_rig(bao, |bao, _, dir| {
        bao.write_policy(
            "team-a",
            r#"path "secret/data/cert-sync/team-a/*" { capabilities = ["read"] }
               path "secret/metadata/cert-sync/team-a/*" { capabilities = ["read"] }"#,
        )
        .unwrap();
        let token = bao
            .create_token(&["team-a"], Duration::from_secs(600))
            .unwrap();
        let file = dir.join("vault-token");
        std::fs::write(&file, token).unwrap();
        Auth::TokenFile(file)
    })
    .await;
    v.bao
        .kv_put("secret", "cert-sync/team-a/web", &kv(P256))
        .unwrap();
    v.bao
        .kv_put("secret", "cert-sync/apps/shop", &kv(P384))
        .unwrap();
    v.rig
        .put(mk_vault_certificate("team-a", "web", "web"))
        .await;
    v.rig
        .put(mk_vault_certificate("apps", "shop", "shop"))
        .await;
    // A path trying to leave its namespace's prefix is refused outright.
    v.rig
        .put(mk_vault_certificate("apps", "escape", "../team-a/web"))
        .await;

    v.until("team-a published", |r| r.published("team-a.web").is_some())
        .await;
    v.until("denied told", |r| warned(r, "VaultDenied")).await;
    assert!(v.rig.published("apps.shop").is_none());
    assert!(status_lists(&v.rig, "VaultDenied"));
    assert!(v.rig.published("apps.escape").is_none());
    assert!(
        v.rig
            .events_about("escape")
            .iter()
            .any(|e| e["reason"] == "InvalidVaultPath"),
        "InvalidVaultPath told"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_the_role_does_not_admit_is_denied() {
    let bao = Bao::start().unwrap();
    let mut v = mk_vault_rig(bao, |bao, server, dir| {
        let auth = kubernetes_auth(bao, server, dir);
        // The role admits another ServiceAccount only.
        bao.kubernetes_role(
            "cert-sync",
            &["someone-else"],
            &[SA.0],
            &["cert-sync"],
            None,
        )
        .unwrap();
        auth
    })
    .await;
    v.bao
        .kv_put("secret", "cert-sync/apps/shop", &kv(P256))
        .unwrap();
    v.rig
        .put(mk_vault_certificate("apps", "shop", "shop"))
        .await;
    v.until("denied told", |r| warned(r, "VaultDenied")).await;
    assert!(v.rig.published("apps.shop").is_none());
}

/// The mesh CA from a Vault path: written as `cacerts`, a leaf put there
/// is refused with the last good kept, and an outage keeps it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_ca_can_come_from_vault() {
    use certsync_controller::app::publish::{MeshCa, MeshCaFrom, MeshCaSettings};
    use certsync_controller::core::model::ObjectRef;
    use certsync_testkit::mesh_pki::{CaSpec, MeshRoot};
    let mut bao = Bao::start().unwrap();
    let mut rig = Rig::new(credential_policy(), None).await;
    bao.write_policy(
        "mesh",
        r#"path "secret/data/mesh/*" { capabilities = ["read"] }
           path "secret/metadata/mesh/*" { capabilities = ["read"] }"#,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(
        &token_file,
        bao.create_token(&["mesh"], Duration::from_secs(600))
            .unwrap(),
    )
    .unwrap();
    let client = VaultClient::new(Settings {
        addr: bao.addr(),
        auth: Auth::TokenFile(token_file),
        ca_file: None,
        namespace: None,
    })
    .unwrap();
    rig.publisher = Publisher::new(rig.stores.clone(), None, std::path::Path::new(""))
        .with_mesh_ca(MeshCa::new(
            MeshCaSettings {
                from: MeshCaFrom::Vault {
                    path: "mesh/istio-ca".into(),
                },
                target: ObjectRef::new(GW, "cacerts"),
                min_left: 86_400,
            },
            Some((client, "secret".into())),
        ));
    let now = jiff::Timestamp::now().as_second();
    let root = MeshRoot::new("mesh root").unwrap();
    let ca = root.intermediate(&CaSpec::default()).unwrap();
    let fields =
        |cert: &str, key: &str| json!({"tls.crt": cert, "tls.key": key, "ca.crt": root.pem()});
    bao.kv_put(
        "secret",
        "mesh/istio-ca",
        &fields(&ca.cert_pem, &ca.key_pem),
    )
    .unwrap();
    rig.pass(now).await.unwrap();
    let cacerts = |rig: &Rig| rig.server.get("secrets", GW, "cacerts").expect("cacerts");
    assert_eq!(data_of(&cacerts(&rig), "ca-key.pem"), ca.key_pem);
    assert_eq!(data_of(&cacerts(&rig), "root-cert.pem"), root.pem());

    let leaf = root
        .intermediate(&CaSpec {
            is_ca: false,
            ..CaSpec::default()
        })
        .unwrap();
    bao.kv_put(
        "secret",
        "mesh/istio-ca",
        &fields(&leaf.cert_pem, &leaf.key_pem),
    )
    .unwrap();
    rig.pass(now).await.unwrap();
    assert_eq!(
        data_of(&cacerts(&rig), "ca-key.pem"),
        ca.key_pem,
        "last good kept"
    );
    assert_warned(&rig, "cacerts", "NotACA");

    bao.stop();
    rig.pass(now).await.unwrap();
    assert_eq!(
        data_of(&cacerts(&rig), "ca-key.pem"),
        ca.key_pem,
        "kept while Vault is down"
    );
    assert_warned(&rig, "cacerts", "VaultUnavailable");
}

#[path = "support/rbac_rules.rs"]
mod rbac_rules;

/// Every request of the scenario is allowed by `deploy/base/rbac.yaml`.
fn assert_allowed_by_base_rbac(rig: &Rig) {
    let rules = rbac_rules::rules_of(include_str!("../deploy/base/rbac.yaml"));
    // OpenBao's TokenReview, not cert-sync's request: it is authorized by
    // Vault's reviewer JWT (or, without one, by the token under review:
    // README "Kubernetes auth" says which binding each needs).
    rbac_rules::assert_all_allowed(&rules, &rig.server.requests(), |r| {
        r.resource.as_deref() == Some("tokenreviews.authentication.k8s.io")
    });
}
