//! The manifest as written: an index ConfigMap and shards, so that no
//! object grows with the number of publications. One ConfigMap holding
//! every row passes the API server's 1 MiB data limit near 2,000
//! publications (fewer with more gateway pods), and every change would
//! rewrite all of it.
//!
//! ```text
//!  cert-sync-manifest           index: version, namespace, mode, shard list
//!   ├─ cert-sync-manifest-s0    rows whose key hashes to 0…   (≤ SHARD_ROWS)
//!   ├─ cert-sync-manifest-s10   rows whose key hashes to 10…
//!   └─ cert-sync-manifest-s11   rows whose key hashes to 11…
//! ```
//!
//! A row (publication or refusal) belongs to the shard whose bit string
//! prefixes the SHA-256 of its key. A shard holding more than
//! [`SHARD_ROWS`] rows splits in two; shards never merge, so a row never
//! moves unless its shard splits, and the layout is read back from the
//! index by the next leader. A change to one certificate rewrites one
//! shard of at most [`SHARD_ROWS`] rows, whether there are 10 publications
//! or 10,000; the index is written only when the shard list changes.
//! Readers take the index, then each shard it names ([`assemble`]); a
//! writer writes shards before the index that names them.

use super::{Entries, Manifest, ManifestEntry, RefusalView, NAME, VERSION};
use crate::core::error::CoreError;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Most rows a shard holds before it splits. With per-pod rollout detail a
/// row is ~0.5 KB plus ~45 B per gateway pod: 32 rows stay far below the
/// 1 MiB limit up to hundreds of pods, and a single update writes tens of
/// kilobytes at most.
pub const SHARD_ROWS: usize = 32;
/// Deepest split: 2^24 shards, far beyond any real count (a guard against
/// looping, not a capacity).
const MAX_DEPTH: u8 = 24;
/// Label on every manifest ConfigMap, valued [`PART_INDEX`] or
/// [`PART_SHARD`]: readers list by it.
pub const PART_LABEL: &str = "certsync.istio.io/manifest-part";
pub const PART_INDEX: &str = "index";
pub const PART_SHARD: &str = "shard";

/// A shard: the top `len` bits of a row's key hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    bits: u32,
    len: u8,
}

impl Prefix {
    pub const ROOT: Prefix = Prefix { bits: 0, len: 0 };

    fn of(hash: u32, len: u8) -> Prefix {
        let bits = if len == 0 {
            0
        } else {
            hash >> (32 - u32::from(len))
        };
        Prefix { bits, len }
    }

    fn children(self) -> [Prefix; 2] {
        let len = self.len + 1;
        [
            Prefix {
                bits: self.bits << 1,
                len,
            },
            Prefix {
                bits: (self.bits << 1) | 1,
                len,
            },
        ]
    }

    /// `s` and the bit string: `s` (everything), `s0`, `s101`…
    pub fn label(self) -> String {
        let mut out = String::with_capacity(1 + usize::from(self.len));
        out.push('s');
        for i in (0..self.len).rev() {
            out.push(if (self.bits >> i) & 1 == 1 { '1' } else { '0' });
        }
        out
    }

    fn parse(label: &str) -> Option<Prefix> {
        let digits = label.strip_prefix('s')?;
        let len = u8::try_from(digits.len())
            .ok()
            .filter(|l| *l <= MAX_DEPTH)?;
        let mut bits = 0u32;
        for c in digits.chars() {
            bits = (bits << 1)
                | match c {
                    '0' => 0,
                    '1' => 1,
                    _ => return None,
                };
        }
        Some(Prefix { bits, len })
    }

    /// The shard's ConfigMap.
    pub fn name(self) -> String {
        shard_name(&self.label())
    }

    /// How many of the 2^32 hashes it covers.
    fn width(self) -> u64 {
        1u64 << (32 - u32::from(self.len))
    }
}

/// The ConfigMap of the shard labelled `label`.
pub fn shard_name(label: &str) -> String {
    format!("{NAME}-{label}")
}

fn hash(parts: &[&str]) -> u32 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A publication's key: its source and SDS resource (one per target).
fn publication_hash(e: &ManifestEntry) -> u32 {
    hash(&["p", &e.source, &e.sds_resource])
}

fn refusal_hash(r: &RefusalView) -> u32 {
    hash(&["r", &r.subject])
}

/// Which shards exist: a set of prefixes that covers every hash exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    leaves: BTreeSet<Prefix>,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            leaves: BTreeSet::from([Prefix::ROOT]),
        }
    }
}

impl Layout {
    /// The layout an index names; `None` when its shard list does not
    /// cover every hash exactly once (then the writer starts over).
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a str>) -> Option<Layout> {
        let leaves = labels
            .into_iter()
            .map(Prefix::parse)
            .collect::<Option<BTreeSet<_>>>()?;
        let covered: u64 = leaves.iter().map(|p| p.width()).sum();
        let disjoint = leaves
            .iter()
            .all(|a| leaves.iter().all(|b| a == b || !covers(*a, *b)));
        (covered == 1u64 << 32 && disjoint).then_some(Layout { leaves })
    }

    pub fn leaves(&self) -> impl Iterator<Item = Prefix> + '_ {
        self.leaves.iter().copied()
    }

    fn leaf_of(&self, hash: u32) -> Prefix {
        (0..=MAX_DEPTH)
            .map(|len| Prefix::of(hash, len))
            .find(|p| self.leaves.contains(p))
            .unwrap_or(Prefix::ROOT)
    }

    /// Splits every shard that would hold more than [`SHARD_ROWS`] of
    /// `hashes` until none does. Returns whether the layout changed.
    fn fit(&mut self, hashes: &[u32]) -> bool {
        let mut by_leaf: BTreeMap<Prefix, Vec<u32>> = BTreeMap::new();
        for &h in hashes {
            by_leaf.entry(self.leaf_of(h)).or_default().push(h);
        }
        let mut changed = false;
        let mut crowded: Vec<(Prefix, Vec<u32>)> = by_leaf
            .into_iter()
            .filter(|(p, rows)| rows.len() > SHARD_ROWS && p.len < MAX_DEPTH)
            .collect();
        while let Some((leaf, rows)) = crowded.pop() {
            changed = true;
            self.leaves.remove(&leaf);
            for child in leaf.children() {
                self.leaves.insert(child);
                let mine: Vec<u32> = rows
                    .iter()
                    .copied()
                    .filter(|h| Prefix::of(*h, child.len) == child)
                    .collect();
                if mine.len() > SHARD_ROWS && child.len < MAX_DEPTH {
                    crowded.push((child, mine));
                }
            }
        }
        changed
    }
}

/// Whether `a` covers `b` (a is a prefix of b).
fn covers(a: Prefix, b: Prefix) -> bool {
    b.len >= a.len && (a.len == 0 || (b.bits >> (b.len - a.len)) == a.bits)
}

/// The index ConfigMap's document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub version: u32,
    pub gateway_namespace: String,
    pub mode: String,
    /// Shard labels (`s01`…); shard `s01` is ConfigMap `cert-sync-manifest-s01`.
    pub shards: Vec<String>,
}

/// A shard ConfigMap's document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardDoc {
    pub version: u32,
    pub shard: String,
    #[serde(default)]
    pub publications: Vec<ManifestEntry>,
    #[serde(default)]
    pub refusals: Vec<RefusalView>,
}

/// The manifest cut along a layout: what each shard holds, in manifest order.
pub struct Split<'a> {
    pub index: Index,
    pub shards: BTreeMap<Prefix, Part<'a>>,
}

/// The rows of one shard.
#[derive(Default)]
pub struct Part<'a> {
    pub publications: Vec<&'a Arc<ManifestEntry>>,
    pub refusals: Vec<&'a RefusalView>,
}

impl Part<'_> {
    /// The shard's document, each publication passed through `annotate`.
    pub fn doc<'s, F: Fn(&mut ManifestEntry)>(
        &'s self,
        prefix: Prefix,
        annotate: &'s F,
    ) -> impl Serialize + 's {
        PartDoc {
            label: prefix.label(),
            part: self,
            annotate,
        }
    }
}

struct PartDoc<'s, 'a, F> {
    label: String,
    part: &'s Part<'a>,
    annotate: &'s F,
}

impl<F: Fn(&mut ManifestEntry)> Serialize for PartDoc<'_, '_, F> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let entries = Entries {
            entries: self.part.publications.iter().copied(),
            annotate: self.annotate,
        };
        let mut out = serializer.serialize_struct("ShardDoc", 4)?;
        out.serialize_field("version", &VERSION)?;
        out.serialize_field("shard", &self.label)?;
        out.serialize_field("publications", &entries)?;
        out.serialize_field("refusals", &self.part.refusals)?;
        out.end()
    }
}

/// Cuts `manifest` along `layout`, splitting crowded shards first. Every
/// shard of the layout has a part, empty ones included (an emptied shard
/// is written empty, not left stale).
pub fn split<'a>(manifest: &'a Manifest, layout: &mut Layout) -> Split<'a> {
    split_hashed(manifest, layout, publication_hashes(manifest, None))
}

/// Every publication's hash, in order. A publication of `previous` (with
/// its hashes) with the same key keeps its hash: with both manifests in
/// their canonical order (by source, then SDS resource) that is one merge
/// walk, and only new keys are hashed.
pub fn publication_hashes(manifest: &Manifest, previous: Option<(&Manifest, &[u32])>) -> Vec<u32> {
    let mut old = previous
        .into_iter()
        .flat_map(|(m, hashes)| m.publications.iter().zip(hashes.iter().copied()))
        .peekable();
    manifest
        .publications
        .iter()
        .map(|e| {
            let key = (e.source.as_str(), e.sds_resource.as_str());
            while let Some((o, h)) = old.peek() {
                let h = *h;
                if Arc::ptr_eq(o, e) {
                    old.next();
                    return h;
                }
                match (o.source.as_str(), o.sds_resource.as_str()).cmp(&key) {
                    std::cmp::Ordering::Less => {
                        old.next();
                    }
                    std::cmp::Ordering::Equal => {
                        old.next();
                        return h;
                    }
                    std::cmp::Ordering::Greater => break,
                }
            }
            publication_hash(e)
        })
        .collect()
}

/// [`split`] with the publications' hashes ([`publication_hashes`]).
pub fn split_hashed<'a>(
    manifest: &'a Manifest,
    layout: &mut Layout,
    pub_hashes: Vec<u32>,
) -> Split<'a> {
    let ref_hashes: Vec<u32> = manifest.refusals.iter().map(refusal_hash).collect();
    let all: Vec<u32> = pub_hashes.iter().chain(&ref_hashes).copied().collect();
    layout.fit(&all);
    let mut shards: BTreeMap<Prefix, Part<'a>> =
        layout.leaves().map(|p| (p, Part::default())).collect();
    for (e, h) in manifest.publications.iter().zip(pub_hashes) {
        shards
            .entry(layout.leaf_of(h))
            .or_default()
            .publications
            .push(e);
    }
    for (r, h) in manifest.refusals.iter().zip(ref_hashes) {
        shards
            .entry(layout.leaf_of(h))
            .or_default()
            .refusals
            .push(r);
    }
    Split {
        index: Index {
            version: VERSION,
            gateway_namespace: manifest.gateway_namespace.clone(),
            mode: manifest.mode.clone(),
            shards: layout.leaves().map(Prefix::label).collect(),
        },
        shards,
    }
}

/// The manifest from what a reader found: the index ConfigMap's JSON and
/// the shard ConfigMaps' JSON by label. A version-1 index is a whole
/// manifest (an older cert-sync wrote it). A shard the index names but
/// that is missing or of another layout is an error: the reader retries
/// (the writer is between writes).
pub fn assemble(
    index_json: &str,
    shards: &BTreeMap<String, String>,
) -> Result<Manifest, CoreError> {
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let Versioned { version } = serde_json::from_str(index_json)?;
    if version == 1 {
        return super::parse(index_json);
    }
    if version != VERSION {
        return Err(CoreError::ManifestVersion {
            found: version,
            supported: VERSION,
        });
    }
    let index: Index = serde_json::from_str(index_json)?;
    let mut manifest = Manifest {
        version: VERSION,
        gateway_namespace: index.gateway_namespace,
        mode: index.mode,
        publications: Vec::new(),
        refusals: Vec::new(),
    };
    for label in &index.shards {
        let json = shards
            .get(label)
            .ok_or_else(|| CoreError::ManifestShard(format!("{} is missing", shard_name(label))))?;
        let doc: ShardDoc = serde_json::from_str(json)?;
        if doc.shard != *label {
            return Err(CoreError::ManifestShard(format!(
                "{} holds shard {}",
                shard_name(label),
                doc.shard
            )));
        }
        manifest
            .publications
            .extend(doc.publications.into_iter().map(Arc::new));
        manifest.refusals.extend(doc.refusals);
    }
    manifest
        .publications
        .sort_by(|a, b| (&a.source, &a.sds_resource).cmp(&(&b.source, &b.sds_resource)));
    manifest
        .refusals
        .sort_by(|a, b| (&a.subject, &a.reason).cmp(&(&b.subject, &b.reason)));
    Ok(manifest)
}

#[cfg(test)]
#[path = "shards_tests.rs"]
mod tests;
