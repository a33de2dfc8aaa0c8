//! A reporter and a fake Envoy admin API that behaves like the real one
//! (the table in `tripwire`): which stamps and counters move on an accepted
//! xDS update, a `watched_directory` rotation and a refused update.

use crate::config::PluginConfig;
use crate::host::Response;
use crate::reporter::Reporter;
use crate::testing::{Call, FakeHost, Shared};
use crate::tripwire::stat_name;
use certsync_contract::report::Report;
use certsync_contract::{sds, summarize_chain, Fingerprint};
use std::collections::BTreeMap;

pub const RSA: &str = certsync_fixtures::pem_text!("rsa.chain.pem");
pub const P256: &str = certsync_fixtures::pem_text!("p256.chain.pem");
pub const P384: &str = certsync_fixtures::pem_text!("p384.chain.pem");

pub fn mk_config(extra: &str) -> PluginConfig {
    let heartbeat = if extra.contains("heartbeat_ms") {
        ""
    } else {
        r#","heartbeat_ms":3000"#
    };
    let resync = if extra.contains("resync_ms") {
        ""
    } else {
        r#","resync_ms":6000"#
    };
    let json = format!(
        r#"{{"report_cluster":"cert-sync","interval_ms":1000,"max_backoff_ms":8000,
            "report_token":"t0ken"{heartbeat}{resync}{extra}}}"#
    );
    PluginConfig::parse(json.as_bytes()).unwrap()
}

/// When the fake Envoy received version `stamp` of a secret.
fn received_at(stamp: &str) -> String {
    format!(
        "2026-11-22T00:00:{:02}.000Z",
        stamp.parse::<u32>().unwrap_or(0) % 60
    )
}

/// Whether Istio delivers `name` as a validation context (a CA bundle)
/// rather than a certificate and key.
pub fn is_ca(name: &str) -> bool {
    name == sds::ROOT_CA
        || name.ends_with(sds::CA_SUFFIX)
        || name.starts_with(sds::FILE_ROOT_PREFIX)
}

/// A config_dump body for (resource, stamp, PEM) triples. The stamp is the
/// `version_info`, or with a leading `@` that of a file source without one
/// (Envoy 1.40 then moves only `last_updated`).
pub fn mk_dump(secrets: &[(&str, &str, &str)]) -> Vec<u8> {
    let configs: Vec<serde_json::Value> = secrets
        .iter()
        .map(|(name, stamp, pem)| {
            let secret = if is_ca(name) {
                serde_json::json!({"name": name, "validation_context": {
                    "trusted_ca": {"inline_string": pem}}})
            } else {
                serde_json::json!({"name": name, "tls_certificate": {
                    "certificate_chain": {"inline_string": pem},
                    "private_key": {"inline_string": "[redacted]"}}})
            };
            let (version, stamp) = match stamp.strip_prefix('@') {
                Some(stamp) => ("", stamp),
                None => (*stamp, *stamp),
            };
            serde_json::json!({
                "name": name, "version_info": version, "last_updated": received_at(stamp),
                "secret": secret
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "configs": configs })).unwrap()
}

pub fn ok(body: Vec<u8>) -> Response {
    Response {
        status: Some(200),
        body,
    }
}

pub fn fp(pem: &str) -> Fingerprint {
    summarize_chain(pem.as_bytes()).unwrap().sha256
}

/// One reporter and its fake Envoy, with helpers that answer its calls.
pub struct Rig {
    pub shared: Shared,
    pub reporter: Reporter<FakeHost>,
    pub now: u64,
    /// What `config_dump` shows: (name, stamp, chain) of the latest update
    /// Envoy received, accepted or not.
    pub loaded: Vec<(&'static str, String, &'static str)>,
    /// The chain each TLS context serves: the last update Envoy accepted.
    accepted: BTreeMap<&'static str, &'static str>,
    /// Sum of `ssl_context_update_by_sds`; `None`: Envoy does not expose it.
    pub tripwire: Option<u64>,
    /// `sds.<stat name>.key_rotation_failed` per secret; empty and unexposed
    /// when `failure_counters` is false.
    failures: BTreeMap<String, u64>,
    pub failure_counters: bool,
    /// Sum of the listener manager's listener change counters.
    pub listeners: u64,
    /// Answer requests of this kind (see [`kinds`]) with HTTP 503.
    pub failing: Option<&'static str>,
    /// Admin paths requested during the last `cycle`.
    pub paths: Vec<String>,
}

impl Rig {
    pub fn new(config: PluginConfig) -> Rig {
        let shared = Shared::default();
        let mut host = FakeHost::new(&shared);
        host.properties.insert(
            "node.id".into(),
            "router~10.1.2.3~gw-7d9f.istio-system~istio-system.svc.cluster.local".into(),
        );
        let mut rig = Rig {
            reporter: Reporter::new(host, config, 1),
            shared,
            now: 1_000_000,
            loaded: vec![],
            accepted: Default::default(),
            tripwire: Some(0),
            failures: BTreeMap::new(),
            failure_counters: true,
            listeners: 0,
            failing: None,
            paths: vec![],
        };
        rig.tick(); // provisional lease claim
        assert!(rig.calls().is_empty());
        rig
    }

    /// An xDS update Envoy accepts: its stamp and the context counter move.
    pub fn load(&mut self, name: &'static str, stamp: &str, pem: &'static str) {
        self.loaded.retain(|(n, _, _)| *n != name);
        self.loaded.push((name, stamp.to_owned(), pem));
        self.accepted.insert(name, pem);
        self.tripwire = self.tripwire.map(|t| t + 1);
    }

    /// A new TLS server with its secret: a listener update (Envoy updates
    /// the listener once the secret is warm); no TLS context counter moves.
    pub fn add_server(&mut self, name: &'static str, stamp: &str, pem: &'static str) {
        self.loaded.push((name, stamp.to_owned(), pem));
        self.accepted.insert(name, pem);
        self.listeners += 1;
    }

    /// A TLS server removed with its secret: a listener update.
    pub fn remove_server(&mut self, name: &'static str) {
        self.loaded.retain(|(n, _, _)| *n != name);
        self.accepted.remove(name);
        self.listeners += 1;
    }

    /// A `watched_directory` rotation on Envoy 1.36: the context counter
    /// moves, the secret's stamp does not.
    pub fn rotate_files(&mut self, name: &'static str, pem: &'static str) {
        let stamp = self.stamp(name);
        self.load(name, &stamp, pem);
    }

    /// An update Envoy refuses (say, a key that does not match): config_dump
    /// already shows the new chain, but no stamp and no context counter
    /// moves; only the secret's failure counter does.
    pub fn load_rejected(&mut self, name: &'static str, pem: &'static str) {
        let stamp = self.stamp(name);
        self.loaded.retain(|(n, _, _)| *n != name);
        self.loaded.push((name, stamp, pem));
        if self.failure_counters {
            *self.failures.entry(stat_name(name)).or_default() += 1;
        }
    }

    fn stamp(&self, name: &str) -> String {
        self.loaded
            .iter()
            .find(|(n, _, _)| *n == name)
            .map_or_else(|| "0".to_owned(), |(_, s, _)| s.clone())
    }

    /// `/certs`: the serials the TLS contexts hold: the leaf of a
    /// certificate, the first certificate of a CA bundle (as Envoy shows it).
    fn served_certs(&self) -> Vec<u8> {
        let contexts: Vec<serde_json::Value> = self
            .accepted
            .iter()
            .filter_map(|(name, pem)| Some((name, summarize_chain(pem.as_bytes()).ok()?)))
            .map(|(name, cert)| {
                let held = serde_json::json!([{"path": "<inline>", "serial_number": cert.serial.to_uppercase()}]);
                if is_ca(name) {
                    serde_json::json!({"ca_cert": held, "cert_chain": []})
                } else {
                    serde_json::json!({"ca_cert": [], "cert_chain": held})
                }
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "certificates": contexts })).unwrap()
    }

    pub fn tick(&mut self) {
        self.now += 1000;
        self.shared.set_now(self.now);
        self.reporter.on_tick();
    }

    pub fn calls(&self) -> Vec<Call> {
        self.reporter.host().take_calls()
    }

    fn dump(&self, only: Option<&[&str]>) -> Vec<u8> {
        let secrets: Vec<(&str, &str, &str)> = self
            .loaded
            .iter()
            .filter(|(n, _, _)| only.is_none_or(|o| o.contains(n)))
            .map(|(n, s, p)| (*n, s.as_str(), *p))
            .collect();
        mk_dump(&secrets)
    }

    pub fn respond(&mut self, call: &Call, response: Response) {
        self.reporter.on_response(call.token, response);
    }

    fn tripwire_body(&self) -> Vec<u8> {
        let contexts = self.tripwire.into_iter().map(|v| {
            serde_json::json!({"name": "listener.0.0.0.0_443.server_ssl_socket_factory.ssl_context_update_by_sds", "value": v})
        });
        let failures = self.failures.iter().map(|(name, v)| {
            serde_json::json!({"name": format!("sds.{name}.key_rotation_failed"), "value": v})
        });
        let listeners = (self.listeners > 0).then(|| {
            serde_json::json!({"name": "listener_manager.listener_in_place_updated", "value": self.listeners})
        });
        let stats: Vec<serde_json::Value> = contexts.chain(failures).chain(listeners).collect();
        serde_json::to_vec(&serde_json::json!({ "stats": stats })).unwrap()
    }

    /// Runs one tick, answering the admin API like Envoy; returns the report
    /// the filter sent, if any, without answering it.
    pub fn cycle(&mut self) -> Option<(Call, Report)> {
        self.tick();
        self.paths.clear();
        loop {
            let mut calls = self.calls();
            let call = match calls.len() {
                0 => return None,
                1 => calls.remove(0),
                n => panic!("{n} calls in flight at once"),
            };
            if call.cluster == "cert-sync" {
                let report = Report::decode(call.body.as_deref().unwrap()).unwrap();
                return Some((call, report));
            }
            assert_eq!(call.cluster, "cert-sync-admin");
            self.paths.push(call.path().to_owned());
            if self.failing == Some(kinds(&[call.path().to_owned()])[0]) {
                let unavailable = Response {
                    status: Some(503),
                    body: vec![],
                };
                self.respond(&call, unavailable);
                continue;
            }
            let body = if call.path().starts_with("/stats") {
                self.tripwire_body()
            } else if call.path() == "/certs" {
                self.served_certs()
            } else if call.path().contains("name_regex") {
                let names: Vec<&str> = self
                    .loaded
                    .iter()
                    .map(|(n, _, _)| *n)
                    .filter(|n| {
                        call.path().contains(
                            &n.replace('.', "%5C.")
                                .replace(':', "%3A")
                                .replace('/', "%2F"),
                        )
                    })
                    .collect();
                self.dump(Some(&names))
            } else {
                self.dump(None)
            };
            self.respond(&call, ok(body));
        }
    }

    pub fn cycle_and_ack(&mut self) -> Option<Report> {
        let (call, report) = self.cycle()?;
        self.respond(&call, ok(vec![]));
        Some(report)
    }
}

/// Short names for the admin paths a cycle requested.
pub fn kinds(paths: &[String]) -> Vec<&'static str> {
    paths
        .iter()
        .map(|p| match p.as_str() {
            p if p.starts_with("/stats") => "tripwire",
            p if p.contains("mask=") => "index",
            p if p.contains("name_regex=") => "secrets(changed)",
            "/certs" => "certs",
            _ => "secrets(all)",
        })
        .collect()
}
