//! TokenReview through kube-rs' typed API, as a Kubernetes auth method sees
//! it: authenticated users, audiences, unknown tokens, a missing bearer, and
//! the review showing in the request log, the review log and faults.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

mod common;

use std::time::{Duration, Instant};

use certsync_fakekube::{FakeApiServer, FaultMatch, ServiceAccountToken, Verb, API_AUDIENCE};
use hyper::header::{HeaderValue, AUTHORIZATION};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};

const REVIEWER: &str = "reviewer-token";

/// A client that presents `bearer`, as a TokenReview caller must.
fn client_as(fake: &FakeApiServer, bearer: Option<&str>) -> kube::Client {
    let mut config = fake.config().unwrap();
    config.default_retry = false;
    if let Some(bearer) = bearer {
        config.headers.push((
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {bearer}")).unwrap(),
        ));
    }
    kube::Client::try_from(config).unwrap()
}

fn review(token: &str, audiences: &[&str]) -> TokenReview {
    TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.into()),
            audiences: (!audiences.is_empty())
                .then(|| audiences.iter().map(|a| a.to_string()).collect()),
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn registered_token_authenticates_its_service_account() {
    let fake = common::fake().await;
    fake.add_token("sa-token", "istio-system", "cert-sync", "uid-1");
    fake.add_token(REVIEWER, "vault", "token-reviewer", "uid-r");
    let api: Api<TokenReview> = Api::all(client_as(&fake, Some(REVIEWER)));

    let done = api
        .create(&PostParams::default(), &review("sa-token", &[]))
        .await
        .unwrap();
    let status = done.status.unwrap();
    assert_eq!(status.authenticated, Some(true));
    let user = status.user.unwrap();
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:istio-system:cert-sync")
    );
    assert_eq!(user.uid.as_deref(), Some("uid-1"));
    assert_eq!(
        user.groups.unwrap(),
        [
            "system:serviceaccounts",
            "system:serviceaccounts:istio-system",
            "system:authenticated"
        ]
    );
    assert_eq!(status.audiences.unwrap(), [API_AUDIENCE]);

    // Asked for another audience than the token's: not authenticated.
    let other = api
        .create(&PostParams::default(), &review("sa-token", &["openbao"]))
        .await
        .unwrap()
        .status
        .unwrap();
    assert_ne!(other.authenticated, Some(true));
    assert!(other.error.unwrap().contains("audiences"));

    // A token the cluster never issued.
    let unknown = api
        .create(&PostParams::default(), &review("forged", &[]))
        .await
        .unwrap()
        .status
        .unwrap();
    assert_ne!(unknown.authenticated, Some(true));
    assert!(unknown.error.unwrap().contains("invalid bearer token"));

    let reviews = fake.token_reviews();
    assert_eq!(reviews.len(), 3);
    assert_eq!(reviews[0].bearer, REVIEWER);
    assert_eq!(
        reviews[0].caller.as_deref(),
        Some("system:serviceaccount:vault:token-reviewer")
    );
    assert!(reviews[0].authenticated && !reviews[1].authenticated);
    let logged: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.resource.as_deref() == Some("tokenreviews.authentication.k8s.io"))
        .collect();
    assert_eq!(logged.len(), 3);
    assert!(logged
        .iter()
        .all(|r| r.verb == Verb::Create && r.status == 201));
}

#[tokio::test]
async fn audiences_come_from_the_registration() {
    let fake = common::fake().await;
    fake.add_service_account_token(
        ServiceAccountToken::new("t", "ns", "sa", "u").with_audiences(&["openbao", "vault"]),
    );
    let api: Api<TokenReview> = Api::all(client_as(&fake, Some("t")));
    let status = api
        .create(&PostParams::default(), &review("t", &["x", "vault"]))
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.authenticated, Some(true));
    assert_eq!(status.audiences.unwrap(), ["vault"]);

    // Deleting the service account invalidates its token.
    assert!(fake.remove_token("t"));
    let status = api
        .create(&PostParams::default(), &review("t", &["vault"]))
        .await
        .unwrap()
        .status
        .unwrap();
    assert_ne!(status.authenticated, Some(true));
}

#[tokio::test]
async fn a_caller_without_a_bearer_is_unauthorized_and_reads_are_refused() {
    let fake = common::fake().await;
    fake.add_token("t", "ns", "sa", "u");
    let anonymous: Api<TokenReview> = Api::all(client_as(&fake, None));
    match anonymous
        .create(&PostParams::default(), &review("t", &[]))
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 401),
        other => panic!("expected 401, got {other:?}"),
    }
    let api: Api<TokenReview> = Api::all(client_as(&fake, Some("t")));
    match api.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 405),
        other => panic!("expected 405, got {other:?}"),
    }
    assert!(fake.token_reviews().is_empty());
}

#[tokio::test]
async fn faults_apply_to_token_reviews() {
    let fake = common::fake().await;
    fake.add_token("t", "ns", "sa", "u");
    let api: Api<TokenReview> = Api::all(client_as(&fake, Some("t")));
    fake.add_latency(
        Duration::from_millis(300),
        FaultMatch::any().resource("tokenreviews"),
    );
    let started = Instant::now();
    api.create(&PostParams::default(), &review("t", &[]))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    fake.clear_faults();
    fake.fail_next(1, 503, FaultMatch::any().resource("tokenreviews"));
    match api.create(&PostParams::default(), &review("t", &[])).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 503),
        other => panic!("expected 503, got {other:?}"),
    }
}

#[tokio::test]
async fn discovery_lists_token_reviews_as_create_only() {
    let fake = common::fake().await;
    let client = client_as(&fake, None);
    let group = kube::discovery::group(&client, "authentication.k8s.io")
        .await
        .unwrap();
    let (resource, caps) = group
        .recommended_kind("TokenReview")
        .expect("TokenReview is discovered");
    assert_eq!(resource.plural, "tokenreviews");
    assert!(caps.supports_operation("create"));
    assert!(!caps.supports_operation("list"));
}
