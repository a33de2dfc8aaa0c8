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
mod tests {
    use super::*;
    use crate::core::model::{LabelExpression, LabelSelector};
    use crate::core::testing::*;

    fn no_namespaces() -> BTreeMap<String, BTreeMap<String, String>> {
        BTreeMap::new()
    }

    fn run(policy: &Policy, sources: &[SourceMeta], merges: &[CertMerge]) -> Selection {
        select(policy, sources, &no_namespaces(), merges)
    }

    #[test]
    fn members_stay_sorted_and_unique_however_they_are_added() {
        let key = |s: &str| ObjectRef::new("shop", s);
        let mut m: Members = [key("c"), key("a"), key("c")].into_iter().collect();
        assert!(m.insert(key("b")));
        assert!(!m.insert(key("a")), "already a member");
        m.extend([key("d"), key("b")]);
        let names: Vec<&str> = m.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert!(m.remove(&key("c")) && !m.contains(&key("c")));
        assert!(!m.remove(&key("c")));
        assert_eq!(m.len(), 3);
    }

    fn members(sel: &Selection, target: &Target) -> Vec<String> {
        sel.publication(target)
            .map(|p| p.members.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    fn reasons_for(sel: &Selection) -> Vec<(String, &'static str)> {
        sel.refusals
            .iter()
            .map(|r| (r.subject.to_string(), r.reason))
            .collect()
    }

    fn credential(name: &str) -> Target {
        Target::Credential(name.to_owned())
    }

    fn merged(name: &str) -> Target {
        Target::Merged(name.to_owned())
    }

    #[test]
    fn an_annotated_tls_secret_gets_its_own_credential_secret() {
        let sel = run(
            &policy(Mode::Credential),
            &[mk_source("shop", "tls"), mk_labelled("shop", "other", &[])],
            &[],
        );
        assert_eq!(sel.publications.len(), 1);
        assert_eq!(members(&sel, &credential("shop.tls")), ["shop/tls"]);
        assert!(sel.refusals.is_empty());
        assert_eq!(
            sel.sources().into_iter().cloned().collect::<Vec<_>>(),
            [oref("shop/tls")]
        );
    }

    #[test]
    fn only_the_value_true_in_any_case_selects() {
        let with = |v: &str| {
            let mut s = mk_source("shop", "tls");
            s.annotations = map(&[(keys::AUTOSYNC, v)]).into();
            s
        };
        for (value, published) in [
            ("true", true),
            ("TRUE", true),
            ("True", true),
            ("false", false),
            ("yes", false),
            ("", false),
            (" true", false),
        ] {
            let sel = run(&policy(Mode::Credential), &[with(value)], &[]);
            assert_eq!(!sel.publications.is_empty(), published, "{value:?}");
            assert!(sel.refusals.is_empty());
        }
    }

    #[test]
    fn a_namespace_outside_the_list_is_refused_never_published() {
        let mut p = policy(Mode::Credential);
        p.namespaces = NamespacePolicy::List(vec!["shop".to_owned()]);
        let sel = run(
            &p,
            &[mk_source("shop", "tls"), mk_source("blog", "tls")],
            &[],
        );
        assert_eq!(members(&sel, &credential("shop.tls")), ["shop/tls"]);
        assert!(sel.publication(&credential("blog.tls")).is_none());
        assert_eq!(
            reasons_for(&sel),
            [("Secret blog/tls".to_owned(), reasons::NAMESPACE_NOT_ALLOWED)]
        );
    }

    #[test]
    fn a_namespace_label_selector_allows_by_namespace_labels() {
        let mut p = policy(Mode::Credential);
        p.namespaces = NamespacePolicy::Selector(LabelSelector {
            match_labels: map(&[("certs", "publish")]),
            match_expressions: vec![],
        });
        let namespaces = BTreeMap::from([
            ("shop".to_owned(), map(&[("certs", "publish")])),
            ("blog".to_owned(), map(&[("certs", "no")])),
        ]);
        let sources = [
            mk_source("shop", "tls"),
            mk_source("blog", "tls"),
            mk_source("unknown", "tls"),
        ];
        let sel = select(&p, &sources, &namespaces, &[]);
        assert_eq!(sel.publications.len(), 1);
        assert_eq!(members(&sel, &credential("shop.tls")), ["shop/tls"]);
        assert_eq!(
            reasons_for(&sel),
            [
                ("Secret blog/tls".to_owned(), reasons::NAMESPACE_NOT_ALLOWED),
                (
                    "Secret unknown/tls".to_owned(),
                    reasons::NAMESPACE_NOT_ALLOWED
                ),
            ]
        );
    }

    #[test]
    fn gateway_namespace_sources_publish_but_cert_sync_outputs_never_do() {
        let mut output = mk_source(GATEWAY_NS, "shop.tls");
        output.labels = map(&[(keys::MANAGED_BY, keys::MANAGED_BY_VALUE)]).into();
        let sel = run(
            &policy(Mode::Credential),
            &[mk_source(GATEWAY_NS, "wildcard"), output],
            &[],
        );
        assert_eq!(
            members(&sel, &credential("istio-system.wildcard")),
            ["istio-system/wildcard"]
        );
        assert_eq!(sel.publications.len(), 1);
        assert_eq!(
            reasons_for(&sel),
            [(
                "Secret istio-system/shop.tls".to_owned(),
                reasons::MANAGED_BY_CERT_SYNC
            )]
        );
    }

    #[test]
    fn an_annotated_secret_that_is_not_tls_is_refused() {
        let mut opaque = mk_source("shop", "creds");
        opaque.secret_type = "Opaque".to_owned();
        let sel = run(&policy(Mode::Credential), &[opaque], &[]);
        assert!(sel.publications.is_empty());
        assert_eq!(sel.refusals[0].reason, reasons::NOT_TLS);
        assert!(sel.refusals[0].message.contains("Opaque"));
    }

    #[test]
    fn merged_mode_puts_every_annotated_source_in_the_one_secret_even_none() {
        let sel = run(
            &policy(merged_mode()),
            &[mk_source("shop", "tls"), mk_source("blog", "tls")],
            &[],
        );
        assert_eq!(sel.publications.len(), 1);
        assert_eq!(
            members(&sel, &merged("istio-ingressgateway-certs")),
            ["blog/tls", "shop/tls"]
        );
        let empty = run(&policy(merged_mode()), &[], &[]);
        assert_eq!(
            empty.publications.len(),
            1,
            "the mounted Secret always exists"
        );
        assert!(empty.publications[0].members.is_empty());
    }

    #[test]
    fn directory_mode_puts_every_annotated_source_in_the_directory() {
        let sel = run(
            &policy(Mode::Directory),
            &[mk_source("shop", "tls"), mk_source("blog", "tls")],
            &[],
        );
        assert_eq!(members(&sel, &Target::Directory), ["blog/tls", "shop/tls"]);
    }

    #[test]
    fn a_cert_merge_takes_selected_and_listed_secrets_and_names_the_missing() {
        let mut opaque = mk_labelled("shop", "opaque", &[("merge", "yes")]);
        opaque.secret_type = "Opaque".to_owned();
        let sources = [
            mk_labelled("shop", "a", &[("merge", "yes")]),
            mk_labelled("shop", "b", &[("merge", "no")]),
            mk_labelled("shop", "c", &[]),
            opaque.clone(),
            {
                let mut o = opaque.clone();
                o.key = oref("shop/listed-opaque");
                o
            },
        ];
        let mut merge = mk_merge(
            "shop",
            "m",
            "shop.bundle",
            &["shop/c", "shop/gone", "shop/listed-opaque"],
        );
        merge.selectors = vec![selector("shop", &[("merge", "yes")])];
        let sel = run(&policy(Mode::Credential), &sources, &[merge]);
        let p = sel.publication(&merged("shop.bundle")).unwrap();
        assert_eq!(p.owner, Owner::CertMerge(oref("shop/m")));
        assert_eq!(members(&sel, &merged("shop.bundle")), ["shop/a", "shop/c"]);
        assert_eq!(
            reasons_for(&sel),
            [
                (
                    "CertMerge shop/m member shop/gone".to_owned(),
                    reasons::NOT_FOUND
                ),
                (
                    "CertMerge shop/m member shop/listed-opaque".to_owned(),
                    reasons::NOT_TLS
                ),
            ]
        );
    }

    #[test]
    fn a_tenant_cert_merge_cannot_reach_into_another_namespace() {
        let sources = [
            mk_labelled("shop", "a", &[("m", "1")]),
            mk_labelled("bank", "vault", &[("m", "1")]),
        ];
        let mut merge = mk_merge("shop", "m", "shop.bundle", &["bank/vault", "a"]);
        merge.selectors = vec![selector("bank", &[("m", "1")]), selector("", &[("m", "1")])];
        let sel = run(&policy(Mode::Credential), &sources, &[merge]);
        assert_eq!(members(&sel, &merged("shop.bundle")), ["shop/a"]);
        assert_eq!(
            reasons_for(&sel),
            [
                ("CertMerge shop/m".to_owned(), reasons::CROSS_NAMESPACE),
                (
                    "CertMerge shop/m member bank/vault".to_owned(),
                    reasons::CROSS_NAMESPACE
                ),
            ]
        );
    }

    #[test]
    fn a_tenant_cert_merge_may_only_write_targets_named_after_its_namespace() {
        let sources = [mk_labelled("shop", "a", &[])];
        for target in [
            "bank.bundle",
            "shopping.bundle",
            "istio-ingressgateway-certs",
        ] {
            let merge = mk_merge("shop", "m", target, &["shop/a"]);
            let sel = run(&policy(Mode::Credential), &sources, &[merge]);
            assert!(sel.publications.is_empty(), "{target}");
            assert_eq!(
                reasons_for(&sel),
                [("CertMerge shop/m".to_owned(), reasons::TARGET_NOT_OWNED)]
            );
            assert!(sel.refusals[0].message.contains("\"shop.\""));
        }
    }

    #[test]
    fn targets_are_valid_secret_names_in_the_gateway_namespace() {
        let mut elsewhere = mk_merge(GATEWAY_NS, "m", "bundle", &[]);
        elsewhere.target.namespace = "default".to_owned();
        let invalid = mk_merge(GATEWAY_NS, "n", "Not_A_Name", &[]);
        let sel = run(&policy(Mode::Credential), &[], &[elsewhere, invalid]);
        assert!(sel.publications.is_empty());
        assert_eq!(
            reasons_for(&sel),
            [
                (
                    "CertMerge istio-system/m".to_owned(),
                    reasons::INVALID_TARGET
                ),
                (
                    "CertMerge istio-system/n".to_owned(),
                    reasons::INVALID_TARGET
                ),
            ]
        );
    }

    #[test]
    fn a_gateway_cert_merge_selects_from_any_allowed_namespace() {
        let mut p = policy(Mode::Credential);
        p.namespaces = NamespacePolicy::List(vec!["shop".to_owned(), "blog".to_owned()]);
        let sources = [
            mk_labelled("shop", "a", &[("edge", "1")]),
            mk_labelled("blog", "b", &[]),
            mk_labelled("bank", "c", &[("edge", "1")]),
            mk_labelled("bank", "d", &[]),
        ];
        let mut merge = mk_merge(GATEWAY_NS, "edge", "edge-certs", &["blog/b", "bank/d"]);
        merge.selectors = vec![
            selector("shop", &[("edge", "1")]),
            selector("bank", &[("edge", "1")]),
        ];
        let sel = run(&p, &sources, &[merge]);
        assert_eq!(members(&sel, &merged("edge-certs")), ["blog/b", "shop/a"]);
        assert_eq!(
            reasons_for(&sel),
            [
                (
                    "CertMerge istio-system/edge".to_owned(),
                    reasons::NAMESPACE_NOT_ALLOWED
                ),
                (
                    "CertMerge istio-system/edge member bank/d".to_owned(),
                    reasons::NAMESPACE_NOT_ALLOWED
                ),
            ]
        );
    }

    #[test]
    fn a_selector_never_picks_cert_sync_outputs_or_non_tls_secrets() {
        let mut output = mk_labelled(GATEWAY_NS, "shop.tls", &[]);
        output.labels = map(&[(keys::MANAGED_BY, keys::MANAGED_BY_VALUE)]).into();
        let mut opaque = mk_labelled(GATEWAY_NS, "token", &[]);
        opaque.secret_type = "Opaque".to_owned();
        let mut merge = mk_merge(GATEWAY_NS, "all", "everything", &[]);
        merge.selectors = vec![selector(GATEWAY_NS, &[])];
        let sel = run(
            &policy(Mode::Credential),
            &[output, opaque, mk_labelled(GATEWAY_NS, "wildcard", &[])],
            &[merge],
        );
        assert_eq!(
            members(&sel, &merged("everything")),
            ["istio-system/wildcard"]
        );
        assert!(sel.refusals.is_empty(), "a selector filters quietly");
    }

    #[test]
    fn two_cert_merges_on_one_target_the_older_wins_and_is_named() {
        let sources = [mk_labelled("shop", "a", &[]), mk_labelled("shop", "b", &[])];
        let mut old = mk_merge("shop", "zz-old", "shop.bundle", &["shop/a"]);
        old.created = 10;
        let new = mk_merge("shop", "aa-new", "shop.bundle", &["shop/b"]);
        let sel = run(
            &policy(Mode::Credential),
            &sources,
            &[new.clone(), old.clone()],
        );
        assert_eq!(members(&sel, &merged("shop.bundle")), ["shop/a"]);
        assert_eq!(
            reasons_for(&sel),
            [("CertMerge shop/aa-new".to_owned(), reasons::TARGET_CONFLICT)]
        );
        assert!(
            sel.refusals[0].message.contains("CertMerge shop/zz-old"),
            "{}",
            sel.refusals[0].message
        );

        // Same age: the smaller name wins.
        let mut twin = old.clone();
        twin.key = oref("shop/aa-twin");
        let sel = run(&policy(Mode::Credential), &sources, &[old, twin]);
        assert_eq!(
            sel.publications[0].owner,
            Owner::CertMerge(oref("shop/aa-twin"))
        );
    }

    #[test]
    fn a_cert_merge_on_an_annotation_credential_name_settles_by_age() {
        let mut annotated = mk_source("shop", "bundle");
        let merge = mk_merge("shop", "m", "shop.bundle", &["shop/other"]);
        let other = mk_labelled("shop", "other", &[]);

        // The annotated Secret (1000) is older than the CertMerge (2000).
        let sel = run(
            &policy(Mode::Credential),
            &[annotated.clone(), other.clone()],
            std::slice::from_ref(&merge),
        );
        assert_eq!(
            sel.publication(&credential("shop.bundle"))
                .map(|p| p.owner.clone()),
            Some(Owner::Annotation)
        );
        assert_eq!(
            reasons_for(&sel),
            [("CertMerge shop/m".to_owned(), reasons::TARGET_CONFLICT)]
        );
        assert!(sel.refusals[0].message.contains("Secret shop/bundle"));

        annotated.created = 3000;
        let sel = run(&policy(Mode::Credential), &[annotated, other], &[merge]);
        assert_eq!(members(&sel, &merged("shop.bundle")), ["shop/other"]);
        assert!(sel.publication(&credential("shop.bundle")).is_none());
        assert_eq!(
            reasons_for(&sel),
            [("Secret shop/bundle".to_owned(), reasons::TARGET_CONFLICT)]
        );
    }

    #[test]
    fn in_merged_mode_the_merged_secret_name_is_reserved() {
        let mut merge = mk_merge(GATEWAY_NS, "legacy", "istio-ingressgateway-certs", &[]);
        merge.created = -5;
        let sel = run(
            &policy(merged_mode()),
            &[mk_source("shop", "tls")],
            &[merge],
        );
        let p = sel
            .publication(&merged("istio-ingressgateway-certs"))
            .unwrap();
        assert_eq!(p.owner, Owner::Annotation);
        assert_eq!(
            reasons_for(&sel),
            [(
                "CertMerge istio-system/legacy".to_owned(),
                reasons::TARGET_CONFLICT
            )]
        );
        assert!(sel.refusals[0].message.contains("reserved"));
    }

    #[test]
    fn a_malformed_selector_holds_the_target_instead_of_shrinking_it() {
        let mut merge = mk_merge("shop", "m", "shop.bundle", &["shop/a"]);
        merge.selectors = vec![MergeSelectorBuilder::bad("shop")];
        let sel = run(
            &policy(Mode::Credential),
            &[mk_labelled("shop", "a", &[])],
            &[merge],
        );
        let p = sel.publication(&merged("shop.bundle")).unwrap();
        assert!(p.held);
        assert_eq!(
            reasons_for(&sel),
            [("CertMerge shop/m".to_owned(), reasons::INVALID_SELECTOR)]
        );
    }

    struct MergeSelectorBuilder;
    impl MergeSelectorBuilder {
        fn bad(ns: &str) -> crate::core::model::MergeSelector {
            let mut s = selector(ns, &[]);
            s.label_selector.match_expressions = vec![LabelExpression {
                key: "tier".to_owned(),
                operator: "In".to_owned(),
                values: vec![],
            }];
            s
        }
    }

    #[test]
    fn a_tenant_cert_merge_in_a_disallowed_namespace_is_refused_whole() {
        let mut p = policy(Mode::Credential);
        p.namespaces = NamespacePolicy::List(vec!["blog".to_owned()]);
        let merge = mk_merge("shop", "m", "shop.bundle", &["shop/a"]);
        let sel = run(&p, &[mk_labelled("shop", "a", &[])], &[merge]);
        assert!(sel.publications.is_empty());
        assert_eq!(
            reasons_for(&sel),
            [(
                "CertMerge shop/m".to_owned(),
                reasons::NAMESPACE_NOT_ALLOWED
            )]
        );
    }

    #[test]
    fn a_crafted_name_colliding_with_a_hash_suffixed_one_loses_to_the_older() {
        let long = "x".repeat(253);
        let crafted = naming::merged_keys(&oref(&format!("shop/{long}")));
        let crafted_name = crafted
            .cert
            .trim_start_matches("shop.")
            .trim_end_matches(".crt")
            .to_owned();
        let mut newer = mk_source("shop", &crafted_name);
        newer.created = 5000;
        let sel = run(
            &policy(merged_mode()),
            &[mk_source("shop", &long), newer],
            &[],
        );
        assert_eq!(sel.publications[0].members.len(), 1);
        assert_eq!(sel.refusals.len(), 1);
        assert_eq!(sel.refusals[0].reason, reasons::TARGET_CONFLICT);
        assert_eq!(
            sel.refusals[0].source(),
            Some(&oref(&format!("shop/{crafted_name}")))
        );
    }

    #[test]
    fn the_outcome_does_not_depend_on_input_order() {
        let sources = vec![
            mk_source("shop", "tls"),
            mk_source("blog", "tls"),
            mk_labelled("shop", "a", &[("m", "1")]),
            mk_labelled("shop", "b", &[("m", "1")]),
        ];
        let mut m1 = mk_merge("shop", "m1", "shop.x", &["shop/gone"]);
        m1.selectors = vec![selector("shop", &[("m", "1")])];
        let m2 = mk_merge("shop", "m2", "shop.x", &["shop/b"]);
        let merges = vec![m1, m2];
        let forward = run(&policy(Mode::Credential), &sources, &merges);
        let mut rs = sources.clone();
        rs.reverse();
        let mut rm = merges.clone();
        rm.reverse();
        assert_eq!(forward, run(&policy(Mode::Credential), &rs, &rm));
    }
}
