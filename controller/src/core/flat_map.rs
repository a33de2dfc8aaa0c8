//! [`FlatMap`]: a small map with string keys, sorted in one allocation.
//!
//! A published Secret's annotations and data have two or three entries, and
//! a thousand of them live in the managed store. A `BTreeMap` allocates a
//! node of eleven slots for even one entry (over 500 bytes for string
//! pairs); this holds exactly its entries, in key order, so iteration,
//! equality and serialization match the `BTreeMap` it replaces.

use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FlatMap<V>(Box<[(String, V)]>);

impl<V> Default for FlatMap<V> {
    fn default() -> Self {
        FlatMap(Box::default())
    }
}

impl<V> FlatMap<V> {
    fn position(&self, key: &str) -> Result<usize, usize> {
        find(&self.0, key)
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.position(key).ok().map(|at| &self.0[at].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// Sets `key`, returning the value it replaces. Rebuilds the slice: for
    /// maps of a few entries, built once.
    pub fn insert(&mut self, key: String, value: V) -> Option<V> {
        let mut entries = std::mem::take(&mut self.0).into_vec();
        let replaced = match find(&entries, &key) {
            Ok(at) => Some(std::mem::replace(&mut entries[at].1, value)),
            Err(at) => {
                entries.insert(at, (key, value));
                None
            }
        };
        self.0 = entries.into_boxed_slice();
        replaced
    }

    /// In key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&String, &V)> + Clone {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &String> + Clone {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl ExactSizeIterator<Item = &V> + Clone {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl ExactSizeIterator<Item = &mut V> {
        self.0.iter_mut().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn find<V>(entries: &[(String, V)], key: &str) -> Result<usize, usize> {
    entries.binary_search_by(|(k, _)| k.as_str().cmp(key))
}

/// The last value of a repeated key wins, as with `BTreeMap::from_iter`.
impl<V> FromIterator<(String, V)> for FlatMap<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        let mut entries: Vec<(String, V)> = iter.into_iter().collect();
        // Stable: equal keys keep their order, so the last is the last.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, V)> = Vec::with_capacity(entries.len());
        for entry in entries {
            match out.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => out.push(entry),
            }
        }
        FlatMap(out.into_boxed_slice())
    }
}

impl<V, const N: usize> From<[(String, V); N]> for FlatMap<V> {
    fn from(entries: [(String, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<V> From<BTreeMap<String, V>> for FlatMap<V> {
    fn from(map: BTreeMap<String, V>) -> Self {
        // Already sorted and unique.
        FlatMap(map.into_iter().collect())
    }
}

// Indexing panics on a missing key, like BTreeMap's: tests only.
#[cfg(test)]
impl<V> std::ops::Index<&str> for FlatMap<V> {
    type Output = V;
    fn index(&self, key: &str) -> &V {
        match self.get(key) {
            Some(v) => v,
            None => panic!("no entry {key:?} in FlatMap"),
        }
    }
}

impl<'a, V> IntoIterator for &'a FlatMap<V> {
    type Item = (&'a String, &'a V);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (String, V)>, fn(&(String, V)) -> (&String, &V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<V: fmt::Debug> fmt::Debug for FlatMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V: Serialize> Serialize for FlatMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(m: &FlatMap<u32>) -> Vec<(&str, u32)> {
        m.iter().map(|(k, v)| (k.as_str(), *v)).collect()
    }

    #[test]
    fn behaves_like_the_btree_map_it_replaces() {
        let entries = [("b", 2), ("a", 1), ("c", 3), ("a", 4)].map(|(k, v)| (k.to_owned(), v));
        let flat: FlatMap<u32> = entries.clone().into_iter().collect();
        let tree: BTreeMap<String, u32> = entries.into_iter().collect();
        assert_eq!(pairs(&flat), [("a", 4), ("b", 2), ("c", 3)]);
        assert_eq!(flat, FlatMap::from(tree.clone()));
        assert_eq!(flat.get("b"), Some(&2));
        assert_eq!(flat["c"], 3);
        assert!(flat.get("z").is_none() && !flat.contains_key("z"));
        assert_eq!(
            serde_json::to_string(&flat).unwrap(),
            serde_json::to_string(&tree).unwrap()
        );
        assert_eq!(format!("{flat:?}"), format!("{tree:?}"));
    }

    #[test]
    fn insert_keeps_keys_sorted_and_replaces_in_place() {
        let mut m = FlatMap::from([("m".to_owned(), 1)]);
        assert_eq!(m.insert("z".to_owned(), 2), None);
        assert_eq!(m.insert("a".to_owned(), 3), None);
        assert_eq!(m.insert("m".to_owned(), 4), Some(1));
        assert_eq!(pairs(&m), [("a", 3), ("m", 4), ("z", 2)]);
        assert_eq!(m.len(), 3);
    }
}
