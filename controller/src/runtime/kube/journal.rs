//! Which objects a watch changed since the publisher last looked: what lets
//! a pass touch only the sources and targets a change affects.
//!
//! ```text
//!  watch event ─▶ Writer::apply ─▶ Journal::record(ns, name)
//!  relist (Init … InitDone) ───────▶ Journal::everything()
//!  publisher pass ◀── Journal::take() ─▶ Changes { everything | keys }
//! ```
//!
//! A journal that cannot say what changed says "everything": after a relist
//! (a 410, a watch error: the store was rebuilt, events may be missing),
//! and past [`MAX_KEYS`] (a standby journals while it does not publish; a
//! new leader starts with a full pass anyway). Taking it resets it, so a
//! caller that fails after taking must run a full pass next (the publisher
//! does).

use std::collections::BTreeSet;

/// Beyond this many keys, a full pass is cheaper than a scoped one and the
/// journal stops growing.
pub const MAX_KEYS: usize = 1024;

/// What changed, as [`Journal::take`] hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// Unknown or too many: decide everything again.
    Everything,
    /// These objects, by (namespace, name); possibly none.
    Keys(BTreeSet<(String, String)>),
}

impl Default for Changes {
    fn default() -> Self {
        Changes::Keys(BTreeSet::new())
    }
}

impl Changes {
    /// Both: everything when either is.
    pub fn merge(self, other: Changes) -> Changes {
        match (self, other) {
            (Changes::Keys(mut a), Changes::Keys(b)) if a.len() + b.len() <= MAX_KEYS => {
                a.extend(b);
                Changes::Keys(a)
            }
            _ => Changes::Everything,
        }
    }
}

/// A store's changes since the last [`Journal::take`]. A new journal says
/// "everything": nothing was decided from its store yet.
#[derive(Debug)]
pub struct Journal {
    changes: Changes,
}

impl Default for Journal {
    fn default() -> Self {
        Journal {
            changes: Changes::Everything,
        }
    }
}

impl Journal {
    pub fn record(&mut self, namespace: &str, name: &str) {
        if let Changes::Keys(keys) = &mut self.changes {
            if keys.len() >= MAX_KEYS {
                self.changes = Changes::Everything;
            } else {
                keys.insert((namespace.to_owned(), name.to_owned()));
            }
        }
    }

    /// Something was recorded (or everything changed) since the last take.
    pub fn pending(&self) -> bool {
        match &self.changes {
            Changes::Everything => true,
            Changes::Keys(keys) => !keys.is_empty(),
        }
    }

    pub fn everything(&mut self) {
        self.changes = Changes::Everything;
    }

    /// What changed since the last take; the journal starts empty again.
    pub fn take(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[(&str, &str)]) -> Changes {
        Changes::Keys(
            list.iter()
                .map(|(n, m)| ((*n).to_owned(), (*m).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn a_new_journal_says_everything_then_only_what_was_recorded() {
        let mut j = Journal::default();
        assert_eq!(j.take(), Changes::Everything);
        assert_eq!(j.take(), keys(&[]));
        j.record("apps", "shop");
        j.record("apps", "shop");
        j.record("web", "blog");
        assert_eq!(j.take(), keys(&[("apps", "shop"), ("web", "blog")]));
        assert_eq!(j.take(), keys(&[]));
    }

    #[test]
    fn a_relist_or_too_many_keys_say_everything_until_taken() {
        let mut j = Journal::default();
        j.take();
        j.record("apps", "shop");
        j.everything();
        j.record("web", "blog");
        assert_eq!(j.take(), Changes::Everything);
        for i in 0..=MAX_KEYS {
            j.record("apps", &format!("s{i}"));
        }
        assert_eq!(j.take(), Changes::Everything);
        assert_eq!(j.take(), keys(&[]));
    }

    #[test]
    fn merged_changes_are_everything_when_either_is() {
        let a = keys(&[("apps", "shop")]);
        assert_eq!(
            a.clone().merge(keys(&[("web", "blog")])),
            keys(&[("apps", "shop"), ("web", "blog")])
        );
        assert_eq!(a.merge(Changes::Everything), Changes::Everything);
    }
}
