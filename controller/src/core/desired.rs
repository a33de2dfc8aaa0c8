//! What must be published, computed from the selection, the validation
//! results and what is published now. The rule that matters most: a source
//! that fails validation never replaces what was published for it. Its last
//! good certificate and key, read back from the published object (or file),
//! are carried into the desired state unchanged; a source never published
//! before publishes nothing. Everything else is derived: a source no longer
//! selected simply has no entry, so its object, merged key or files go, and
//! nothing that is not cert-sync's own is ever touched ([`diff`]).
//!
//! Output is sorted throughout, so an unchanged input gives a byte-identical
//! desired state and the runtime can skip writes.

use super::flat_map::FlatMap;
use super::model::{keys, Blob, DataSizes, ObjectRef, Policy, Published, PublishedSecret};
use super::naming::{self, PairNames};
use super::reasons::{self, Refusal, Subject};
use super::selection::{is_managed, Publication, Selection, Target};
use super::validation::Validations;
use certsync_contract::{summarize_chain, CertSummary};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

pub const OPAQUE_TYPE: &str = "Opaque";

/// A Secret cert-sync must hold in the gateway namespace.
#[derive(Clone, PartialEq, Eq)]
pub struct DesiredSecret {
    pub name: String,
    pub namespace: String,
    /// `kubernetes.io/tls` (credential) or `Opaque` (merged).
    pub secret_type: String,
    /// Labels, annotations and data are shared with the published Secret
    /// when equal (see [`Blob`]): in the steady state a thousand desired
    /// Secrets allocate no maps.
    pub labels: Arc<BTreeMap<String, String>>,
    pub annotations: Arc<FlatMap<String>>,
    pub data: Arc<FlatMap<Blob>>,
}

impl fmt::Debug for DesiredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DesiredSecret")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("secret_type", &self.secret_type)
            .field("labels", &self.labels)
            .field("annotations", &self.annotations)
            .field("data", &DataSizes(&*self.data))
            .finish()
    }
}

/// One source as published in one target: the index the manifest, CertMerge
/// status and rollout verification are built from. No key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub source: ObjectRef,
    pub target: Target,
    /// Names within the target: data keys (credential: `tls.crt`, `tls.key`,
    /// `ca.crt`; merged: `<ns>.<name>.crt`…) or relative file paths.
    pub names: PairNames,
    pub has_ca: bool,
    /// The published leaf (its `sha256` is what the gateway must serve);
    /// shared with the validation result.
    pub summary: Arc<CertSummary>,
    /// Set when the published data is the last good one kept instead of the
    /// source's current data: the reason the source (or its CertMerge) was refused.
    pub kept: Option<&'static str>,
}

/// Everything cert-sync must publish.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct DesiredState {
    /// Sorted by name; all in the gateway namespace.
    pub secrets: Vec<DesiredSecret>,
    /// Directory mode: the whole certificate tree, relative path → content.
    /// Files not in it are gone after the next atomic swap.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Managed Secrets (with a source annotation) that no publication claims
    /// any more. Sorted.
    pub deletions: Vec<String>,
    /// Sorted by source, then target.
    pub entries: Vec<Entry>,
}

impl fmt::Debug for DesiredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DesiredState")
            .field("secrets", &self.secrets)
            .field("files", &DataSizes(&self.files))
            .field("deletions", &self.deletions)
            .field("entries", &self.entries)
            .finish()
    }
}

/// Certificate, key and CA to publish for one member, fresh or kept.
struct Material<'a> {
    cert: Piece<'a>,
    key: Piece<'a>,
    ca: Option<Piece<'a>>,
    summary: Arc<CertSummary>,
    kept: Option<&'static str>,
}

/// One value to publish: a value already published or the validated
/// source's; either is shared, not copied, into the desired Secret.
#[derive(Clone, Copy)]
enum Piece<'a> {
    Published(&'a Blob),
    New(&'a Blob),
    /// A file of the current tree (directory mode's last good).
    File(&'a [u8]),
}

impl Piece<'_> {
    /// Held in directory mode (validation keeps the bytes there); a
    /// published Secret's value is known by digest only.
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Piece::Published(b) | Piece::New(b) => b.bytes(),
            Piece::File(b) => Some(b),
        }
    }

    fn blob(&self) -> Blob {
        match self {
            Piece::Published(b) | Piece::New(b) => (*b).clone(),
            Piece::File(b) => Blob::from(*b),
        }
    }
}

/// `fresh` as a piece, shared with the value published under `name` when
/// that holds the same bytes: in the steady state every Secret's desired
/// data is the published data, and rendering copies nothing.
fn piece<'a>(published: Option<&'a FlatMap<Blob>>, name: &str, fresh: &'a Blob) -> Piece<'a> {
    match published.and_then(|d| d.get(name)) {
        Some(b) if b == fresh => Piece::Published(b),
        _ => Piece::New(fresh),
    }
}

/// Computes the desired state. `current` is what is published now: every
/// managed Secret in the gateway namespace (data by digest) and, in directory
/// mode, the current tree.
pub fn render(
    policy: &Policy,
    selection: &Selection,
    validations: &Validations,
    current: &Published,
) -> DesiredState {
    let mut out = DesiredState::default();
    // Every Secret cert-sync writes carries the same labels: one map.
    let labels = Arc::new(BTreeMap::from([(
        keys::MANAGED_BY.to_owned(),
        keys::MANAGED_BY_VALUE.to_owned(),
    )]));
    for publication in &selection.publications {
        let existing = publication
            .target
            .secret_name()
            .and_then(|name| current.secrets.get(name))
            .filter(|s| is_managed(&s.labels));
        let members: Vec<(ObjectRef, Material<'_>)> = if publication.held {
            held_members(publication, existing)
        } else {
            publication
                .members
                .iter()
                .filter_map(|m| {
                    material(m, publication, validations, existing, current).map(|x| (m.clone(), x))
                })
                .collect()
        };
        render_target(policy, publication, &members, existing, &labels, &mut out);
    }

    // Only unclaimed targets go: a claimed one with nothing publishable (its
    // only source invalid, no readable last good) is left as it is.
    let claimed: BTreeSet<&str> = selection
        .publications
        .iter()
        .filter_map(|p| p.target.secret_name())
        .collect();
    out.deletions = current
        .secrets
        .values()
        .filter(|s| is_managed(&s.labels) && s.annotations.contains_key(keys::SOURCE))
        .filter(|s| !claimed.contains(s.name.as_str()))
        .map(|s| s.name.clone())
        .collect();
    out.secrets.sort_by(|a, b| a.name.cmp(&b.name));
    out.deletions.sort();
    out.entries
        .sort_by(|a, b| (&a.source, &a.target).cmp(&(&b.source, &b.target)));
    out
}

/// Where a member's certificate, key and CA go within `target`.
pub fn names_in(target: &Target, source: &ObjectRef) -> PairNames {
    match target {
        Target::Credential(_) => PairNames {
            cert: keys::TLS_CRT.to_owned(),
            key: keys::TLS_KEY.to_owned(),
            ca: keys::CA_CRT.to_owned(),
        },
        Target::Merged(_) => naming::merged_keys(source),
        Target::Directory => naming::directory_paths(source),
    }
}

/// The source's validated data, or else the last good data published for it
/// in this target, or else nothing.
fn material<'a>(
    member: &ObjectRef,
    publication: &Publication,
    validations: &'a Validations,
    existing: Option<&'a PublishedSecret>,
    current: &'a Published,
) -> Option<Material<'a>> {
    if let Some(v) = validations.ok.get(member) {
        let names = names_in(&publication.target, member);
        let published = existing.map(|s| &*s.data);
        return Some(Material {
            cert: piece(published, &names.cert, &v.cert_pem),
            key: piece(published, &names.key, &v.key_pem),
            ca: v.ca_pem.as_ref().map(|ca| piece(published, &names.ca, ca)),
            summary: Arc::clone(&v.summary),
            kept: None,
        });
    }
    let why = validations
        .refused
        .get(member)
        .map_or(reasons::NOT_FOUND, |r| r.reason);
    last_good(
        member,
        &publication.target,
        existing,
        Some(&current.files),
        why,
    )
}

fn last_good<'a>(
    member: &ObjectRef,
    target: &Target,
    existing: Option<&'a PublishedSecret>,
    files: Option<&'a BTreeMap<String, Vec<u8>>>,
    why: &'static str,
) -> Option<Material<'a>> {
    let names = names_in(target, member);
    let (cert, key, ca) = match target {
        Target::Credential(_) | Target::Merged(_) => {
            let secret = match target {
                Target::Credential(_) => existing.filter(|s| s.secret_type == keys::TLS_TYPE)?,
                _ => existing?,
            };
            let get = |name: &str| secret.data.get(name).map(Piece::Published);
            (get(&names.cert)?, get(&names.key)?, get(&names.ca))
        }
        Target::Directory => {
            let files = files?;
            let get = |name: &str| files.get(name).map(|f| Piece::File(f));
            (get(&names.cert)?, get(&names.key)?, get(&names.ca))
        }
    };
    // Only a certificate that still parses is a "last good" one.
    let summary = match (cert.bytes(), existing) {
        (Some(bytes), _) => Arc::new(summarize_chain(bytes).ok()?),
        (None, Some(secret)) => Arc::clone(secret.certificate(&names.cert)?),
        (None, None) => return None,
    };
    Some(Material {
        cert,
        key,
        ca,
        summary,
        kept: Some(why),
    })
}

/// A held target keeps exactly the members its published object lists.
fn held_members<'a>(
    publication: &Publication,
    existing: Option<&'a PublishedSecret>,
) -> Vec<(ObjectRef, Material<'a>)> {
    let Some(secret) = existing else {
        return Vec::new();
    };
    let listed: BTreeSet<ObjectRef> = secret
        .annotations
        .get(keys::SOURCE)
        .map(|s| parse_sources(s))
        .unwrap_or_default();
    listed
        .into_iter()
        .filter_map(|m| {
            let why = reasons::INVALID_SELECTOR;
            last_good(&m, &publication.target, Some(secret), None, why).map(|x| (m, x))
        })
        .collect()
}

/// `ns/name,ns/name` → sources (malformed items are skipped).
pub fn parse_sources(list: &str) -> BTreeSet<ObjectRef> {
    list.split(',')
        .filter_map(|item| item.trim().split_once('/'))
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
        .map(|(ns, name)| ObjectRef::new(ns, name))
        .collect()
}

fn render_target(
    policy: &Policy,
    publication: &Publication,
    members: &[(ObjectRef, Material<'_>)],
    existing: Option<&PublishedSecret>,
    labels: &Arc<BTreeMap<String, String>>,
    out: &mut DesiredState,
) {
    let directory = matches!(publication.target, Target::Directory);
    let mut data = BTreeMap::new();
    for (source, m) in members {
        let names = names_in(&publication.target, source);
        if directory {
            // Files are written from plain bytes; no Secret to share with.
            let (Some(cert), Some(key)) = (m.cert.bytes(), m.key.bytes()) else {
                continue;
            };
            out.files.insert(names.cert.clone(), cert.to_vec());
            out.files.insert(names.key.clone(), key.to_vec());
            if let Some(ca) = m.ca.as_ref().and_then(Piece::bytes) {
                out.files.insert(names.ca.clone(), ca.to_vec());
            }
        } else {
            data.insert(names.cert.clone(), m.cert.blob());
            data.insert(names.key.clone(), m.key.blob());
            if let Some(ca) = &m.ca {
                data.insert(names.ca.clone(), ca.blob());
            }
        }
        out.entries.push(Entry {
            source: source.clone(),
            target: publication.target.clone(),
            names,
            has_ca: m.ca.is_some(),
            summary: Arc::clone(&m.summary),
            kept: m.kept,
        });
    }
    let (name, secret_type) = match &publication.target {
        Target::Directory => return,
        // A credential target with nothing valid to publish is not created.
        Target::Credential(_) if members.is_empty() => return,
        Target::Credential(name) => (name, keys::TLS_TYPE),
        // A merged target is created even when empty: it is mounted by name.
        Target::Merged(name) => (name, OPAQUE_TYPE),
    };
    let sources: Vec<String> = members.iter().map(|(s, _)| s.to_string()).collect();
    let shas: Vec<String> = members
        .iter()
        .map(|(_, m)| m.summary.sha256.to_string())
        .collect();
    out.secrets.push(DesiredSecret {
        name: name.clone(),
        namespace: policy.gateway_namespace.clone(),
        secret_type: secret_type.to_owned(),
        labels: match existing {
            Some(e) if e.labels == *labels => Arc::clone(&e.labels),
            _ => Arc::clone(labels),
        },
        annotations: shared(
            FlatMap::from([
                (keys::SOURCE.to_owned(), sources.join(",")),
                (keys::SOURCE_SHA256.to_owned(), shas.join(",")),
            ]),
            existing.map(|e| &e.annotations),
        ),
        data: shared(FlatMap::from(data), existing.map(|e| &e.data)),
    });
}

/// `fresh`, or the published map when it is equal (so it is held once).
fn shared<V: PartialEq>(fresh: FlatMap<V>, published: Option<&Arc<FlatMap<V>>>) -> Arc<FlatMap<V>> {
    match published {
        Some(p) if **p == fresh => Arc::clone(p),
        _ => Arc::new(fresh),
    }
}

/// Gives each value of `data` known only by digest the bytes of an equal
/// value in `found` (content-addressed: a value read after the decision is
/// used only if it is exactly what was decided on).
pub fn fill_by_digest(data: &mut FlatMap<Blob>, found: &[Blob]) {
    for value in data.values_mut().filter(|v| v.bytes().is_none()) {
        if let Some(full) = found.iter().find(|f| *f == value && f.bytes().is_some()) {
            *value = full.clone();
        }
    }
}

/// What the runtime must do to one Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Create,
    Update,
    /// The type differs, and a Secret's type is immutable: delete, then create.
    Replace,
    Unchanged,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Change {
    pub name: String,
    pub action: Action,
}

/// The writes that bring `current` to `desired`, and the ones refused.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Sorted by name; one per desired Secret or deletion not refused.
    pub changes: Vec<Change>,
    /// Objects in the way that cert-sync does not manage (`TargetNotManaged`).
    pub refusals: Vec<Refusal>,
    /// Directory mode: the tree differs from the one on disk.
    pub files_changed: bool,
}

impl Plan {
    /// Whether the Secret `name` is refused (so nothing is published there).
    pub fn blocked(&self, name: &str) -> bool {
        blocked(&self.refusals, name)
    }

    /// The changes that write something (not `Unchanged`).
    pub fn writes(&self) -> impl Iterator<Item = &Change> {
        self.changes
            .iter()
            .filter(|c| c.action != Action::Unchanged)
    }
}

/// Whether `refusals` (a plan's) refuse the Secret `name`.
pub fn blocked(refusals: &[Refusal], name: &str) -> bool {
    refusals
        .iter()
        .any(|r| matches!(&r.subject, Subject::Target(t) if t.name == name))
}

/// Compares `desired` with `current`: cert-sync never overwrites or deletes
/// an object it does not manage, and skips writes when nothing changed.
/// Labels and annotations are compared on cert-sync's own keys only (others
/// may add theirs); data is compared whole.
pub fn diff(current: &Published, desired: &DesiredState) -> Plan {
    let mut plan = Plan {
        files_changed: current.files != desired.files,
        ..Plan::default()
    };
    for d in &desired.secrets {
        let action = match current.secrets.get(&d.name) {
            None => Action::Create,
            Some(c) if !c.is_managed() => {
                plan.refusals.push(not_managed(d, c));
                continue;
            }
            Some(c) if c.secret_type != d.secret_type => Action::Replace,
            Some(c) if same(c, d) => Action::Unchanged,
            Some(_) => Action::Update,
        };
        plan.changes.push(Change {
            name: d.name.clone(),
            action,
        });
    }
    for name in &desired.deletions {
        if current
            .secrets
            .get(name)
            .is_some_and(PublishedSecret::is_managed)
        {
            plan.changes.push(Change {
                name: name.clone(),
                action: Action::Delete,
            });
        }
    }
    plan.changes.sort();
    plan.refusals.sort();
    plan
}

fn same(current: &PublishedSecret, desired: &DesiredSecret) -> bool {
    let labels = desired
        .labels
        .iter()
        .all(|(k, v)| current.labels.get(k) == Some(v));
    let annotations = desired
        .annotations
        .iter()
        .all(|(k, v)| current.annotations.get(k) == Some(v));
    current.data == desired.data && labels && annotations
}

fn not_managed(desired: &DesiredSecret, current: &PublishedSecret) -> Refusal {
    let sources = desired
        .annotations
        .get(keys::SOURCE)
        .filter(|s| !s.is_empty())
        .map_or_else(|| "nothing yet".to_owned(), Clone::clone);
    Refusal::new(
        Subject::Target(ObjectRef::new(desired.namespace.clone(), current.name.clone())),
        reasons::TARGET_NOT_MANAGED,
        format!(
            "Secret {}/{} exists without the label {}: {}; cert-sync never overwrites or deletes an object it does not manage (it would publish: {sources})",
            desired.namespace,
            current.name,
            keys::MANAGED_BY,
            keys::MANAGED_BY_VALUE
        ),
    )
}

/// Names of desired Secrets that the managed store does not hold. An
/// object of that name may still exist, not managed by cert-sync: the
/// runtime looks each up and renders again with what it found, so `diff`
/// refuses to touch it.
pub fn unknown_targets<'a>(
    desired: &'a DesiredState,
    current: &'a Published,
) -> impl Iterator<Item = &'a str> {
    desired
        .secrets
        .iter()
        .filter(|s| !current.secrets.contains_key(&s.name))
        .map(|s| s.name.as_str())
}

#[cfg(test)]
#[path = "desired_tests.rs"]
mod tests;
