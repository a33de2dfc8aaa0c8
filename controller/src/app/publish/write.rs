//! Writing a pass's plan: every value's bytes first (hydration, by
//! digest), then server-side apply, delete with a resourceVersion
//! precondition, or the directory swap.

use super::{Outcome, Publisher};
use crate::app::{Context, Error};
use crate::core::desired::{self, Action, DesiredState};
use crate::core::flat_map::FlatMap;
use crate::core::model::{keys, Blob, Published};
use crate::runtime::gateway::files::PublishOutcome;
use crate::runtime::kube::cluster;
use crate::runtime::ops::metrics::{ApiOutcome, ApiVerb};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Where [`Publisher::hydrate`] looks for a value's bytes.
#[derive(Clone, Copy)]
enum Origin {
    /// The Secret as published (a kept last good, a merged Secret's members).
    Published,
    /// The sources the Secret publishes (a newly validated certificate).
    Sources,
}

impl Publisher {
    pub(super) async fn write(
        &mut self,
        ctx: &Context,
        desired: &DesiredState,
        plan: &desired::Plan,
        current: &Published,
        outcome: &mut Outcome,
    ) -> Result<(), Error> {
        let gateway = ctx.policy.gateway_namespace.clone();
        let by_name: BTreeMap<&str, &desired::DesiredSecret> = desired
            .secrets
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        let mut first_error = None;
        let mut unavailable = Vec::new();
        for change in plan.writes() {
            // Every value's bytes first: nothing is deleted or written half-known.
            let ready = match (change.action, by_name.get(change.name.as_str())) {
                (Action::Create | Action::Update | Action::Replace, Some(secret)) => {
                    match self.hydrate(ctx, secret).await {
                        Ok(Some(ready)) => Some(ready),
                        Ok(None) => {
                            unavailable.push(change.name.clone());
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(secret = %change.name, error = %e, "reading data to write failed; retrying on the next reconcile");
                            first_error.get_or_insert(e);
                            continue;
                        }
                    }
                }
                _ => None,
            };
            let (verb, result) = match (change.action, &ready) {
                (Action::Create | Action::Update, Some(secret)) => (
                    ApiVerb::Apply,
                    cluster::apply_secret(&ctx.client, secret).await,
                ),
                (Action::Replace, Some(secret)) => {
                    match cluster::delete_managed_secret(&ctx.client, &gateway, &change.name).await
                    {
                        Ok(()) => (
                            ApiVerb::Apply,
                            cluster::apply_secret(&ctx.client, secret).await,
                        ),
                        other => (ApiVerb::Delete, other),
                    }
                }
                (Action::Delete, _) => {
                    outcome.deletes += 1;
                    (
                        ApiVerb::Delete,
                        cluster::delete_managed_secret(&ctx.client, &gateway, &change.name).await,
                    )
                }
                _ => continue,
            };
            ctx.metrics.api_request(verb, ApiOutcome::of(&result));
            match result {
                Ok(()) => outcome.writes += 1,
                Err(e) => {
                    tracing::warn!(secret = %change.name, error = %e, "write failed; retrying on the next reconcile");
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(files) = &self.files {
            if plan.files_changed || desired.files.len() != current.files.len() {
                let tree = desired
                    .files
                    .iter()
                    .map(|(path, bytes)| (PathBuf::from(path), bytes.clone()))
                    .collect();
                outcome.files_swapped =
                    matches!(files.publish(&tree)?, PublishOutcome::Published { .. });
            }
        }
        match (first_error, unavailable.is_empty()) {
            (Some(e), _) => Err(e.into()),
            (None, false) => Err(Error::DataChanged(unavailable)),
            (None, true) => Ok(()),
        }
    }

    /// `secret` with the bytes of every data value, for writing. Values
    /// known only by digest are read again, from the sources the Secret
    /// publishes and from the Secret as published (a kept last good), and
    /// taken only where the digest matches: exactly the bytes validated are
    /// written, or nothing. `None` when a value is nowhere (its source
    /// changed since it was checked): the sources are read and checked
    /// again on the next reconcile.
    async fn hydrate(
        &mut self,
        ctx: &Context,
        secret: &desired::DesiredSecret,
    ) -> Result<Option<desired::DesiredSecret>, kube::Error> {
        let complete = |data: &FlatMap<Blob>| data.values().all(|v| v.bytes().is_some());
        if complete(&secret.data) {
            return Ok(Some(secret.clone()));
        }
        let sources = secret
            .annotations
            .get(keys::SOURCE)
            .map(|list| desired::parse_sources(list))
            .unwrap_or_default();
        let mut data = (*secret.data).clone();
        // A merged Secret's values are mostly published already: read it
        // first, and the members' sources only if still needed.
        let order = if sources.len() > 1 {
            [Origin::Published, Origin::Sources]
        } else {
            [Origin::Sources, Origin::Published]
        };
        for origin in order {
            if complete(&data) {
                break;
            }
            let mut found = Vec::new();
            match origin {
                Origin::Published => {
                    let read =
                        cluster::read_secret_values(&ctx.client, &secret.namespace, &secret.name)
                            .await;
                    ctx.metrics.api_request(ApiVerb::Get, ApiOutcome::of(&read));
                    found = read?;
                }
                Origin::Sources => {
                    for source in &sources {
                        if let Some(vault) = self.vault.as_ref().filter(|v| v.contains(source)) {
                            // A failed read leaves the value unfilled: the
                            // write waits for the next pass, as below.
                            if let Ok(Some((_, d))) = vault.read(source).await {
                                found.extend(
                                    [d.cert_pem, d.key_pem, d.ca_pem].into_iter().flatten(),
                                );
                            }
                            continue;
                        }
                        let read = cluster::read_source(&ctx.client, source).await;
                        ctx.metrics.api_request(ApiVerb::Get, ApiOutcome::of(&read));
                        if let Some((_, d)) = read? {
                            found.extend([d.cert_pem, d.key_pem, d.ca_pem].into_iter().flatten());
                        }
                    }
                }
            }
            desired::fill_by_digest(&mut data, &found);
        }
        if !complete(&data) {
            for source in &sources {
                self.freshness.forget(source);
            }
            return Ok(None);
        }
        Ok(Some(desired::DesiredSecret {
            data: Arc::new(data),
            ..secret.clone()
        }))
    }
}
