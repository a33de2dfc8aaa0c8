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
        self.refusals
            .iter()
            .any(|r| matches!(&r.subject, Subject::Target(t) if t.name == name))
    }

    /// The changes that write something (not `Unchanged`).
    pub fn writes(&self) -> impl Iterator<Item = &Change> {
        self.changes
            .iter()
            .filter(|c| c.action != Action::Unchanged)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{Mode, SourceData, SourceMeta};
    use crate::core::selection::select;
    use crate::core::testing::*;
    use crate::core::validation::check_all;

    /// What the runtime would read back after applying `desired`.
    fn apply(desired: &DesiredState) -> Published {
        Published {
            secrets: desired
                .secrets
                .iter()
                .map(|d| {
                    (
                        d.name.clone(),
                        PublishedSecret {
                            name: d.name.clone(),
                            secret_type: d.secret_type.clone(),
                            labels: Arc::clone(&d.labels),
                            annotations: Arc::clone(&d.annotations),
                            data: Arc::clone(&d.data),
                            certificates: Default::default(),
                        },
                    )
                })
                .collect(),
            files: desired.files.clone(),
        }
    }

    /// One reconcile: select, validate, render.
    fn reconcile(
        mode: Mode,
        sources: &[(SourceMeta, SourceData)],
        current: &Published,
    ) -> DesiredState {
        render_sources(mode, sources, current).1
    }

    fn mismatched() -> SourceData {
        let mut d = Pair::Rsa.data();
        d.key_pem = Some(Pair::P256.key().into());
        d
    }

    fn secret<'a>(d: &'a DesiredState, name: &str) -> &'a DesiredSecret {
        d.secrets.iter().find(|s| s.name == name).unwrap()
    }

    #[test]
    fn a_credential_secret_is_tls_typed_labelled_and_annotated() {
        let mut data = Pair::P256.data();
        data.ca_pem = Some(ca_pem());
        let d = reconcile(
            Mode::Credential,
            &[(mk_source("shop", "tls"), data)],
            &Published::default(),
        );
        assert_eq!(d.secrets.len(), 1);
        let s = &d.secrets[0];
        assert_eq!(
            (s.name.as_str(), s.namespace.as_str()),
            ("shop.tls", GATEWAY_NS)
        );
        assert_eq!(s.secret_type, "kubernetes.io/tls");
        assert_eq!(
            *s.labels,
            map(&[("app.kubernetes.io/managed-by", "cert-sync")])
        );
        assert_eq!(
            *s.annotations,
            FlatMap::from(map(&[
                ("certsync.istio.io/source", "shop/tls"),
                ("certsync.istio.io/source-sha256", Pair::P256.sha256()),
            ]))
        );
        assert_eq!(s.data["tls.crt"], Pair::P256.cert());
        assert_eq!(s.data["tls.key"], Pair::P256.key());
        assert_eq!(s.data["ca.crt"], ca_pem());
        assert_eq!(d.entries.len(), 1);
        assert_eq!(d.entries[0].summary.sha256.to_string(), Pair::P256.sha256());
        assert!(d.entries[0].has_ca);
        assert_eq!(d.entries[0].kept, None);
        assert!(d.deletions.is_empty());
    }

    #[test]
    fn an_unchanged_publication_is_rendered_from_the_published_maps() {
        let src = mk_source("shop", "tls");
        let published = apply(&reconcile(
            Mode::Credential,
            &[(src.clone(), Pair::P256.data())],
            &Published::default(),
        ));
        let again = reconcile(Mode::Credential, &[(src, Pair::P256.data())], &published);
        let (d, p) = (secret(&again, "shop.tls"), &published.secrets["shop.tls"]);
        assert!(Arc::ptr_eq(&d.labels, &p.labels));
        assert!(Arc::ptr_eq(&d.annotations, &p.annotations));
        assert!(Arc::ptr_eq(&d.data, &p.data));
        assert_eq!(diff(&published, &again).writes().count(), 0);
    }

    #[test]
    fn only_bytes_with_the_decided_digest_fill_a_value() {
        let decided = Blob::from(Pair::P256.cert()).digest_only();
        let key = Blob::from(Pair::P256.key()).digest_only();
        let mut data = FlatMap::from([
            ("tls.crt".to_owned(), decided.clone()),
            ("tls.key".to_owned(), key),
        ]);
        // The source moved on to another certificate: nothing of it is taken.
        fill_by_digest(&mut data, &[Blob::from(Pair::Rsa.cert()), decided.clone()]);
        assert!(data.values().all(|v| v.bytes().is_none()));
        fill_by_digest(&mut data, &[Blob::from(Pair::P256.cert())]);
        assert_eq!(data["tls.crt"].bytes(), Some(Pair::P256.cert()));
        assert_eq!(data["tls.key"].bytes(), None, "still to be found");
    }

    #[test]
    fn a_bad_rotation_keeps_the_last_good_credential_unchanged() {
        let src = mk_source("shop", "tls");
        let before = reconcile(
            Mode::Credential,
            &[(src.clone(), Pair::P256.data())],
            &Published::default(),
        );
        let published = apply(&before);

        let after = reconcile(Mode::Credential, &[(src.clone(), mismatched())], &published);
        assert_eq!(after.secrets, before.secrets, "the good pair stays");
        assert_eq!(after.entries[0].kept, Some(reasons::KEY_MISMATCH));
        assert_eq!(
            after.entries[0].summary.sha256.to_string(),
            Pair::P256.sha256()
        );
        let plan = diff(&published, &after);
        assert_eq!(plan.writes().count(), 0, "{plan:?}");

        // A good rotation then goes through.
        let fixed = reconcile(Mode::Credential, &[(src, Pair::Rsa.data())], &published);
        assert_eq!(fixed.secrets[0].data["tls.crt"], Pair::Rsa.cert());
        assert_eq!(
            fixed.secrets[0].annotations[keys::SOURCE_SHA256],
            Pair::Rsa.sha256()
        );
        assert_eq!(
            diff(&published, &fixed).changes,
            [Change {
                name: "shop.tls".to_owned(),
                action: Action::Update
            }]
        );
    }

    #[test]
    fn a_source_invalid_from_the_start_publishes_nothing() {
        let d = reconcile(
            Mode::Credential,
            &[(mk_source("shop", "tls"), mismatched())],
            &Published::default(),
        );
        assert!(d.secrets.is_empty());
        assert!(d.entries.is_empty());
        let merged = reconcile(
            merged_mode(),
            &[(mk_source("shop", "tls"), mismatched())],
            &Published::default(),
        );
        assert!(
            merged.secrets[0].data.is_empty(),
            "the mounted Secret, empty"
        );
        assert!(merged.entries.is_empty());
        let dir = reconcile(
            Mode::Directory,
            &[(mk_source("shop", "tls"), mismatched())],
            &Published::default(),
        );
        assert!(dir.files.is_empty());
    }

    #[test]
    fn a_published_object_whose_data_is_unreadable_is_left_alone_while_claimed() {
        let src = mk_source("shop", "tls");
        let mut published = apply(&reconcile(
            Mode::Credential,
            &[(src.clone(), Pair::P256.data())],
            &Published::default(),
        ));
        let s = published.secrets.get_mut("shop.tls").unwrap();
        Arc::make_mut(&mut s.data).insert("tls.crt".to_owned(), b"truncated".to_vec().into());
        let after = reconcile(Mode::Credential, &[(src, mismatched())], &published);
        assert!(after.secrets.is_empty(), "nothing good to write");
        assert!(after.deletions.is_empty(), "and nothing deleted");
        assert!(after.entries.is_empty());
    }

    #[test]
    fn a_deselected_source_is_unpublished_and_nothing_else_is_touched() {
        let tls = mk_source("shop", "tls");
        let blog = mk_source("blog", "tls");
        let before = reconcile(
            Mode::Credential,
            &[
                (tls.clone(), Pair::P256.data()),
                (blog.clone(), Pair::Rsa.data()),
            ],
            &Published::default(),
        );
        let mut published = apply(&before);
        // Someone else's Secret, and a cert-sync object that is not a publication.
        published.secrets.insert(
            "istio-ca-secret".to_owned(),
            PublishedSecret {
                name: "istio-ca-secret".to_owned(),
                ..PublishedSecret::default()
            },
        );
        published.secrets.insert(
            "cert-sync-report-token".to_owned(),
            PublishedSecret {
                name: "cert-sync-report-token".to_owned(),
                labels: Arc::new(map(&[(keys::MANAGED_BY, keys::MANAGED_BY_VALUE)])),
                ..PublishedSecret::default()
            },
        );
        let mut unannotated = blog.clone();
        unannotated.annotations = Default::default();
        let after = reconcile(
            Mode::Credential,
            &[(tls, Pair::P256.data()), (unannotated, Pair::Rsa.data())],
            &published,
        );
        assert_eq!(after.deletions, ["blog.tls"]);
        let plan = diff(&published, &after);
        assert_eq!(
            plan.changes,
            [
                Change {
                    name: "blog.tls".to_owned(),
                    action: Action::Delete
                },
                Change {
                    name: "shop.tls".to_owned(),
                    action: Action::Unchanged
                },
            ]
        );
    }

    #[test]
    fn merged_secret_updates_valid_members_and_keeps_the_last_good_of_an_invalid_one() {
        let a = mk_source("shop", "a");
        let b = mk_source("shop", "b");
        let c = mk_source("blog", "c");
        let before = reconcile(
            merged_mode(),
            &[
                (a.clone(), Pair::P256.data()),
                (b.clone(), Pair::P256.data()),
                (c.clone(), Pair::Rsa.data()),
            ],
            &Published::default(),
        );
        let s = secret(&before, "istio-ingressgateway-certs");
        assert_eq!(s.secret_type, "Opaque");
        assert_eq!(
            s.data.keys().collect::<Vec<_>>(),
            [
                "blog.c.crt",
                "blog.c.key",
                "shop.a.crt",
                "shop.a.key",
                "shop.b.crt",
                "shop.b.key"
            ]
        );
        assert_eq!(s.annotations[keys::SOURCE], "blog/c,shop/a,shop/b");
        assert_eq!(
            s.annotations[keys::SOURCE_SHA256],
            format!(
                "{},{},{}",
                Pair::Rsa.sha256(),
                Pair::P256.sha256(),
                Pair::P256.sha256()
            )
        );
        let published = apply(&before);

        // a rotates well, b breaks, c is deleted, d is new but broken.
        let d = mk_source("shop", "d");
        let after = reconcile(
            merged_mode(),
            &[
                (a, Pair::Ed25519.data()),
                (b, mismatched()),
                (d, mismatched()),
            ],
            &published,
        );
        let s = secret(&after, "istio-ingressgateway-certs");
        assert_eq!(
            s.data.keys().collect::<Vec<_>>(),
            ["shop.a.crt", "shop.a.key", "shop.b.crt", "shop.b.key"]
        );
        assert_eq!(s.data["shop.a.crt"], Pair::Ed25519.cert());
        assert_eq!(s.data["shop.b.crt"], Pair::P256.cert(), "last good kept");
        assert_eq!(s.data["shop.b.key"], Pair::P256.key());
        assert_eq!(s.annotations[keys::SOURCE], "shop/a,shop/b");
        assert_eq!(
            s.annotations[keys::SOURCE_SHA256],
            format!("{},{}", Pair::Ed25519.sha256(), Pair::P256.sha256())
        );
        let kept: Vec<_> = after
            .entries
            .iter()
            .map(|e| (e.source.to_string(), e.kept))
            .collect();
        assert_eq!(
            kept,
            [
                ("shop/a".to_owned(), None),
                ("shop/b".to_owned(), Some(reasons::KEY_MISMATCH))
            ]
        );
        assert!(after.deletions.is_empty(), "the merged Secret itself stays");
    }

    #[test]
    fn directory_mode_renders_the_whole_tree_and_keeps_last_good_files() {
        let a = mk_source("shop", "a");
        let mut with_ca = Pair::P256.data();
        with_ca.ca_pem = Some(ca_pem());
        let before = reconcile(
            Mode::Directory,
            &[
                (a.clone(), with_ca),
                (mk_source("blog", "b"), Pair::Rsa.data()),
            ],
            &Published::default(),
        );
        assert!(before.secrets.is_empty());
        assert_eq!(
            before.files.keys().collect::<Vec<_>>(),
            [
                "blog/b.crt",
                "blog/b.key",
                "shop/a.crt",
                "shop/a.key",
                "shop/a_ca.crt"
            ]
        );
        let published = apply(&before);
        // blog/b is gone; shop/a turns invalid.
        let after = reconcile(Mode::Directory, &[(a, mismatched())], &published);
        assert_eq!(
            after.files.keys().collect::<Vec<_>>(),
            ["shop/a.crt", "shop/a.key", "shop/a_ca.crt"]
        );
        assert_eq!(after.files["shop/a.key"], Pair::P256.key());
        assert!(diff(&published, &after).files_changed);
        let again = reconcile(
            Mode::Directory,
            &[(mk_source("shop", "a"), mismatched())],
            &apply(&after),
        );
        assert!(!diff(&apply(&after), &again).files_changed);
    }

    #[test]
    fn a_held_cert_merge_target_is_kept_exactly() {
        let p = policy(Mode::Credential);
        let sources = [mk_labelled("shop", "a", &[]), mk_labelled("shop", "b", &[])];
        let data = BTreeMap::from([
            (oref("shop/a"), Pair::P256.data()),
            (oref("shop/b"), Pair::Rsa.data()),
        ]);
        let good = mk_merge("shop", "m", "shop.bundle", &["shop/a", "shop/b"]);
        let sel = select(&p, &sources, &BTreeMap::new(), std::slice::from_ref(&good));
        let before = render(
            &p,
            &sel,
            &check_all(sel.sources(), &data, NOW),
            &Published::default(),
        );
        let published = apply(&before);

        let mut broken = good;
        broken.secrets = vec![oref("shop/a")];
        broken.selectors = vec![{
            let mut s = selector("shop", &[]);
            s.label_selector.match_expressions = vec![crate::core::model::LabelExpression {
                key: "x".to_owned(),
                operator: "Bogus".to_owned(),
                values: vec![],
            }];
            s
        }];
        let sel = select(&p, &sources, &BTreeMap::new(), &[broken]);
        let after = render(&p, &sel, &check_all(sel.sources(), &data, NOW), &published);
        assert_eq!(after.secrets, before.secrets);
        assert!(after.deletions.is_empty());
        assert!(after
            .entries
            .iter()
            .all(|e| e.kept == Some(reasons::INVALID_SELECTOR)));
        assert_eq!(diff(&published, &after).writes().count(), 0);
    }

    #[test]
    fn diff_creates_updates_replaces_and_skips_unchanged() {
        let d = reconcile(
            Mode::Credential,
            &[(mk_source("shop", "tls"), Pair::P256.data())],
            &Published::default(),
        );
        assert_eq!(
            diff(&Published::default(), &d).changes,
            [Change {
                name: "shop.tls".to_owned(),
                action: Action::Create
            }]
        );
        let mut current = apply(&d);
        // Labels and annotations added by others do not count as a change.
        let s = current.secrets.get_mut("shop.tls").unwrap();
        Arc::make_mut(&mut s.labels).insert("team".to_owned(), "web".to_owned());
        Arc::make_mut(&mut s.annotations).insert(
            "kubectl.kubernetes.io/last-applied-configuration".to_owned(),
            "{}".to_owned(),
        );
        assert_eq!(diff(&current, &d).changes[0].action, Action::Unchanged);
        // A changed annotation of ours is.
        let s = current.secrets.get_mut("shop.tls").unwrap();
        Arc::make_mut(&mut s.annotations).insert(keys::SOURCE_SHA256.to_owned(), "0".repeat(64));
        assert_eq!(diff(&current, &d).changes[0].action, Action::Update);
        // A type change needs delete-then-create.
        let s = current.secrets.get_mut("shop.tls").unwrap();
        s.secret_type = OPAQUE_TYPE.to_owned();
        assert_eq!(diff(&current, &d).changes[0].action, Action::Replace);
    }

    #[test]
    fn an_object_cert_sync_does_not_manage_is_never_overwritten_or_deleted() {
        let d = reconcile(
            Mode::Credential,
            &[(mk_source("shop", "tls"), Pair::P256.data())],
            &Published::default(),
        );
        let mut current = apply(&d);
        let s = current.secrets.get_mut("shop.tls").unwrap();
        Arc::make_mut(&mut s.labels).clear();
        let foreign_data = s.data.clone();
        let plan = diff(&current, &d);
        assert!(plan.changes.is_empty());
        assert_eq!(plan.refusals.len(), 1);
        assert_eq!(plan.refusals[0].reason, reasons::TARGET_NOT_MANAGED);
        assert!(plan.refusals[0].message.contains("shop/tls"));
        assert!(plan.blocked("shop.tls"));
        // Nor kept as "last good", nor deleted, when its source turns invalid or goes.
        let broken = reconcile(
            Mode::Credential,
            &[(mk_source("shop", "tls"), mismatched())],
            &current,
        );
        assert!(broken.secrets.is_empty());
        let gone = reconcile(Mode::Credential, &[], &current);
        assert!(gone.deletions.is_empty());
        assert_eq!(current.secrets["shop.tls"].data, foreign_data);
    }

    #[test]
    fn the_same_input_renders_the_same_output() {
        let sources = [
            (mk_source("shop", "a"), Pair::P256.data()),
            (mk_source("blog", "b"), Pair::Rsa.data()),
            (mk_source("wiki", "c"), mismatched()),
        ];
        let mut reversed = sources.clone();
        reversed.reverse();
        for mode in [Mode::Credential, merged_mode(), Mode::Directory] {
            let one = reconcile(mode.clone(), &sources, &Published::default());
            let two = reconcile(mode, &reversed, &Published::default());
            assert_eq!(one, two);
            assert_eq!(diff(&apply(&one), &two).writes().count(), 0);
        }
    }

    #[test]
    fn debug_output_of_the_desired_state_has_no_key_material() {
        for mode in [Mode::Credential, merged_mode(), Mode::Directory] {
            let d = reconcile(
                mode,
                &[(mk_source("shop", "a"), Pair::Rsa.data())],
                &Published::default(),
            );
            let shown = format!("{d:?} {:?}", apply(&d));
            for line in String::from_utf8_lossy(Pair::Rsa.key())
                .lines()
                .filter(|l| !l.starts_with("-----"))
            {
                assert!(!shown.contains(line), "key bytes in debug output");
            }
        }
    }

    #[test]
    fn source_lists_parse_back() {
        assert_eq!(
            parse_sources("a/x, b/y,,bad,/z"),
            BTreeSet::from([oref("a/x"), oref("b/y")])
        );
    }
}
