//! Service-account JWTs for OpenBao's Kubernetes auth, shaped like the
//! projected tokens a kind cluster mounts in pods.

use base64::Engine;
use serde_json::json;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The API server audience the fake API server assumes
/// (`certsync_fakekube::API_AUDIENCE`), also the issuer of a kind cluster's
/// service account tokens.
pub const KUBERNETES_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// A JWT shaped like the projected service account token a kind cluster
/// mounts in a pod, for `namespace/name` with `uid`, audience
/// [`KUBERNETES_AUDIENCE`], valid for an hour. See
/// [`service_account_jwt_with`].
pub fn service_account_jwt(namespace: &str, name: &str, uid: &str) -> String {
    service_account_jwt_with(
        namespace,
        name,
        uid,
        &[KUBERNETES_AUDIENCE],
        Duration::from_secs(3600),
    )
}

/// A service-account JWT with the given audiences and lifetime. Each call
/// gives a different token (`jti` and signature are random).
///
/// It is not really signed: OpenBao's Kubernetes auth verifies no
/// signature unless `pem_keys` are configured (openbao
/// `internal/builtin/credential/kubernetes/path_login.go:324-327`,
/// `DontVerifySignature` at :283-296) and leaves that to the API server's
/// TokenReview, i.e. to the fake's registered tokens. What it does check,
/// and so what is here (openbao at df6ce2ceba, the 2.7 line; hashicorp/cap
/// v0.13.0, which it pins):
/// - `alg` one of RS/ES256-512 (path_login.go:28-31; cap `jwt/jwt.go:314-345`)
///   and a non-empty signature (cap jwt.go:327-329);
/// - `exp`/`nbf`/`iat` not past/future, if present (cap jwt.go:244-306);
/// - `iss` only if the config sets `issuer` (path_login.go:307-313: the
///   default issuer is stored but never put in `expected`);
/// - `aud` against the role's `audience`, if set (path_login.go:316-319),
///   and sent as the TokenReview's `spec.audiences` (:460-464);
/// - the service account from the projected `kubernetes.io` claim
///   (`namespace`, `serviceaccount.name`/`uid`), preferred over the legacy
///   `kubernetes.io/serviceaccount/*` claims (path_login.go:391-449),
///   matched against the role (:351-379) and then against the TokenReview's
///   username and uid (:469-483, token_review.go:119-134).
pub fn service_account_jwt_with(
    namespace: &str,
    name: &str,
    uid: &str,
    audiences: &[&str],
    lifetime: Duration,
) -> String {
    let now = jiff::Timestamp::now().as_second();
    let lifetime = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2);
    let header = json!({ "alg": "RS256", "kid": "certsync-test" });
    let claims = json!({
        "aud": audiences,
        "exp": now.saturating_add(lifetime),
        "iat": now,
        "nbf": now,
        "iss": KUBERNETES_AUDIENCE,
        "jti": hex(&random_bytes(16)),
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": { "name": name, "uid": uid },
        },
    });
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        // The size of an RS256 signature with a 2048-bit key.
        b64(&random_bytes(256)),
    )
}

/// `n` random bytes from the kernel; should that fail, a time-seeded
/// generator (these are test tokens: unique, not secret).
pub(super) fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut out));
    if read.is_err() {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut state = nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(32);
        for byte in &mut out {
            // splitmix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            *byte = (z ^ (z >> 31)) as u8;
        }
    }
    out
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn jwt_carries_the_projected_claims() {
        let jwt = service_account_jwt("istio-system", "cert-sync", "uid-1");
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |s: &str| -> Value {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        assert_eq!(decode(parts[0])["alg"], "RS256");
        let claims = decode(parts[1]);
        assert_eq!(claims["kubernetes.io"]["namespace"], "istio-system");
        assert_eq!(claims["kubernetes.io"]["serviceaccount"]["uid"], "uid-1");
        assert_eq!(claims["aud"], json!([KUBERNETES_AUDIENCE]));
        assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
        assert!(!parts[2].is_empty());
        assert_ne!(
            jwt,
            service_account_jwt("istio-system", "cert-sync", "uid-1")
        );
    }
}
