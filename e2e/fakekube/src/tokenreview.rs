//! `authentication.k8s.io/v1` `TokenReview`: the API a Vault or OpenBao
//! Kubernetes auth method calls to check a service account token.
//!
//! A real API server verifies the token's signature and looks the service
//! account up; the fake knows only the tokens a test registered
//! ([`ServiceAccountToken`]), which stand for tokens the cluster issued. The
//! rest follows the API server: a review is created (POST, 201) and never
//! stored; the caller must present a bearer token (any is accepted, and
//! recorded, so tests can see who asked); an unknown, expired or
//! wrong-audience token is answered 201 with `authenticated` unset and an
//! `error`; a good one with the service account's user, its groups and the
//! audiences the token is good for.
//!
//! Audiences work as in `TokenReviewSpec`/`TokenReviewStatus`: with no
//! `spec.audiences` the API server's own audience is wanted
//! ([`API_AUDIENCE`]); the token's audiences are those registered, else its
//! JWT `aud` claim, else the API server's (a legacy token has no `aud`);
//! the review succeeds only if the two intersect, and `status.audiences` is
//! that intersection.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::http::{to_bytes, Ctx};
use crate::registry::ResourceType;
use crate::Shared;

/// The API server's audience, `--api-audiences` (defaulted from the service
/// account issuer) of a kubeadm or kind cluster: what projected tokens carry
/// in `aud` unless a pod asks for another.
pub const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// Groups every service account is in (the API server adds the
/// namespace's group and `system:authenticated`).
const SA_GROUP: &str = "system:serviceaccounts";
const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// A token the fake's cluster issued to a service account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountToken {
    /// The bearer token (a JWT or any opaque string).
    pub token: String,
    /// Namespace of the service account.
    pub namespace: String,
    /// Name of the service account.
    pub name: String,
    /// UID of the service account.
    pub uid: String,
    /// Audiences the token is good for; unset: the JWT's `aud` claim, else
    /// [`API_AUDIENCE`].
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
}

impl ServiceAccountToken {
    /// A token for `namespace/name`, audiences from the token itself.
    pub fn new(token: &str, namespace: &str, name: &str, uid: &str) -> Self {
        Self {
            token: token.into(),
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
            audiences: None,
        }
    }

    /// Sets the audiences the token is good for.
    pub fn with_audiences(mut self, audiences: &[&str]) -> Self {
        self.audiences = Some(audiences.iter().map(|a| a.to_string()).collect());
        self
    }

    /// `system:serviceaccount:<namespace>:<name>`.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

/// One TokenReview the fake answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenReviewRecord {
    /// The caller's bearer token (the reviewer JWT, or the reviewed token
    /// itself when the auth method has none configured).
    pub bearer: String,
    /// The caller's username, if its bearer is a registered token.
    pub caller: Option<String>,
    /// `spec.token`.
    pub token: String,
    /// `spec.audiences`.
    pub audiences: Vec<String>,
    /// `status.authenticated`.
    pub authenticated: bool,
    /// `status.user.username` when authenticated.
    pub username: Option<String>,
    /// `status.error`, when not authenticated.
    pub error: Option<String>,
}

/// Registered tokens and the reviews answered.
#[derive(Debug, Default)]
pub struct Tokens {
    by_token: HashMap<String, ServiceAccountToken>,
    reviews: Vec<TokenReviewRecord>,
}

impl Tokens {
    /// Registers (or replaces) a token.
    pub fn add(&mut self, token: ServiceAccountToken) {
        self.by_token.insert(token.token.clone(), token);
    }

    /// Forgets a token (its service account was deleted); true if known.
    pub fn remove(&mut self, token: &str) -> bool {
        self.by_token.remove(token).is_some()
    }

    /// Forgets every token.
    pub fn clear(&mut self) {
        self.by_token.clear();
    }

    /// The reviews answered, oldest first.
    pub fn reviews(&self) -> Vec<TokenReviewRecord> {
        self.reviews.clone()
    }

    /// Reviews `token` for `wanted` audiences at `now` (Unix seconds):
    /// `Ok((username-bearing token, status audiences))` or the error text.
    fn review(
        &self,
        token: &str,
        wanted: &[String],
        now: i64,
    ) -> Result<(&ServiceAccountToken, Vec<String>), String> {
        let sa = self
            .by_token
            .get(token)
            .ok_or_else(|| invalid("token lookup failed"))?;
        let claims = jwt_claims(token);
        if let Some(exp) = claims.as_ref().and_then(|c| c.get("exp")?.as_i64()) {
            if exp < now {
                return Err(invalid("service account token has expired"));
            }
        }
        let token_audiences = match &sa.audiences {
            Some(a) => a.clone(),
            None => claims
                .as_ref()
                .and_then(|c| audience_claim(c.get("aud")?))
                .unwrap_or_else(|| vec![API_AUDIENCE.to_string()]),
        };
        let wanted = if wanted.is_empty() {
            vec![API_AUDIENCE.to_string()]
        } else {
            wanted.to_vec()
        };
        let common: Vec<String> = wanted
            .iter()
            .filter(|a| token_audiences.contains(a))
            .cloned()
            .collect();
        if common.is_empty() {
            return Err(invalid(&format!(
                "token audiences {token_audiences:?} is invalid for the target audiences {wanted:?}"
            )));
        }
        Ok((sa, common))
    }
}

/// The error text of a failed review, shaped like the API server's
/// aggregate of its authenticators' errors.
fn invalid(why: &str) -> String {
    format!("[invalid bearer token, {why}]")
}

/// The claims of a JWT, read without verifying it (the fake's registry,
/// not a signature, says whether the token is good), if it is one.
fn jwt_claims(token: &str) -> Option<serde_json::Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(claims) => Some(claims),
        _ => None,
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
fn audience_claim(aud: &Value) -> Option<Vec<String>> {
    match aud {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    }
}

/// The `tokenreviews` resource: served by every API server, stored by none,
/// so it is not in the [`Registry`](crate::Registry).
pub fn resource_type() -> Arc<ResourceType> {
    static RT: OnceLock<Arc<ResourceType>> = OnceLock::new();
    RT.get_or_init(|| {
        Arc::new(
            ResourceType::new("authentication.k8s.io", "v1", "TokenReview", "tokenreviews")
                .cluster_scoped(),
        )
    })
    .clone()
}

/// True for `/apis/authentication.k8s.io/v1/tokenreviews[/…]`.
pub fn is_path(group: &str, version: &str, rest: &[&str]) -> bool {
    group == "authentication.k8s.io" && version == "v1" && rest.first() == Some(&"tokenreviews")
}

/// True for the [`resource_type`].
pub fn is_resource(rt: &ResourceType) -> bool {
    rt.group == "authentication.k8s.io" && rt.plural == "tokenreviews"
}

/// Handles `POST /apis/authentication.k8s.io/v1/tokenreviews`: the status
/// code and body, or the `Status` failure.
pub fn create(shared: &Shared, ctx: &Ctx) -> Result<(u16, Vec<u8>), ApiError> {
    let bearer = ctx
        .authorization
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::new(401, "Unauthorized"))?;
    let body = ctx.json_body()?;
    if let Some(kind) = body.get("kind").and_then(Value::as_str) {
        if kind != "TokenReview" {
            return Err(ApiError::bad_request(format!(
                "the body is a {kind}, not a TokenReview"
            )));
        }
    }
    let token = body
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or("");
    if token.is_empty() {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let audiences: Vec<String> = body
        .pointer("/spec/audiences")
        .and_then(audience_claim)
        .unwrap_or_default();
    let now = jiff::Timestamp::now().as_second();
    let mut tokens = shared.tokens();
    let caller = tokens
        .by_token
        .get(bearer)
        .map(ServiceAccountToken::username);
    let (status, record_user, record_error) = match tokens.review(token, &audiences, now) {
        Ok((sa, common)) => {
            let username = sa.username();
            let status = json!({
                "authenticated": true,
                "user": {
                    "username": username,
                    "uid": sa.uid,
                    "groups": [
                        SA_GROUP,
                        format!("{SA_GROUP}:{}", sa.namespace),
                        AUTHENTICATED_GROUP,
                    ],
                },
                "audiences": common,
            });
            (status, Some(username), None)
        }
        Err(error) => (json!({"user": {}, "error": error}), None, Some(error)),
    };
    tokens.reviews.push(TokenReviewRecord {
        bearer: bearer.to_string(),
        caller,
        token: token.to_string(),
        audiences: audiences.clone(),
        authenticated: record_user.is_some(),
        username: record_user,
        error: record_error,
    });
    let mut spec = json!({"token": token});
    if !audiences.is_empty() {
        spec["audiences"] = json!(audiences);
    }
    let review = json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": status,
    });
    Ok((201, to_bytes(&review)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: Value) -> String {
        let enc = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
        };
        format!("{}.{}.c2ln", enc(&json!({"alg": "RS256"})), enc(&claims))
    }

    fn tokens(token: ServiceAccountToken) -> Tokens {
        let mut t = Tokens::default();
        t.add(token);
        t
    }

    #[test]
    fn opaque_token_is_good_for_the_api_server_only() {
        let t = tokens(ServiceAccountToken::new("opaque", "ns", "sa", "u1"));
        let (sa, auds) = t.review("opaque", &[], 0).unwrap();
        assert_eq!(sa.username(), "system:serviceaccount:ns:sa");
        assert_eq!(auds, vec![API_AUDIENCE.to_string()]);
        let err = t.review("opaque", &["vault".into()], 0).unwrap_err();
        assert!(err.contains("invalid for the target audiences"), "{err}");
        assert!(t.review("other", &[], 0).unwrap_err().contains("lookup"));
    }

    #[test]
    fn jwt_aud_and_exp_are_honoured() {
        let token = jwt(json!({"aud": ["vault", "other"], "exp": 100}));
        let t = tokens(ServiceAccountToken::new(&token, "ns", "sa", "u1"));
        let wanted = vec!["x".to_string(), "vault".to_string()];
        assert_eq!(t.review(&token, &wanted, 50).unwrap().1, vec!["vault"]);
        assert!(t.review(&token, &[], 50).is_err(), "not for the API server");
        let err = t.review(&token, &wanted, 101).unwrap_err();
        assert!(err.contains("expired"), "{err}");
    }

    #[test]
    fn registered_audiences_win_over_the_claim() {
        let token = jwt(json!({"aud": "vault"}));
        let t = tokens(ServiceAccountToken::new(&token, "ns", "sa", "u1").with_audiences(&["bao"]));
        assert!(t.review(&token, &["vault".into()], 0).is_err());
        assert_eq!(t.review(&token, &["bao".into()], 0).unwrap().1, vec!["bao"]);
    }
}
