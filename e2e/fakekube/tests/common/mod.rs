//! Helpers shared by the integration tests: object builders and bounded
//! waits (no fixed sleeps).

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use certsync_fakekube::FakeApiServer;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::ByteString;
use kube::api::ObjectMeta;

/// Upper bound for any wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

pub async fn fake() -> FakeApiServer {
    FakeApiServer::start()
        .await
        .expect("fake API server starts")
}

/// A kube client that does not retry 429/503 by itself.
pub fn client_without_retry(fake: &FakeApiServer) -> kube::Client {
    let mut config = fake.config().expect("config");
    config.default_retry = false;
    kube::Client::try_from(config).expect("client")
}

pub fn secret(ns: &str, name: &str, type_: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        type_: Some(type_.into()),
        data: Some(
            [
                ("tls.crt".to_string(), ByteString(b"CERT".repeat(64))),
                ("tls.key".to_string(), ByteString(b"KEY".repeat(64))),
            ]
            .into(),
        ),
        ..Default::default()
    }
}

pub fn tls_secret(ns: &str, name: &str) -> Secret {
    secret(ns, name, "kubernetes.io/tls")
}

pub fn configmap(ns: &str, name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        data: Some([("k".to_string(), name.to_string())].into()),
        ..Default::default()
    }
}

/// The next item of a stream, or a panic after [`WAIT`].
pub async fn next<S: Stream + Unpin>(s: &mut S) -> S::Item {
    tokio::time::timeout(WAIT, s.next())
        .await
        .expect("stream produced an item in time")
        .expect("stream not ended")
}

/// Polls `cond` every 5 ms until it holds, or panics after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The resourceVersion of a kube object as a number.
pub fn rv<K: kube::Resource>(obj: &K) -> u64 {
    obj.meta()
        .resource_version
        .as_deref()
        .and_then(|s| s.parse().ok())
        .expect("numeric resourceVersion")
}

/// The HTTP status code of a kube API error.
pub fn api_code<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> u16 {
    match r {
        Err(kube::Error::Api(s)) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}
