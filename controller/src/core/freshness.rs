//! When a selected source is read and validated again.
//!
//! Reading a Secret's data is the expensive part of a pass (a GET each), so
//! a source is read only when its resourceVersion moved since it was last
//! checked. Time is the other thing that changes a verdict: once an hour a
//! valid source's validity window is re-checked from the summary kept of it
//! (no read), and a refused source is read again (time may have made it
//! valid, e.g. a certificate that was not yet valid).

use super::model::ObjectRef;
use std::collections::{BTreeMap, BTreeSet};

/// What a pass does about one wanted source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Checked at this version within this hour: nothing to do.
    Skip,
    /// Same version, a new hour, valid when last checked: re-check the
    /// validity window from the kept summary, without reading.
    Window,
    /// Read the data and validate it.
    Read,
}

/// The resourceVersion and the hour at which each source was last checked.
#[derive(Debug, Default)]
pub struct Freshness {
    checked: BTreeMap<ObjectRef, (String, i64)>,
}

impl Freshness {
    /// Forgets every source that is not wanted any more.
    pub fn retain(&mut self, wanted: &BTreeSet<ObjectRef>) {
        self.checked.retain(|k, _| wanted.contains(k));
    }

    /// What to do about `source`, seen at `version` (`None`: not in the
    /// stores), which was valid at its last check when `valid`.
    pub fn next(&self, source: &ObjectRef, version: Option<&str>, valid: bool, now: i64) -> Check {
        let Some((rv, hour)) = self.checked.get(source) else {
            return Check::Read;
        };
        if version != Some(rv.as_str()) {
            return Check::Read;
        }
        if *hour == hour_of(now) {
            Check::Skip
        } else if valid {
            Check::Window
        } else {
            Check::Read
        }
    }

    /// `source` was read at `version` (`None`: it could not be read, so the
    /// next pass reads it again) and checked at `now`.
    pub fn read(&mut self, source: &ObjectRef, version: Option<String>, now: i64) {
        match version {
            Some(rv) => {
                self.checked.insert(source.clone(), (rv, hour_of(now)));
            }
            None => {
                self.checked.remove(source);
            }
        }
    }

    /// `source`'s window was re-checked at `now` without a read.
    pub fn window_checked(&mut self, source: &ObjectRef, now: i64) {
        if let Some((_, hour)) = self.checked.get_mut(source) {
            *hour = hour_of(now);
        }
    }

    /// Forces a read of `source` on the next pass (its data changed between
    /// the check and the write).
    pub fn forget(&mut self, source: &ObjectRef) {
        self.checked.remove(source);
    }
}

fn hour_of(now: i64) -> i64 {
    now.div_euclid(3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_893_456_000;

    fn shop() -> ObjectRef {
        ObjectRef::new("shop", "tls")
    }

    #[test]
    fn a_source_never_checked_is_read() {
        let f = Freshness::default();
        assert_eq!(f.next(&shop(), Some("1"), true, NOW), Check::Read);
    }

    #[test]
    fn the_same_version_within_the_hour_is_skipped_and_a_new_version_is_read() {
        let mut f = Freshness::default();
        f.read(&shop(), Some("1".into()), NOW);
        assert_eq!(f.next(&shop(), Some("1"), true, NOW + 59), Check::Skip);
        assert_eq!(f.next(&shop(), Some("2"), true, NOW + 59), Check::Read);
        assert_eq!(f.next(&shop(), None, true, NOW), Check::Read);
    }

    #[test]
    fn a_new_hour_rechecks_a_valid_source_without_reading_and_reads_a_refused_one() {
        let mut f = Freshness::default();
        f.read(&shop(), Some("1".into()), NOW);
        assert_eq!(f.next(&shop(), Some("1"), true, NOW + 3600), Check::Window);
        assert_eq!(f.next(&shop(), Some("1"), false, NOW + 3600), Check::Read);
        f.window_checked(&shop(), NOW + 3600);
        assert_eq!(f.next(&shop(), Some("1"), true, NOW + 3601), Check::Skip);
    }

    #[test]
    fn an_unreadable_or_forgotten_source_is_read_again() {
        let mut f = Freshness::default();
        f.read(&shop(), None, NOW);
        assert_eq!(f.next(&shop(), Some("1"), true, NOW), Check::Read);
        f.read(&shop(), Some("1".into()), NOW);
        f.forget(&shop());
        assert_eq!(f.next(&shop(), Some("1"), true, NOW), Check::Read);
    }

    #[test]
    fn sources_no_longer_wanted_are_forgotten() {
        let mut f = Freshness::default();
        f.read(&shop(), Some("1".into()), NOW);
        f.retain(&BTreeSet::new());
        assert_eq!(f.next(&shop(), Some("1"), true, NOW), Check::Read);
    }
}
