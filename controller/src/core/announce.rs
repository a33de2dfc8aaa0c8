//! What is worth telling people: Events and log lines are for transitions,
//! not for every pass. A refusal is announced when it appears (or its
//! message changes) and again only after it went away and came back; a
//! publication when this pass wrote a new fingerprint for a source — not
//! when a restarted controller finds it already published, and not when an
//! object cert-sync does not manage blocks the target.
//!
//! The runtime writes the Events and logs; this decides which.

use super::desired::{Action, Entry, Plan};
use super::model::ObjectRef;
use super::reasons::{Refusal, Subject};
use super::selection::Target;
use certsync_contract::Fingerprint;
use std::collections::{BTreeMap, BTreeSet};

/// What was announced so far.
#[derive(Debug, Default)]
pub struct Announcer {
    refused: BTreeSet<(String, &'static str, String)>,
    published: BTreeMap<ObjectRef, Fingerprint>,
}

/// What a pass's publications call for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PublicationNews<'a> {
    /// Sources whose published certificate is new or moved, and is the
    /// source's own (not a kept last good).
    pub published: Vec<&'a Entry>,
    /// Sources that publish nothing any more.
    pub gone: Vec<ObjectRef>,
}

impl Announcer {
    /// The refusals not announced yet, in order; forgets the ones that are
    /// no longer refused, so they are announced again if they come back.
    pub fn refusals<'a>(&mut self, refusals: &[&'a Refusal]) -> Vec<&'a Refusal> {
        let mut now = BTreeSet::new();
        let mut new = Vec::new();
        for refusal in refusals {
            let key = (
                subject_key(&refusal.subject),
                refusal.reason,
                refusal.message.clone(),
            );
            if !self.refused.contains(&key) && !now.contains(&key) {
                new.push(*refusal);
            }
            now.insert(key);
        }
        self.refused = now;
        new
    }

    /// What changed in what is published, after `plan` was carried out
    /// (`files_written`: the certificate directory was swapped). Updated in
    /// place: a pass over a thousand unchanged sources allocates nothing.
    pub fn publications<'a>(
        &mut self,
        entries: &'a [Entry],
        plan: &Plan,
        files_written: bool,
    ) -> PublicationNews<'a> {
        self.publications_of(entries, plan, files_written, None)
    }

    /// [`Announcer::publications`] for a scoped pass: `entries` are what it
    /// decided for the sources in `scope`, and only those can be gone; the
    /// others keep what was announced of them.
    pub fn publications_of<'a>(
        &mut self,
        entries: &'a [Entry],
        plan: &Plan,
        files_written: bool,
        scope: Option<&BTreeSet<ObjectRef>>,
    ) -> PublicationNews<'a> {
        let mut news = PublicationNews::default();
        let mut seen = BTreeSet::new();
        // Usually empty or one name: a lookup per entry, not a scan.
        let written_secrets: BTreeSet<&str> = plan
            .writes()
            .filter(|c| c.action != Action::Delete)
            .map(|c| c.name.as_str())
            .collect();
        let blocked: BTreeSet<&str> = plan
            .refusals
            .iter()
            .filter_map(|r| match &r.subject {
                Subject::Target(t) => Some(t.name.as_str()),
                _ => None,
            })
            .collect();
        for entry in entries {
            let written = match &entry.target {
                Target::Credential(name) | Target::Merged(name) => {
                    if blocked.contains(name.as_str()) {
                        // Not published: told as a refusal, news once it lands.
                        continue;
                    }
                    written_secrets.contains(name.as_str())
                }
                Target::Directory => files_written,
            };
            seen.insert(&entry.source);
            let sha = entry.summary.sha256;
            if self.published.get(&entry.source) == Some(&sha) {
                continue;
            }
            if written && entry.kept.is_none() {
                news.published.push(entry);
            }
            self.published.insert(entry.source.clone(), sha);
        }
        match scope {
            None => self.published.retain(|source, _| {
                let keep = seen.contains(source);
                if !keep {
                    news.gone.push(source.clone());
                }
                keep
            }),
            Some(scope) => {
                for source in scope.iter().filter(|s| !seen.contains(s)) {
                    if self.published.remove(source).is_some() {
                        news.gone.push(source.clone());
                    }
                }
            }
        }
        news
    }
}

/// How a refusal's subject is named in logs, status and the announce key.
pub fn subject_key(subject: &Subject) -> String {
    match subject {
        Subject::Source(s) => format!("secret {s}"),
        Subject::CertMerge(m) => format!("certmerge {m}"),
        Subject::Member { merge, source } => format!("certmerge {merge} member {source}"),
        Subject::Target(t) => format!("target {t}"),
        Subject::Gateway(g) => format!("{} {}", g.kind.label(), g.key),
        Subject::MeshCa(t) => format!("mesh-ca {t}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::reasons;
    use crate::core::testing::*;

    fn mk_refusal(name: &str, reason: &'static str, message: &str) -> Refusal {
        Refusal::new(
            Subject::Source(ObjectRef::new("shop", name)),
            reason,
            message,
        )
    }

    #[test]
    fn a_refusal_is_announced_once_while_it_persists() {
        let mut a = Announcer::default();
        let expired = mk_refusal("tls", reasons::EXPIRED, "expired at …");
        assert_eq!(a.refusals(&[&expired]).len(), 1);
        assert!(a.refusals(&[&expired]).is_empty());
        assert!(a.refusals(&[&expired]).is_empty());
    }

    #[test]
    fn a_refusal_that_changes_or_comes_back_is_announced_again() {
        let mut a = Announcer::default();
        let expired = mk_refusal("tls", reasons::EXPIRED, "expired");
        let mismatch = mk_refusal("tls", reasons::KEY_MISMATCH, "key does not match");
        a.refusals(&[&expired]);
        assert_eq!(a.refusals(&[&mismatch]), vec![&mismatch]);
        assert!(a.refusals(&[]).is_empty());
        assert_eq!(a.refusals(&[&mismatch]), vec![&mismatch]);
    }

    #[test]
    fn a_duplicate_refusal_in_one_pass_is_announced_once() {
        let mut a = Announcer::default();
        let expired = mk_refusal("tls", reasons::EXPIRED, "expired");
        assert_eq!(a.refusals(&[&expired, &expired]).len(), 1);
    }

    /// A plan that writes (`Update`s) or blocks the credential Secret
    /// `shop.tls`, or does neither.
    fn mk_plan(write: bool, blocked: bool) -> Plan {
        use crate::core::desired::Change;
        Plan {
            changes: if write {
                vec![Change {
                    name: "shop.tls".to_owned(),
                    action: Action::Update,
                }]
            } else {
                Vec::new()
            },
            refusals: if blocked {
                vec![Refusal::new(
                    Subject::Target(ObjectRef::new(GATEWAY_NS, "shop.tls")),
                    reasons::TARGET_NOT_MANAGED,
                    "in the way",
                )]
            } else {
                Vec::new()
            },
            files_changed: false,
        }
    }

    #[test]
    fn a_publication_is_news_when_a_new_fingerprint_is_written_and_gone_when_it_leaves() {
        let mut a = Announcer::default();
        let written = mk_plan(true, false);
        let first = desired_entries(&[("shop", "tls", Pair::P256)]);
        assert_eq!(a.publications(&first, &written, false).published.len(), 1);
        assert!(a
            .publications(&first, &mk_plan(false, false), false)
            .published
            .is_empty());
        let rotated = desired_entries(&[("shop", "tls", Pair::Rsa)]);
        assert_eq!(a.publications(&rotated, &written, false).published.len(), 1);
        let news = a.publications(&[], &mk_plan(false, false), false);
        assert_eq!(news.gone, vec![ObjectRef::new("shop", "tls")]);
    }

    #[test]
    fn what_a_restarted_controller_finds_published_is_not_news() {
        let mut a = Announcer::default();
        let first = desired_entries(&[("shop", "tls", Pair::P256)]);
        assert!(a
            .publications(&first, &mk_plan(false, false), false)
            .published
            .is_empty());
        let rotated = desired_entries(&[("shop", "tls", Pair::Rsa)]);
        assert_eq!(
            a.publications(&rotated, &mk_plan(true, false), false)
                .published
                .len(),
            1
        );
    }

    #[test]
    fn a_blocked_target_is_not_news_until_it_is_written() {
        let mut a = Announcer::default();
        let first = desired_entries(&[("shop", "tls", Pair::P256)]);
        let news = a.publications(&first, &mk_plan(false, true), false);
        assert!(news.published.is_empty() && news.gone.is_empty());
        // The blocker is gone and the Secret written: now it is published.
        assert_eq!(
            a.publications(&first, &mk_plan(true, false), false)
                .published
                .len(),
            1
        );
    }

    #[test]
    fn a_kept_last_good_is_not_news() {
        let mut a = Announcer::default();
        let mut kept = desired_entries(&[("shop", "tls", Pair::P256)]);
        kept[0].kept = Some(reasons::KEY_MISMATCH);
        assert!(a
            .publications(&kept, &mk_plan(true, false), false)
            .published
            .is_empty());
        // …and remembered, so the same certificate published for real later
        // is not news either: it was written before.
        let own = desired_entries(&[("shop", "tls", Pair::P256)]);
        assert!(a
            .publications(&own, &mk_plan(true, false), false)
            .published
            .is_empty());
    }

    #[test]
    fn a_scoped_pass_tells_only_about_its_sources() {
        let mut a = Announcer::default();
        let both = desired_entries(&[("shop", "tls", Pair::P256), ("web", "tls", Pair::Rsa)]);
        a.publications(&both, &mk_plan(false, false), false);
        // Only shop/tls was decided again, and it went: web/tls stays known.
        let scope = BTreeSet::from([ObjectRef::new("shop", "tls")]);
        let news = a.publications_of(&[], &mk_plan(false, false), false, Some(&scope));
        assert_eq!(news.gone, vec![ObjectRef::new("shop", "tls")]);
        let web = desired_entries(&[("web", "tls", Pair::Rsa)]);
        let news = a.publications(&web, &mk_plan(false, false), false);
        assert!(news.gone.is_empty() && news.published.is_empty());
    }
}
