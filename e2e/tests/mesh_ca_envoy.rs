//! A mesh CA rotation proven from a real Envoy: the pod's own identity
//! (`default`, `ROOTCA`) comes from a mesh PKI, the filter reports it, and
//! the controller's core turns the report into the mesh CA's rollout state
//! exactly as `cert-sync` does — Stale while the workload certificate is
//! still the old CA's, Verified (Converged) once it is the new one's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

use anyhow::{Context, Result};
use certsync_contract::report::Report;
use certsync_contract::sds;
use certsync_controller::core::manifest::ManifestEntry;
use certsync_controller::core::mesh_ca;
use certsync_controller::core::model::{Blob, ObjectRef, SourceData};
use certsync_controller::core::rollout::{
    assess, LivePod, Observation, PodState, PublicationView, RolloutState,
};
use certsync_testkit::bootstrap::{self, Bootstrap, PluginConfig};
use certsync_testkit::mesh_pki::{CaSpec, MeshIntermediate, MeshRoot};
use certsync_testkit::sds::{SdsDir, TlsSecret};
use certsync_testkit::{Envoy, Receiver, TestCa};
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);
const SPIFFE: &str = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway";

/// The manifest rows cert-sync writes for `ca` under `root`.
fn mesh_rows(root: &MeshRoot, ca: &MeshIntermediate) -> Vec<ManifestEntry> {
    let data = SourceData {
        cert_pem: Some(Blob::from(ca.cert_pem.clone().into_bytes())),
        key_pem: Some(Blob::from(ca.key_pem.clone().into_bytes())),
        ca_pem: Some(Blob::from(root.pem().into_bytes())),
    };
    let valid = mesh_ca::check(&data, jiff::Timestamp::now().as_second(), 86_400).unwrap();
    let target = ObjectRef::new("istio-system", "cacerts");
    mesh_ca::entries(&valid, &target, "cert-manager/istio-ca").into()
}

/// The rollout of `rows` on the one pod, from its last report.
fn rollout(rows: &[ManifestEntry], report: &Report) -> Vec<PublicationView> {
    let now = jiff::Timestamp::now().as_millisecond();
    let pods = [LivePod {
        name: report.pod.name.clone(),
        ips: Vec::new(),
        labels: BTreeMap::new(),
    }];
    let observations = BTreeMap::from([(
        report.pod.name.clone(),
        Observation::from_report(report, now),
    )]);
    assess(rows, &pods, &observations, now, 30_000)
}

/// The last report whose `default` is issued by `issuer`.
fn report_issued_by(receiver: &Receiver, issuer: &MeshIntermediate) -> Result<Report> {
    let issued = |r: &Report| {
        r.certificates.iter().any(|c| {
            c.resource == sds::WORKLOAD_CERT && c.chain_sha256.first() == Some(&issuer.sha256)
        })
    };
    receiver
        .wait_for(
            |rs| rs.iter().any(|r| r.report.as_ref().is_some_and(issued)),
            WAIT,
        )?
        .into_iter()
        .rev()
        .find_map(|r| r.report.filter(issued))
        .context("a report of the workload certificate")
}

#[test]
fn a_mesh_ca_rotation_rolls_up_from_what_envoy_holds() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = MeshRoot::new("mesh root")?;
    let old = root.intermediate(&CaSpec::default())?;
    let new = root.intermediate(&CaSpec::default())?;

    // The pod's identity as istio-agent hands it to Envoy, issued by the old CA.
    let (chain, key) = old.workload(SPIFFE, &root.pem())?;
    let mut identity = SdsDir::single(
        dir.path().join("workload"),
        TlsSecret::new(sds::WORKLOAD_CERT, chain, key),
    )?;
    std::fs::create_dir(dir.path().join("roots"))?;
    let roots = bootstrap::write_ca_secret(
        &dir.path().join("roots").join("rootca.json"),
        sds::ROOT_CA,
        &root.pem(),
    )?;
    // A gateway certificate too, as on any ingress gateway.
    let shop = TestCa::new()?.leaf(&["shop.example.com"])?;
    let credential = SdsDir::single(
        dir.path().join("shop"),
        TlsSecret::from_cert(sds::credential("shop-tls"), &shop),
    )?;

    let receiver = Receiver::start()?;
    let config = Bootstrap::builder()
        .with_filter(true)
        .plugin_config(
            PluginConfig::default()
                .interval_ms(500)
                .heartbeat_ms(10_000),
        )
        .receiver_port(receiver.port())
        .host(
            "shop.example.com",
            credential.source(&sds::credential("shop-tls"))?,
        )
        .mesh_identity(identity.source(sds::WORKLOAD_CERT)?, roots)
        .build()?;
    let _envoy = Envoy::start(&config)?;

    // cert-sync wrote the new CA; the pod trusts its root (unchanged) but
    // its workload certificate is still the old CA's.
    let rows = mesh_rows(&root, &new);
    let views = rollout(&rows, &report_issued_by(&receiver, &old)?);
    let by_resource = |views: &[PublicationView], sds: &str| {
        views
            .iter()
            .find(|v| v.sds_resource == sds)
            .cloned()
            .unwrap()
    };
    let trusts = by_resource(&views, sds::ROOT_CA);
    let issued = by_resource(&views, sds::WORKLOAD_CERT);
    assert_eq!(trusts.state, RolloutState::Converged, "{trusts:?}");
    assert_eq!(issued.state, RolloutState::Progressing);
    let pod = issued.pods.values().next().unwrap();
    assert_eq!(pod.state, PodState::Stale);
    assert_eq!(pod.served_sha256, Some(old.sha256), "shows the old CA");

    // istio-agent renews the workload certificate from the new CA.
    let (chain, key) = new.workload(SPIFFE, &root.pem())?;
    identity.rotate(TlsSecret::new(sds::WORKLOAD_CERT, chain, key))?;
    let views = rollout(&rows, &report_issued_by(&receiver, &new)?);
    assert!(
        views.iter().all(|v| v.state == RolloutState::Converged),
        "{views:?}"
    );
    Ok(())
}
