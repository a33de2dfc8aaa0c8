//! Keeping validations current: a source's data is read and checked only
//! when `core::freshness` says so (its resourceVersion moved, or the hour
//! turned for its validity window); a Vault source is read from Vault.

use super::{Outcome, Publisher};
use crate::app::{Context, Error};
use crate::core::freshness::Check;
use crate::core::model::{Blob, Mode, ObjectRef};
use crate::core::reasons::{self, Refusal, Subject};
use crate::core::validation;
use crate::runtime::kube::cluster;
use crate::runtime::vault::VaultSources;
use std::collections::{BTreeMap, BTreeSet};

impl Publisher {
    /// Forgets what was decided about sources no longer selected. A full
    /// pass passes every selected source; a scoped one, the ones it
    /// re-selected (`gone`: its changed sources that are not).
    pub(super) fn forget_validations(&mut self, gone: impl Iterator<Item = ObjectRef>) {
        for source in gone {
            self.freshness.forget(&source);
            self.validations.ok.remove(&source);
            self.validations.refused.remove(&source);
        }
    }

    /// Keeps only `wanted`'s validations.
    pub(super) fn retain_validations(&mut self, wanted: &BTreeSet<ObjectRef>) {
        self.freshness.retain(wanted);
        self.validations.ok.retain(|k, _| wanted.contains(k));
        self.validations.refused.retain(|k, _| wanted.contains(k));
    }

    /// Brings `self.validations` up to date for `wanted`, reading a source's
    /// data only when `core::freshness` says so. With 1,000 sources a change
    /// to one costs one read and one validation, not a thousand.
    pub(super) async fn refresh_validations(
        &mut self,
        ctx: &Context,
        wanted: &BTreeSet<ObjectRef>,
        versions: &BTreeMap<&ObjectRef, &str>,
        now: i64,
        outcome: &mut Outcome,
    ) -> Result<(), Error> {
        // Directory mode renders files from the validated bytes.
        let keep_bytes = matches!(ctx.policy.mode, Mode::Directory);
        let mut vault_down = self.vault.as_ref().is_some_and(VaultSources::down);
        for source in wanted {
            let valid = self.validations.ok.contains_key(source);
            match self
                .freshness
                .next(source, versions.get(source).copied(), valid, now)
            {
                Check::Skip => continue,
                Check::Window => {
                    if let Some(valid) = self.validations.ok.get(source) {
                        if let Err(refusal) = validation::recheck(valid, now) {
                            self.validations.ok.remove(source);
                            self.validations.refused.insert(source.clone(), refusal);
                        }
                    }
                    self.freshness.window_checked(source, now);
                    continue;
                }
                Check::Read => {}
            }
            outcome.reads += 1;
            let read = match self.vault.clone().filter(|v| v.contains(source)) {
                None => cluster::read_source(&ctx.client, source).await?,
                Some(vault) => match self.read_vault(&vault, source, &mut vault_down).await {
                    Some(read) => read,
                    None => continue,
                },
            };
            let result = match &read {
                Some((_, data)) => validation::check(source, data, now),
                None => Err(Refusal::new(
                    Subject::Source(source.clone()),
                    reasons::NOT_FOUND,
                    "Secret data could not be read (deleted?)",
                )),
            };
            self.validations.ok.remove(source);
            self.validations.refused.remove(source);
            match result {
                Ok(mut valid) => {
                    if !keep_bytes {
                        // Written from a fresh read when needed (`hydrate`):
                        // a thousand sources are not held as PEM in between.
                        valid.cert_pem = valid.cert_pem.digest_only();
                        valid.key_pem = valid.key_pem.digest_only();
                        valid.ca_pem = valid.ca_pem.as_ref().map(Blob::digest_only);
                    }
                    self.validations.ok.insert(source.clone(), valid);
                }
                Err(refusal) => {
                    self.validations.refused.insert(source.clone(), refusal);
                }
            }
            self.freshness.read(source, read.map(|(rv, _)| rv), now);
        }
        Ok(())
    }

    /// A Vault source's data, or `None` when it cannot be read now: the
    /// refusal is noted, the last good certificate stays (validation is
    /// left as it was) and the source is read again next pass. Once Vault
    /// is found down, the pass reads no more of it (each read would wait
    /// for its timeout).
    async fn read_vault(
        &mut self,
        vault: &VaultSources,
        source: &ObjectRef,
        down: &mut bool,
    ) -> Option<Option<(String, crate::core::model::SourceData)>> {
        if *down {
            return None;
        }
        match vault.read(source).await {
            Ok(read) => Some(read),
            // Not polled yet: the poll's news starts the next pass.
            Err(crate::runtime::vault::ReadError::NoVersion) => None,
            Err(e) => {
                *down |= e.reason() == reasons::VAULT_UNAVAILABLE;
                let refusal = Refusal::new(
                    Subject::Source(source.clone()),
                    e.reason(),
                    format!("{e}; the last good certificate stays published"),
                );
                if !self.validations.ok.contains_key(source) {
                    self.validations
                        .refused
                        .insert(source.clone(), refusal.clone());
                }
                self.vault_reads.push(refusal);
                None
            }
        }
    }
}
