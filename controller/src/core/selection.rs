//! Which sources are published to which target, and who may claim what.
//!
//! The rules exist for tenancy: a tenant (anyone who can write Secrets or a
//! CertMerge in their own namespace) can only publish their own Secrets and
//! only to targets named after their namespace, so they can neither read
//! another tenant's certificate into their target nor overwrite another
//! tenant's target. Two claims on one target are settled by age, so an
//! existing publication is never taken over by a newer object.
//!
//! Nothing here reads Secret data: selection works on metadata, and only the
//! sources it returns have their data read and validated.

use super::labels;
use super::model::{keys, CertMerge, Mode, NamespacePolicy, ObjectRef, Policy, SourceMeta};
use super::naming;
use super::reasons::{self, Refusal, Subject};
use std::collections::{BTreeMap, BTreeSet};

/// Where a publication goes. Secrets always live in the gateway namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// Credential mode: a `kubernetes.io/tls` Secret of this name for one source.
    Credential(String),
    /// An `Opaque` Secret of this name with `<ns>.<name>.crt`/`.key` per member
    /// (merged mode, or a CertMerge in any mode).
    Merged(String),
    /// Directory mode: the certificate directory, `<ns>/<name>.crt`/`.key`.
    Directory,
}

impl Target {
    /// The Secret this target writes, if it is a Secret.
    pub fn secret_name(&self) -> Option<&str> {
        match self {
            Target::Credential(name) | Target::Merged(name) => Some(name),
            Target::Directory => None,
        }
    }
}

/// Who claimed a target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// The `certsync.istio.io/autosync` annotation, under the configured mode.
    Annotation,
    CertMerge(ObjectRef),
}

/// One target and the sources published to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub target: Target,
    pub owner: Owner,
    pub members: Members,
    /// The owner's spec is broken (e.g. a malformed selector): keep what is
    /// published for this target exactly as it is, rather than shrink it.
    pub held: bool,
}

/// The outcome of [`select`]: deterministic, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    /// Sorted by target; at most one per target.
    pub publications: Vec<Publication>,
    /// Sorted, without duplicates.
    pub refusals: Vec<Refusal>,
}

impl Selection {
    /// Every source published somewhere: the Secrets whose data must be read.
    pub fn sources(&self) -> BTreeSet<&ObjectRef> {
        self.publications
            .iter()
            .flat_map(|p| p.members.iter())
            .collect()
    }

    pub fn publication(&self, target: &Target) -> Option<&Publication> {
        self.publications.iter().find(|p| &p.target == target)
    }
}

/// Whether a Secret asks to be published by annotation (`"true"`, any case).
pub fn is_autosync(source: &SourceMeta) -> bool {
    source
        .annotations
        .get(keys::AUTOSYNC)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Whether a Secret is one cert-sync publishes (and so never a source).
pub fn is_managed(labels: &BTreeMap<String, String>) -> bool {
    labels.get(keys::MANAGED_BY).map(String::as_str) == Some(keys::MANAGED_BY_VALUE)
}

/// Whether sources in `namespace` may publish under `policy`. Under a label
/// selector, a namespace whose labels are unknown is not allowed.
pub fn namespace_allowed(
    policy: &NamespacePolicy,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
    namespace: &str,
) -> bool {
    match policy {
        NamespacePolicy::All => true,
        NamespacePolicy::List(list) => list.iter().any(|n| n == namespace),
        NamespacePolicy::Selector(selector) => namespaces
            .get(namespace)
            .is_some_and(|labels| labels::matches(selector, labels)),
    }
}

/// Selects what to publish where.
///
/// `sources`: metadata of the `kubernetes.io/tls` Secrets (and of any Secret
/// a CertMerge lists); `namespaces`: labels per namespace (needed for a
/// selector policy); `merges`: every CertMerge (pass none where CertMerge is
/// not served, e.g. a directory-mode sidecar).
pub fn select(
    policy: &Policy,
    sources: &[SourceMeta],
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
    merges: &[CertMerge],
) -> Selection {
    let mut by_key = BTreeMap::new();
    for source in sources {
        by_key.entry(&source.key).or_insert(source);
    }
    let mut cx = Context {
        policy,
        namespaces,
        by_key,
        refusals: Vec::new(),
    };

    // The mode's own target exists even when empty, so a gateway mounting it
    // can start; in merged mode its name is reserved for annotated Secrets.
    let mode_target = match &policy.mode {
        Mode::Credential => None,
        Mode::Merged { secret_name } => Some(Target::Merged(secret_name.clone())),
        Mode::Directory => Some(Target::Directory),
    };
    let mut claims = Vec::new();
    let mut mode_members = Members::default();
    let annotated: Vec<&SourceMeta> = cx
        .by_key
        .values()
        .copied()
        .filter(|s| is_autosync(s))
        .collect();
    for source in annotated {
        let subject = Subject::Source(source.key.clone());
        if let Err(refusal) = cx.eligible(source, subject) {
            cx.refusals.push(refusal);
        } else if mode_target.is_some() {
            mode_members.insert(source.key.clone());
        } else {
            claims.push(Claim {
                target: Target::Credential(naming::credential_name(&source.key)),
                owner: Owner::Annotation,
                created: source.created,
                key: source.key.clone(),
                members: Members::one(source.key.clone()),
                held: false,
            });
        }
    }
    if let Some(target) = mode_target.clone() {
        claims.push(Claim {
            target,
            owner: Owner::Annotation,
            // Older than anything: configuration, not an object, owns it.
            created: i64::MIN,
            key: ObjectRef::new(policy.gateway_namespace.clone(), String::new()),
            members: mode_members,
            held: false,
        });
    }

    let mut merges: Vec<&CertMerge> = merges.iter().collect();
    merges.sort_by(|a, b| a.key.cmp(&b.key));
    merges.dedup_by(|a, b| a.key == b.key);
    for merge in merges {
        if let Some(claim) = cx.merge_claim(merge) {
            claims.push(claim);
        }
    }

    let mut publications = cx.settle(claims, mode_target.as_ref());
    for publication in &mut publications {
        cx.settle_names(publication);
    }
    publications.sort_by(|a, b| a.target.cmp(&b.target));
    let mut refusals = cx.refusals;
    refusals.sort();
    refusals.dedup();
    Selection {
        publications,
        refusals,
    }
}

/// The sources of one target: a sorted set without duplicates, kept in a
/// vector because nearly every target has exactly one (a `BTreeSet` would
/// allocate a node of eleven slots for it, half a megabyte per reconcile at
/// a thousand sources).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members(Vec<ObjectRef>);

impl Members {
    pub fn one(source: ObjectRef) -> Self {
        Members(vec![source])
    }

    /// Adds `source`; false when it was already there.
    pub fn insert(&mut self, source: ObjectRef) -> bool {
        match self.0.binary_search(&source) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, source);
                true
            }
        }
    }

    pub fn remove(&mut self, source: &ObjectRef) -> bool {
        match self.0.binary_search(source) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    pub fn contains(&self, source: &ObjectRef) -> bool {
        self.0.binary_search(source).is_ok()
    }

    /// In order.
    pub fn iter(&self) -> std::slice::Iter<'_, ObjectRef> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<ObjectRef> for Members {
    fn from_iter<I: IntoIterator<Item = ObjectRef>>(iter: I) -> Self {
        let mut all: Vec<ObjectRef> = iter.into_iter().collect();
        all.sort_unstable();
        all.dedup();
        all.shrink_to_fit();
        Members(all)
    }
}

impl Extend<ObjectRef> for Members {
    fn extend<I: IntoIterator<Item = ObjectRef>>(&mut self, iter: I) {
        let mut all = std::mem::take(&mut self.0);
        all.extend(iter);
        *self = all.into_iter().collect();
    }
}

impl<'a> IntoIterator for &'a Members {
    type Item = &'a ObjectRef;
    type IntoIter = std::slice::Iter<'a, ObjectRef>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

struct Claim {
    target: Target,
    owner: Owner,
    created: i64,
    /// The claiming object (source or CertMerge), for ordering and messages.
    key: ObjectRef,
    members: Members,
    held: bool,
}

impl Claim {
    fn subject(&self) -> Subject {
        match &self.owner {
            Owner::Annotation => Subject::Source(self.key.clone()),
            Owner::CertMerge(m) => Subject::CertMerge(m.clone()),
        }
    }

    fn describe(&self, mode_claim: Option<&Target>) -> String {
        match &self.owner {
            Owner::Annotation if Some(&self.target) == mode_claim => {
                "the mode's merged Secret, reserved for annotated Secrets".to_owned()
            }
            Owner::Annotation => format!("published for Secret {}", self.key),
            Owner::CertMerge(m) => format!("the target of CertMerge {m}"),
        }
    }
}

struct Context<'a> {
    policy: &'a Policy,
    namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
    by_key: BTreeMap<&'a ObjectRef, &'a SourceMeta>,
    refusals: Vec<Refusal>,
}

impl Context<'_> {
    fn allowed(&self, namespace: &str) -> bool {
        namespace_allowed(&self.policy.namespaces, self.namespaces, namespace)
    }

    fn not_allowed(&self, subject: Subject, namespace: &str) -> Refusal {
        Refusal::new(
            subject,
            reasons::NAMESPACE_NOT_ALLOWED,
            format!("namespace {namespace} is not allowed to publish certificates (cert-sync namespace policy)"),
        )
    }

    /// May this existing Secret be published at all?
    #[allow(clippy::result_large_err)] // a Refusal is what the caller records
    fn eligible(&self, source: &SourceMeta, subject: Subject) -> Result<(), Refusal> {
        if is_managed(&source.labels) {
            return Err(Refusal::new(
                subject,
                reasons::MANAGED_BY_CERT_SYNC,
                format!(
                    "Secret {} is published by cert-sync ({}: {}) and cannot be a source",
                    source.key,
                    keys::MANAGED_BY,
                    keys::MANAGED_BY_VALUE
                ),
            ));
        }
        if !self.allowed(&source.key.namespace) {
            return Err(self.not_allowed(subject, &source.key.namespace));
        }
        if source.secret_type != keys::TLS_TYPE {
            // Empty: seen by a metadata-only list, which has no type.
            let what = if source.secret_type.is_empty() {
                "is not of that type".to_owned()
            } else {
                format!("has type {:?}", source.secret_type)
            };
            return Err(Refusal::new(
                subject,
                reasons::NOT_TLS,
                format!(
                    "only {} Secrets are published; Secret {} {what}",
                    keys::TLS_TYPE,
                    source.key,
                ),
            ));
        }
        Ok(())
    }

    /// The claim of one CertMerge, or `None` if it is refused as a whole.
    fn merge_claim(&mut self, merge: &CertMerge) -> Option<Claim> {
        let gateway = &self.policy.gateway_namespace;
        let own_ns = &merge.key.namespace;
        let tenant = own_ns != gateway;
        let whole = Subject::CertMerge(merge.key.clone());
        let target = &merge.target;

        let refusal = if tenant && !self.allowed(own_ns) {
            Some(self.not_allowed(whole.clone(), own_ns))
        } else if !target.namespace.is_empty() && &target.namespace != gateway {
            Some(Refusal::new(
                whole.clone(),
                reasons::INVALID_TARGET,
                format!(
                    "target namespace {} is not the gateway namespace {gateway}; cert-sync only writes there",
                    target.namespace
                ),
            ))
        } else if !naming::is_valid_secret_name(&target.name) {
            Some(Refusal::new(
                whole.clone(),
                reasons::INVALID_TARGET,
                format!("target {:?} is not a valid Secret name", target.name),
            ))
        } else if tenant && !target.name.starts_with(&format!("{own_ns}.")) {
            Some(Refusal::new(
                whole.clone(),
                reasons::TARGET_NOT_OWNED,
                format!(
                    "target {:?} must start with \"{own_ns}.\": a CertMerge outside {gateway} may only write targets named after its namespace",
                    target.name
                ),
            ))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.refusals.push(refusal);
            return None;
        }

        let mut members = Members::default();
        let mut held = false;
        for selector in &merge.selectors {
            let ns = if selector.namespace.is_empty() {
                own_ns
            } else {
                &selector.namespace
            };
            if tenant && ns != own_ns {
                self.refusals.push(Refusal::new(
                    whole.clone(),
                    reasons::CROSS_NAMESPACE,
                    format!("selector for namespace {ns} ignored: a CertMerge in {own_ns} may only select Secrets in {own_ns}"),
                ));
                continue;
            }
            if let Err(problem) = labels::check(&selector.label_selector) {
                self.refusals.push(Refusal::new(
                    whole.clone(),
                    reasons::INVALID_SELECTOR,
                    format!("selector for namespace {ns}: {problem}; what is published for this CertMerge is kept unchanged until it is fixed"),
                ));
                held = true;
                continue;
            }
            if !self.allowed(ns) {
                self.refusals.push(self.not_allowed(whole.clone(), ns));
                continue;
            }
            // A selector is a filter: Secrets it cannot publish are skipped quietly.
            members.extend(
                self.by_key
                    .values()
                    .filter(|s| &s.key.namespace == ns)
                    .filter(|s| labels::matches(&selector.label_selector, &s.labels))
                    .filter(|s| s.secret_type == keys::TLS_TYPE && !is_managed(&s.labels))
                    .map(|s| s.key.clone()),
            );
        }
        for listed in &merge.secrets {
            let listed = if listed.namespace.is_empty() {
                ObjectRef::new(own_ns.clone(), listed.name.clone())
            } else {
                listed.clone()
            };
            let subject = Subject::Member {
                merge: merge.key.clone(),
                source: listed.clone(),
            };
            if tenant && &listed.namespace != own_ns {
                self.refusals.push(Refusal::new(
                    subject,
                    reasons::CROSS_NAMESPACE,
                    format!("Secret {listed} ignored: a CertMerge in {own_ns} may only list Secrets in {own_ns}"),
                ));
                continue;
            }
            let Some(source) = self.by_key.get(&listed).copied() else {
                self.refusals.push(Refusal::new(
                    subject,
                    reasons::NOT_FOUND,
                    format!("Secret {listed} does not exist"),
                ));
                continue;
            };
            match self.eligible(source, subject) {
                Ok(()) => {
                    members.insert(listed);
                }
                Err(refusal) => self.refusals.push(refusal),
            }
        }
        Some(Claim {
            target: Target::Merged(target.name.clone()),
            owner: Owner::CertMerge(merge.key.clone()),
            created: merge.created,
            key: merge.key.clone(),
            members,
            held,
        })
    }

    /// One winner per Secret name: the oldest claim (then the smallest name).
    fn settle(&mut self, claims: Vec<Claim>, mode_claim: Option<&Target>) -> Vec<Publication> {
        let mut by_slot: BTreeMap<Option<String>, Vec<Claim>> = BTreeMap::new();
        for claim in claims {
            let slot = claim.target.secret_name().map(str::to_owned);
            by_slot.entry(slot).or_default().push(claim);
        }
        let mut publications = Vec::new();
        for (slot, mut contenders) in by_slot {
            contenders.sort_by(|a, b| (a.created, &a.key).cmp(&(b.created, &b.key)));
            let mut contenders = contenders.into_iter();
            let Some(winner) = contenders.next() else {
                continue;
            };
            for loser in contenders {
                self.refusals.push(Refusal::new(
                    loser.subject(),
                    reasons::TARGET_CONFLICT,
                    format!(
                        "target Secret {}/{} is already {} (the older claim wins)",
                        self.policy.gateway_namespace,
                        slot.as_deref().unwrap_or_default(),
                        winner.describe(mode_claim)
                    ),
                ));
            }
            publications.push(Publication {
                target: winner.target,
                owner: winner.owner,
                members: winner.members,
                held: winner.held,
            });
        }
        publications
    }

    /// Two members of one merged Secret or directory whose names coincide
    /// (only possible by crafting a name after another's hash-suffixed one):
    /// the older Secret keeps the name.
    fn settle_names(&mut self, publication: &mut Publication) {
        let name_of = |s: &ObjectRef| match publication.target {
            Target::Merged(_) => Some(naming::merged_keys(s).cert),
            Target::Directory => Some(naming::directory_paths(s).cert),
            Target::Credential(_) => None,
        };
        let mut by_name: BTreeMap<String, Vec<&SourceMeta>> = BTreeMap::new();
        for member in &publication.members {
            if let (Some(name), Some(meta)) = (name_of(member), self.by_key.get(member)) {
                by_name.entry(name).or_default().push(meta);
            }
        }
        for (name, mut metas) in by_name {
            metas.sort_by(|a, b| (a.created, &a.key).cmp(&(b.created, &b.key)));
            let mut metas = metas.into_iter();
            let Some(winner) = metas.next() else {
                continue;
            };
            for loser in metas {
                publication.members.remove(&loser.key);
                let subject = match &publication.owner {
                    Owner::Annotation => Subject::Source(loser.key.clone()),
                    Owner::CertMerge(m) => Subject::Member {
                        merge: m.clone(),
                        source: loser.key.clone(),
                    },
                };
                self.refusals.push(Refusal::new(
                    subject,
                    reasons::TARGET_CONFLICT,
                    format!(
                        "{name} is already published for Secret {} (the older claim wins)",
                        winner.key
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
#[path = "selection_tests.rs"]
mod tests;
