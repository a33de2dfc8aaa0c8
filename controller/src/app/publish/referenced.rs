//! The publish stage's share of natively referenced certificates: read
//! the gateway configuration, check each referenced Secret (read again
//! only when its resourceVersion moved), and hand `core::referenced`'s rows
//! and findings to the pass. Nothing is written here.

use super::{Context, Error};
use crate::core::manifest::ManifestEntry;
use crate::core::model::ObjectRef;
use crate::core::reasons::Refusal;
use crate::core::referenced::{self, Scope, SecretCheck};
use crate::runtime::kube::cluster::{self, Stores};
use crate::runtime::kube::gateways::GatewayStores;
use std::collections::{BTreeMap, BTreeSet};

pub struct Referenced {
    gateways: GatewayStores,
    scope: Scope,
    /// Per referenced Secret: the resourceVersion checked and the result.
    checked: BTreeMap<ObjectRef, (Option<String>, SecretCheck)>,
    /// Gateway API Gateways in scope, sorted: their pods get the filter.
    api_gateways: Vec<String>,
}

/// What the gateways reference, for this pass.
#[derive(Debug, Default)]
pub struct Found {
    pub entries: Vec<ManifestEntry>,
    pub refusals: Vec<Refusal>,
    pub reads: usize,
}

impl Referenced {
    pub fn new(gateways: GatewayStores, scope: Scope) -> Self {
        Referenced {
            gateways,
            scope,
            checked: BTreeMap::new(),
            api_gateways: Vec::new(),
        }
    }

    /// The Gateway API Gateways (Istio's classes, the gateway namespace)
    /// the last pass saw, sorted.
    pub fn api_gateways(&self) -> &[String] {
        &self.api_gateways
    }

    /// Rows and findings at `now`. `copied`: SDS names cert-sync publishes.
    pub async fn pass(
        &mut self,
        ctx: &Context,
        stores: &Stores,
        copied: &BTreeSet<&str>,
        now: i64,
    ) -> Result<Found, Error> {
        let config = self.gateways.snapshot();
        let mut api_gateways: Vec<String> = config
            .api
            .iter()
            .filter(|g| self.scope.covers(g))
            .map(|g| g.key.name.clone())
            .collect();
        api_gateways.sort();
        self.api_gateways = api_gateways;
        let (refs, mut refusals) =
            referenced::references(&self.scope, &config.istio, &config.api, &config.grants);
        let wanted = referenced::secrets(&refs);
        self.checked.retain(|k, _| wanted.contains(k));
        let mut reads = 0;
        for key in &wanted {
            // A TLS Secret's version is in the watch: read only when it
            // moved. Another type (Istio's generic `cert`/`key` layout) is
            // outside that watch and is read each pass.
            let known = stores.tls_sources.resource_version_of(key);
            if let (Some(rv), Some((checked_rv, _))) = (&known, self.checked.get(key)) {
                if checked_rv.as_ref() == Some(rv) {
                    continue;
                }
            }
            reads += 1;
            let (rv, check) = match cluster::read_secret_data(&ctx.client, key).await? {
                Some((rv, data)) => (
                    Some(rv),
                    referenced::check_secret(&referenced::istio_layout(data)),
                ),
                None => (None, SecretCheck::Missing),
            };
            self.checked.insert(key.clone(), (rv, check));
        }
        let checks: BTreeMap<ObjectRef, SecretCheck> = self
            .checked
            .iter()
            .map(|(k, (_, c))| (k.clone(), c.clone()))
            .collect();
        let assembled = referenced::assemble(&refs, &checks, copied, now);
        refusals.extend(assembled.refusals);
        Ok(Found {
            entries: assembled.entries,
            refusals,
            reads,
        })
    }
}
