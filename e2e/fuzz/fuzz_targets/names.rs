//! The small parsers of names cert-sync reads from objects it does not
//! write: a gateway's served hosts (`core::hosts`, Istio's
//! `[namespace/]host` or a Gateway API hostname, IDNA included), the
//! source list annotation of a published Secret (`desired::parse_sources`),
//! a fingerprint in hex, and SDS resource names (`certsync_contract::sds`).
//! The input is one line per name.
#![no_main]

use certsync_contract::{sds, Fingerprint, San};
use certsync_controller::core::desired::parse_sources;
use certsync_controller::core::hosts::{self, Host};
use certsync_controller::core::naming;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let sans = vec![
        San::Dns("shop.example.com".to_owned()),
        San::Dns("*.example.com".to_owned()),
        San::Dns("xn--bcher-kva.example".to_owned()),
    ];
    for line in &lines {
        if let Ok(host) = Host::parse(line) {
            // A parsed name is in the form certificates carry.
            if let Host::Dns(name) | Host::Wildcard(name) = &host {
                assert!(!name.is_empty() && !name.ends_with('.'), "{host:?}");
                assert_eq!(name.to_ascii_lowercase(), *name);
            }
            let _ = hosts::covers(&sans, &host);
        }
        for source in parse_sources(line) {
            assert!(!source.namespace.is_empty() && !source.name.is_empty());
        }
        if let Some(fp) = Fingerprint::from_hex(line) {
            assert_eq!(Fingerprint::from_hex(&fp.to_string()), Some(fp));
        }
        let _ = sds::stat_name(line);
        if let Some(secret) = sds::credential_secret(line) {
            assert_eq!(sds::credential(secret), *line);
        }
        let _ = naming::is_valid_secret_name(line);
    }
    let _ = hosts::uncovered(&sans, &lines);
});
