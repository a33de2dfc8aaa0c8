//! What the reporter last saw Envoy serve, per SDS resource: the admin
//! stamp it was read at and the certificate summary (or why it did not parse).
//! Stamps, and the serials the TLS contexts hold, let a poll re-read only the
//! secrets that may have changed; what counts as a change is the content
//! reported ([`Observed`] and the version), not the stamp.

use crate::admin::{normalize_serial, IndexEntry, Served};
use certsync_contract::cert::chain_fingerprints;
use certsync_contract::report::{LoadedCertificate, ResourceError};
use certsync_contract::{sds, summarize_chain, CertSummary, Fingerprint};
use std::collections::{BTreeMap, BTreeSet};

/// What Envoy holds for one resource, as reported: the first certificate's
/// summary and, for the mesh identity (`default`, `ROOTCA`), the
/// fingerprints of the certificates after it. A new intermediate behind the
/// same leaf, or a root added to the bundle, is a different `Observed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub cert: CertSummary,
    /// `LoadedCertificate::chain_sha256`: empty but for the mesh identity.
    pub chain_sha256: Vec<Fingerprint>,
}

impl Observed {
    /// Reads `resource`'s PEM chain or bundle (first certificate first).
    pub fn read(resource: &str, pem: &[u8]) -> Result<Observed, String> {
        let cert = summarize_chain(pem).map_err(|e| e.to_string())?;
        let chain_sha256 = if sds::is_mesh_identity(resource) {
            chain_fingerprints(pem).map_err(|e| e.to_string())?
        } else {
            Vec::new()
        };
        Ok(Observed { cert, chain_sha256 })
    }
}

struct Entry {
    stamp: String,
    version: String,
    observed: Result<Observed, String>,
    /// Why the latest update Envoy received is not what it serves.
    rejected: Option<String>,
}

#[derive(Default)]
pub struct Inventory {
    entries: BTreeMap<String, Entry>,
}

impl Inventory {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Forgets resources absent from `index`; returns their names.
    pub fn remove_missing(&mut self, index: &[IndexEntry]) -> Vec<String> {
        let present: BTreeSet<&str> = index.iter().map(|e| e.name.as_str()).collect();
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|k| !present.contains(k.as_str()))
            .cloned()
            .collect();
        for name in &gone {
            self.entries.remove(name);
        }
        gone
    }

    /// Names in `index` that are new or whose stamp moved.
    pub fn changed<'a>(&self, index: &'a [IndexEntry]) -> Vec<&'a str> {
        index
            .iter()
            .filter(|e| {
                self.entries
                    .get(&e.name)
                    .is_none_or(|known| known.stamp != e.stamp)
            })
            .map(|e| e.name.as_str())
            .collect()
    }

    /// Resources whose served certificate may have changed although no stamp
    /// moved (Envoy 1.36 leaves them still on a `watched_directory` rotation):
    /// fewer TLS contexts hold what they were last seen serving than `before`
    /// (or none, without an earlier reading).
    pub fn displaced(&self, before: Option<&Served>, now: &Served) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(_, entry)| {
                entry.observed.as_ref().is_ok_and(|observed| {
                    let serial = normalize_serial(&observed.cert.serial);
                    let held = now.count(&serial);
                    before.map_or(held == 0, |b| held < b.count(&serial))
                })
            })
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Records what Envoy serves for `name`; true when the report changes:
    /// another version, or other content (leaf or, for the mesh identity,
    /// any certificate of the chain or bundle), whatever the stamp did.
    pub fn record(
        &mut self,
        name: String,
        version: String,
        stamp: String,
        observed: Result<Observed, String>,
    ) -> bool {
        let entry = Entry {
            stamp,
            version,
            observed,
            rejected: None,
        };
        let unchanged = self.entries.get(&name).is_some_and(|known| {
            known.version == entry.version
                && known.observed == entry.observed
                && known.rejected.is_none()
        });
        self.entries.insert(name, entry);
        !unchanged
    }

    /// Envoy rejected the update seen at `stamp`: what it serves is unchanged,
    /// so the previous observation stays and the rejection is reported beside
    /// it. True when the report changes.
    pub fn record_rejected(&mut self, name: String, stamp: String, why: String) -> bool {
        match self.entries.get_mut(&name) {
            Some(entry) => {
                entry.stamp = stamp;
                let changed = entry.rejected.as_deref() != Some(why.as_str());
                entry.rejected = Some(why);
                changed
            }
            None => {
                let unknown = format!(
                    "{why}; the certificate it serves was loaded before the filter started"
                );
                self.entries.insert(
                    name,
                    Entry {
                        stamp,
                        version: String::new(),
                        observed: Err(unknown),
                        rejected: None,
                    },
                );
                true
            }
        }
    }

    /// The report's certificate and error lists, sorted by resource name.
    pub fn report_parts(&self) -> (Vec<LoadedCertificate>, Vec<ResourceError>) {
        let mut certificates = Vec::with_capacity(self.entries.len());
        let mut errors = Vec::new();
        for (name, entry) in &self.entries {
            if let Some(why) = &entry.rejected {
                errors.push(ResourceError {
                    resource: name.clone(),
                    error: why.clone(),
                });
            }
            match &entry.observed {
                Ok(observed) => certificates.push(LoadedCertificate {
                    resource: name.clone(),
                    version: entry.version.clone(),
                    cert: observed.cert.clone(),
                    chain_sha256: observed.chain_sha256.clone(),
                }),
                Err(error) => errors.push(ResourceError {
                    resource: name.clone(),
                    error: error.clone(),
                }),
            }
        }
        (certificates, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(pairs: &[(&str, &str)]) -> Vec<IndexEntry> {
        pairs
            .iter()
            .map(|(n, s)| IndexEntry {
                name: (*n).into(),
                version: String::new(),
                stamp: (*s).into(),
            })
            .collect()
    }

    #[test]
    fn only_new_or_restamped_names_are_changed_and_missing_ones_are_dropped() {
        let mut inv = Inventory::default();
        inv.record("a".into(), "1".into(), "s1".into(), Err("x".into()));
        inv.record("b".into(), "1".into(), "s1".into(), Err("x".into()));
        let index = idx(&[("a", "s1"), ("c", "s1")]);
        assert_eq!(inv.changed(&index), vec!["c"]);
        assert_eq!(inv.remove_missing(&index), vec!["b".to_owned()]);
        assert_eq!(inv.changed(&idx(&[("a", "s2")])), vec!["a"]);
        assert_eq!(inv.len(), 1);
    }

    fn observed(resource: &str, pem: &[u8]) -> Observed {
        Observed::read(resource, pem).unwrap()
    }

    #[test]
    fn a_rejected_update_keeps_the_served_certificate_and_adds_an_error() {
        let cert = observed("a", certsync_fixtures::pem!("rsa.chain.pem"));
        let mut inv = Inventory::default();
        inv.record("a".into(), "1".into(), "s1".into(), Ok(cert.clone()));
        inv.record_rejected("a".into(), "s2".into(), "rejected".into());
        assert!(
            inv.changed(&idx(&[("a", "s2")])).is_empty(),
            "no refetch loop"
        );
        let (certs, errors) = inv.report_parts();
        assert_eq!(certs[0].cert, cert.cert);
        assert_eq!(certs[0].version, "1");
        assert_eq!(errors[0].error, "rejected");

        inv.record_rejected("new".into(), "s1".into(), "rejected".into());
        let (certs, errors) = inv.report_parts();
        assert_eq!(certs.len(), 1);
        assert!(
            errors[1].error.contains("before the filter started"),
            "{errors:?}"
        );
    }

    #[test]
    fn displaced_names_the_entries_whose_certificate_fewer_contexts_hold() {
        let rsa = observed("a", certsync_fixtures::pem!("rsa.chain.pem"));
        let p256 = observed("c", certsync_fixtures::pem!("p256.chain.pem"));
        let served = |serials: &[&str]| {
            let contexts: Vec<String> = serials
                .iter()
                .map(|s| format!(r#"{{"cert_chain":[{{"serial_number":"{s}"}}]}}"#))
                .collect();
            let body = format!(r#"{{"certificates":[{}]}}"#, contexts.join(","));
            crate::admin::parse_served(body.as_bytes()).unwrap()
        };
        let mut inv = Inventory::default();
        assert!(inv.record("a".into(), "1".into(), "s".into(), Ok(rsa.clone())));
        assert!(
            !inv.record("a".into(), "1".into(), "s".into(), Ok(rsa.clone())),
            "no change"
        );
        inv.record("b".into(), "1".into(), "s".into(), Ok(rsa.clone()));
        inv.record("c".into(), "1".into(), "s".into(), Ok(p256.clone()));
        inv.record("broken".into(), "1".into(), "s".into(), Err("x".into()));

        let (rsa, p256) = (&rsa.cert.serial, &p256.cert.serial);
        let before = served(&[rsa, rsa, p256]);
        assert!(inv.displaced(Some(&before), &before).is_empty());
        let after = served(&[rsa, "77", p256]);
        assert_eq!(inv.displaced(Some(&before), &after), ["a", "b"]);
        assert_eq!(inv.displaced(None, &served(&[p256])), ["a", "b"]);
    }

    #[test]
    fn the_chain_counts_as_content_for_the_mesh_identity_only() {
        let leaf = certsync_fixtures::pem_text!("rsa.crt");
        let intermediate = certsync_fixtures::pem_text!("intermediate.crt");
        let root = certsync_fixtures::pem_text!("root.crt");
        let with_root = format!("{leaf}{intermediate}{root}");
        let reordered = format!("{leaf}{root}{intermediate}");
        let full = observed("default", with_root.as_bytes());
        assert_eq!(
            full.chain_sha256,
            [
                certsync_contract::summarize_chain(intermediate.as_bytes())
                    .unwrap()
                    .sha256,
                certsync_contract::summarize_chain(root.as_bytes())
                    .unwrap()
                    .sha256,
            ]
        );
        assert_eq!(observed("ROOTCA", root.as_bytes()).chain_sha256, []);
        assert_eq!(
            observed("kubernetes://a", with_root.as_bytes()).chain_sha256,
            []
        );

        let mut inv = Inventory::default();
        inv.record("default".into(), "1".into(), "s1".into(), Ok(full.clone()));
        let other = observed("default", reordered.as_bytes());
        assert_eq!(other.cert, full.cert, "same leaf, same chain length");
        assert!(
            inv.record("default".into(), "1".into(), "s2".into(), Ok(other)),
            "the same leaf behind another chain is a change"
        );
        let (certs, _) = inv.report_parts();
        let reversed: Vec<Fingerprint> = full.chain_sha256.iter().rev().copied().collect();
        assert_eq!(certs[0].chain_sha256, reversed);
    }
}
