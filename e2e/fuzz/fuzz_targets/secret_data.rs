//! A Secret's data as the controller reads it, through every path that
//! takes Secret data: a source's `tls.crt`/`tls.key`/`ca.crt` into
//! validation (`core::validation::check`, the gate before publication), a
//! natively referenced Secret in istiod's layout (`core::referenced`), a
//! mesh CA source (`core::mesh_ca::check`), and the managed Secrets' data
//! summarized for the last good (`PublishedSecret::digest_data`).
//!
//! The input is the data map: `key\0value\0key\0value...`.
#![no_main]

use certsync_contract::summarize_chain;
use certsync_controller::core::mesh_ca;
use certsync_controller::core::model::{Blob, ObjectRef, PublishedSecret, SourceData};
use certsync_controller::core::referenced::{check_secret, istio_layout, SecretCheck};
use certsync_controller::core::validation;
use certsync_controller::core::vault::{self, Fields};
use certsync_fuzz::{assert_no_key_bytes, NOW};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

/// Asserts `message` quotes nothing of the key in `data` (`key`), beyond
/// what the Secret's other values hold too.
fn no_key_bytes(message: &str, key: Option<&Blob>, raw: &BTreeMap<String, Vec<u8>>) {
    let Some(key) = key.and_then(Blob::bytes) else {
        return;
    };
    let others: Vec<&[u8]> = raw
        .values()
        .filter(|v| v.as_slice() != key)
        .map(Vec::as_slice)
        .collect();
    assert_no_key_bytes(message, key, &others);
}

fn blobs(raw: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Blob> {
    raw.iter()
        .map(|(k, v)| (k.clone(), Blob::from(v.as_slice())))
        .collect()
}

fn validation(raw: &BTreeMap<String, Vec<u8>>, data: &SourceData) {
    let source = ObjectRef::new("shop", "shop-tls");
    match validation::check(&source, data, NOW) {
        Ok(valid) => {
            let cert = data
                .cert_pem
                .as_ref()
                .and_then(Blob::bytes)
                .unwrap_or_default();
            let summary = summarize_chain(cert);
            assert_eq!(summary.map(|s| s.sha256), Ok(valid.source_sha256));
            assert!(validation::recheck(&valid, NOW).is_ok());
        }
        Err(refusal) => {
            assert!(!refusal.reason.is_empty());
            no_key_bytes(&refusal.message, data.key_pem.as_ref(), raw);
        }
    }
}

fn referenced(raw: &BTreeMap<String, Vec<u8>>) {
    let data = istio_layout(blobs(raw));
    if let SecretCheck::Unservable { message, .. } = check_secret(&data) {
        no_key_bytes(&message, data.key_pem.as_ref(), raw);
    }
}

fn mesh_ca(raw: &BTreeMap<String, Vec<u8>>, data: &SourceData) {
    match mesh_ca::check(data, NOW, 0) {
        Ok(ca) => {
            assert_eq!(ca.data.len(), 4);
            assert!(!ca.roots.is_empty());
        }
        Err(refused) => no_key_bytes(&refused.message, data.key_pem.as_ref(), raw),
    }
}

fuzz_target!(|input: &[u8]| {
    let mut raw = BTreeMap::new();
    let mut parts = input.split(|b| *b == 0);
    while let (Some(key), Some(value)) = (parts.next(), parts.next()) {
        raw.insert(String::from_utf8_lossy(key).into_owned(), value.to_vec());
    }
    // What `runtime::kube::cluster::read_source` takes of a Secret (and a
    // VaultCertificate's default fields): tls.crt, tls.key, ca.crt.
    let data = vault::layout(&Fields::default(), blobs(&raw));
    let _ = vault::missing_field(&Fields::default(), &data);
    validation(&raw, &data);
    referenced(&raw);
    mesh_ca(&raw, &data);
    let (digests, certificates) =
        PublishedSecret::digest_data(raw.iter().map(|(k, v)| (k.clone(), v.as_slice())));
    assert_eq!(digests.len(), raw.len());
    assert!(certificates.iter().all(|(k, _)| k.ends_with(".crt")));
});
