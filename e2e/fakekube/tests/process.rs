//! The fake as other processes use it: via a kubeconfig, through kube's
//! discovery, and as the standalone `fake-apiserver` binary driven over
//! `/__fake/…`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use certsync_fakekube::ResourceType;
use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, ListParams, PostParams, ResourceExt};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Discovery, Scope};
use serde_json::json;

async fn client_from_kubeconfig(path: &std::path::Path) -> kube::Client {
    let kc = Kubeconfig::read_from(path).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kube accepts the kubeconfig");
    kube::Client::try_from(config).expect("client")
}

#[tokio::test]
async fn kubeconfig_points_kube_at_the_fake() {
    let fake = fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&path).expect("write");
    let client = client_from_kubeconfig(&path).await;
    assert_eq!(client.default_namespace(), "default");
    let api: Api<Secret> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &tls_secret("default", "x"))
        .await
        .expect("create via kubeconfig client");
    assert!(fake.get("secrets", "default", "x").is_some());
}

#[tokio::test]
async fn discovery_finds_core_istio_and_runtime_registered_resources() {
    let fake = fake().await;
    let client = fake.client().expect("client");
    let version = client.apiserver_version().await.expect("version");
    assert_eq!(version.major, "1");

    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1alpha3", "EnvoyFilter");
    let (ar, caps) = discovery::pinned_kind(&client, &gvk)
        .await
        .expect("EnvoyFilter");
    assert_eq!(ar.plural, "envoyfilters");
    assert_eq!(caps.scope, Scope::Namespaced);

    fake.register(
        ResourceType::new(
            "security.istio.io",
            "v1",
            "PeerAuthentication",
            "peerauthentications",
        )
        .with_generation(),
    );
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    assert!(discovery.has_group("security.istio.io"));
    assert!(discovery.has_group("certsync.istio.io"));
    let (ar, _) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Secret"))
        .expect("secrets");
    assert_eq!(ar.plural, "secrets");

    let gvk = GroupVersionKind::gvk("security.istio.io", "v1", "PeerAuthentication");
    let (ar, _) = discovery::pinned_kind(&client, &gvk)
        .await
        .expect("registered at runtime");
    let api: Api<DynamicObject> = Api::namespaced_with(client, "istio-system", &ar);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "default"}, "spec": {"mtls": {"mode": "STRICT"}}
    }))
    .expect("object");
    let created = api
        .create(&PostParams::default(), &obj)
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));
}

/// Sends a raw request to the fake through a kube client (which keeps the
/// test free of a second HTTP client).
async fn admin(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let req = hyper::http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .expect("request");
    client.request(req).await.expect("admin request")
}

#[tokio::test]
async fn standalone_binary_serves_seeds_and_takes_faults_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let seed = dir.path().join("seed.json");
    let seeded = json!([
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
         "metadata": {"name": "seeded", "namespace": "apps"}, "data": {"tls.crt": "Q0VSVA=="}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}
    ]);
    std::fs::write(&seed, seeded.to_string()).expect("seed");

    let seed_arg = seed.display().to_string();
    let mut child = spawn_fake(&kubeconfig, &["--seed", &seed_arg]).await;

    let client = client_from_kubeconfig(&kubeconfig).await;
    let api: Api<Secret> = Api::namespaced(client.clone(), "apps");
    let list = api.list(&ListParams::default()).await.expect("list");
    assert_eq!(
        list.items.iter().map(|s| s.name_any()).collect::<Vec<_>>(),
        ["seeded"]
    );

    let fault = json!({"match": {"verb": "get", "resource": "secrets", "name": "seeded"},
                       "action": {"status": {"code": 500}}, "times": 1});
    let added = admin(&client, "POST", "/__fake/faults", fault).await;
    assert!(added["id"].as_u64().is_some());
    assert_eq!(api_code(api.get("seeded").await), 500);
    api.get("seeded").await.expect("fault fired once");

    let writes = admin(
        &client,
        "GET",
        "/__fake/writes?resource=secrets&namespace=apps&name=seeded",
        json!(null),
    )
    .await;
    assert_eq!(writes["writes"], json!(1));
    let requests = admin(&client, "GET", "/__fake/requests", json!(null)).await;
    assert!(requests.as_array().is_some_and(|r| r.len() >= 3));
    let restarted = admin(&client, "POST", "/__fake/restart", json!({})).await;
    assert!(restarted["resourceVersion"].as_u64().is_some());

    child.kill().expect("kill");
    child.wait().expect("wait");
}

#[tokio::test]
async fn dropping_the_handle_shuts_the_server_down() {
    let fake = fake().await;
    let addr = fake.addr();
    let api: Api<Secret> = Api::namespaced(fake.client().expect("client"), "apps");
    let mut watch = api
        .watch(&kube::api::WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    assert!(fake.wait_for_watches(1, WAIT).await);
    drop(fake);
    let ended = tokio::time::timeout(WAIT, async { while watch.next().await.is_some() {} }).await;
    assert!(ended.is_ok(), "open watch streams end");
    eventually("listener closed", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
}

#[tokio::test]
async fn standalone_binary_adds_latency_to_every_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = spawn_fake(&kubeconfig, &["--latency-ms", "150"]).await;
    let client = client_from_kubeconfig(&kubeconfig).await;
    let api: Api<Secret> = Api::namespaced(client, "apps");
    for _ in 0..3 {
        let started = std::time::Instant::now();
        api.list(&ListParams::default()).await.expect("list");
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(150),
            "{:?}",
            started.elapsed()
        );
    }
    child.kill().expect("kill");
    child.wait().expect("reaped");
}

/// `fake-apiserver --port 0 --kubeconfig-out KUBECONFIG EXTRA…`, once it
/// says it listens.
async fn spawn_fake(kubeconfig: &std::path::Path, extra: &[&str]) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-apiserver"))
        .args(["--port", "0", "--kubeconfig-out"])
        .arg(kubeconfig)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn fake-apiserver");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(WAIT, line)
        .await
        .expect("ready in time")
        .expect("join")
        .expect("read");
    assert!(line.starts_with("listening on http://127.0.0.1:"), "{line}");
    child
}
