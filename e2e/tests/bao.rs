//! The OpenBao harness proven against a real `bao server -dev`: Kubernetes
//! auth logging a service account in through the fake API server's
//! TokenReview, KV v2 reads under the role's policy, refusals of other
//! service accounts and forged tokens, and the admin helpers (versions,
//! deletes, extra mounts, tokens, seal/unseal, stop).
//!
//! No skipping: without `bao` (`bash .ci/bootstrap` installs it) these fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

use anyhow::{Context, Result};
use certsync_testkit::bao::{self, Bao, BaoError};
use certsync_testkit::http1;
use certsync_testkit::local::fake::FakeApi;
use certsync_testkit::procs;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

const NS: &str = "istio-system";
const SA: &str = "cert-sync";
const SA_UID: &str = "5d0c6d1e-cert-sync";
const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const POLICY: &str = r#"
path "secret/data/cert-sync/*" { capabilities = ["read"] }
path "secret/metadata/cert-sync/*" { capabilities = ["read", "list"] }
"#;

/// `fake-apiserver` alone (the controller is not needed here), prebuilt
/// ones if `CERTSYNC_E2E_BIN_DIR` says so.
fn fake_bins() -> Result<PathBuf> {
    match std::env::var_os(procs::BIN_DIR_ENV).filter(|d| !d.is_empty()) {
        Some(dir) => Ok(dir.into()),
        None => procs::build_binaries(&[("certsync-fakekube", "fake-apiserver")]),
    }
}

/// Registers a service account token with the fake (`/__fake/tokens`).
fn add_token(fake: &FakeApi, token: &str, namespace: &str, name: &str, uid: &str) -> Result<()> {
    let body = json!({ "token": token, "namespace": namespace, "name": name, "uid": uid });
    let response = http1::post(
        fake.addr(),
        "/__fake/tokens",
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )?;
    anyhow::ensure!(response.is_success(), "{}", response.text());
    Ok(())
}

fn fake_json(fake: &FakeApi, path: &str) -> Result<Vec<Value>> {
    let response = http1::get(fake.addr(), path)?;
    anyhow::ensure!(response.is_success(), "GET {path}: {}", response.text());
    serde_json::from_slice(&response.body).with_context(|| format!("parsing {path}"))
}

fn status_of(err: &anyhow::Error) -> u16 {
    err.downcast_ref::<BaoError>()
        .unwrap_or_else(|| panic!("not an OpenBao answer: {err:#}"))
        .status
}

#[test]
fn kubernetes_auth_through_the_fake_token_review_reads_kv() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fake = FakeApi::start(&fake_bins()?, dir.path())?;
    let bao = Bao::start()?;

    let jwt = bao::service_account_jwt(NS, SA, SA_UID);
    add_token(&fake, &jwt, NS, SA, SA_UID)?;
    let intruder = bao::service_account_jwt("default", "intruder", "uid-intruder");
    add_token(&fake, &intruder, "default", "intruder", "uid-intruder")?;

    bao.enable_kubernetes_auth(&format!("http://{}", fake.addr()), None)?;
    bao.write_policy(SA, POLICY)?;
    bao.kubernetes_role(SA, &[SA], &[NS], &[SA], None)?;
    let pem = json!({ "tls.crt": "CHAIN", "tls.key": "KEY" });
    let version = bao.kv_put("secret", "cert-sync/shop-tls", &pem)?;
    bao.kv_put("secret", "elsewhere/db", &json!({ "password": "x" }))?;

    let token = bao.kubernetes_login(SA, &jwt)?;
    let read = bao
        .kv_get(&token, "secret", "cert-sync/shop-tls")?
        .context("the role's token reads nothing")?;
    assert_eq!(read["data"], pem);
    assert_eq!(read["metadata"]["version"], json!(version));
    // The policy, not the login, bounds what the token reads.
    let err = bao.kv_get(&token, "secret", "elsewhere/db").unwrap_err();
    assert_eq!(status_of(&err), 403, "{err:#}");

    // The fake answered OpenBao's TokenReview; with no reviewer JWT
    // configured, the JWT being logged in with is the bearer.
    let requests = fake_json(&fake, "/__fake/requests")?;
    let review = requests
        .iter()
        .find(|r| r["path"] == TOKEN_REVIEWS)
        .context("no TokenReview in the fake's request log")?;
    assert_eq!(review["verb"], "create");
    assert_eq!(review["status"], 201);
    let reviews = fake_json(&fake, "/__fake/token-reviews")?;
    assert_eq!(reviews.len(), 1, "{reviews:?}");
    assert_eq!(reviews[0]["bearer"], json!(jwt));
    assert_eq!(reviews[0]["authenticated"], true);
    assert_eq!(
        reviews[0]["username"],
        "system:serviceaccount:istio-system:cert-sync"
    );
    assert_eq!(reviews[0]["audiences"], json!([bao::KUBERNETES_AUDIENCE]));

    // Another service account, though the cluster vouches for it: refused
    // by the role's bindings before any TokenReview.
    let err = bao.kubernetes_login(SA, &intruder).unwrap_err();
    assert_eq!(status_of(&err), 403, "{err:#}");
    assert_eq!(fake_json(&fake, "/__fake/token-reviews")?.len(), 1);

    // The right claims in a token the cluster never issued: the
    // TokenReview says no.
    let forged = bao::service_account_jwt(NS, SA, SA_UID);
    let err = bao.kubernetes_login(SA, &forged).unwrap_err();
    assert_eq!(status_of(&err), 403, "{err:#}");
    let reviews = fake_json(&fake, "/__fake/token-reviews")?;
    assert_eq!(reviews.len(), 2);
    assert_eq!(reviews[1]["authenticated"], false);

    // With a reviewer JWT configured, it is the TokenReview's bearer.
    let reviewer = bao::service_account_jwt("openbao", "token-reviewer", "uid-reviewer");
    add_token(
        &fake,
        &reviewer,
        "openbao",
        "token-reviewer",
        "uid-reviewer",
    )?;
    bao.enable_kubernetes_auth(&format!("http://{}", fake.addr()), Some(&reviewer))?;
    bao.kubernetes_login(SA, &jwt)?;
    let reviews = fake_json(&fake, "/__fake/token-reviews")?;
    let last = reviews.last().context("no review")?;
    assert_eq!(last["bearer"], json!(reviewer));
    assert_eq!(
        last["caller"],
        "system:serviceaccount:openbao:token-reviewer"
    );
    assert_eq!(last["authenticated"], true);
    Ok(())
}

#[test]
fn a_role_audience_must_be_in_the_token() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fake = FakeApi::start(&fake_bins()?, dir.path())?;
    let bao = Bao::start()?;
    let for_bao =
        bao::service_account_jwt_with(NS, SA, SA_UID, &["openbao"], Duration::from_secs(600));
    let for_kube = bao::service_account_jwt(NS, SA, SA_UID);
    add_token(&fake, &for_bao, NS, SA, SA_UID)?;
    add_token(&fake, &for_kube, NS, SA, SA_UID)?;
    bao.enable_kubernetes_auth(&format!("http://{}", fake.addr()), None)?;
    bao.kubernetes_role(SA, &[SA], &[NS], &["default"], Some("openbao"))?;

    bao.kubernetes_login(SA, &for_bao)?;
    let reviews = fake_json(&fake, "/__fake/token-reviews")?;
    assert_eq!(reviews[0]["audiences"], json!(["openbao"]));
    let err = bao.kubernetes_login(SA, &for_kube).unwrap_err();
    assert_eq!(status_of(&err), 403, "{err:#}");
    Ok(())
}

#[test]
fn admin_helpers_versions_mounts_tokens_seal_and_stop() -> Result<()> {
    let mut bao = Bao::start()?;
    assert!(bao.addr().starts_with("http://127.0.0.1:"));
    let root = bao.root_token().to_owned();

    assert_eq!(bao.kv_put("secret", "a", &json!({ "v": 1 }))?, 1);
    assert_eq!(bao.kv_put("secret", "a", &json!({ "v": 2 }))?, 2);
    bao.kv_soft_delete_latest("secret", "a")?;
    assert_eq!(bao.kv_get(&root, "secret", "a")?, None);
    let v1 = bao.root("GET", "/v1/secret/data/a?version=1", None)?;
    assert_eq!(v1["data"]["data"], json!({ "v": 1 }));
    bao.kv_delete_all("secret", "a")?;
    let err = bao.root("GET", "/v1/secret/metadata/a", None).unwrap_err();
    assert_eq!(status_of(&err), 404);

    bao.enable_kv2("certs")?;
    assert_eq!(bao.kv_put("certs", "shop", &json!({ "k": "v" }))?, 1);
    bao.write_policy(
        "certs-read",
        r#"path "certs/data/*" { capabilities = ["read"] }"#,
    )?;
    let token = bao.create_token(&["certs-read"], Duration::from_secs(300))?;
    let read = bao
        .kv_get(&token, "certs", "shop")?
        .context("nothing read")?;
    assert_eq!(read["data"], json!({ "k": "v" }));
    let err = bao.kv_get(&token, "secret", "a").unwrap_err();
    assert_eq!(status_of(&err), 403);

    bao.seal()?;
    assert!(bao.is_sealed()?);
    let err = bao.kv_get(&token, "certs", "shop").unwrap_err();
    assert_eq!(status_of(&err), 503);
    bao.unseal()?;
    assert!(!bao.is_sealed()?);
    let read = bao
        .kv_get(&token, "certs", "shop")?
        .context("lost on unseal")?;
    assert_eq!(read["data"], json!({ "k": "v" }));

    bao.stop();
    let err = bao.kv_get(&root, "certs", "shop").unwrap_err();
    assert!(err.downcast_ref::<BaoError>().is_none(), "{err:#}");
    Ok(())
}
