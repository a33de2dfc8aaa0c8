//! The pod's own mesh identity: `default` (workload certificate: leaf, then
//! its issuing CA, ..., maybe the root) and `ROOTCA` (the mesh's root
//! bundle) are reported with the fingerprint of every certificate after the
//! first, so the controller can tell which root a pod trusts and which CA
//! issued its certificate; any change there is a change report.

use super::rig::*;
use certsync_contract::report::{LoadedCertificate, Report, Trigger};
use certsync_contract::Fingerprint;

const LEAF: &str = certsync_fixtures::pem_text!("rsa.crt");
const INTERMEDIATE: &str = certsync_fixtures::pem_text!("intermediate.crt");
const ROOT: &str = certsync_fixtures::pem_text!("root.crt");
/// Stands in for a second CA (a new root or intermediate): the filter
/// fingerprints what the bundle holds, it does not check what each is.
const OTHER_CA: &str = certsync_fixtures::pem_text!("p384.crt");

/// PEM blocks concatenated, for `Rig::load`.
fn pems(parts: &[&str]) -> &'static str {
    Box::leak(parts.concat().into_boxed_str())
}

fn entry<'a>(report: &'a Report, resource: &str) -> &'a LoadedCertificate {
    report
        .certificates
        .iter()
        .find(|c| c.resource == resource)
        .unwrap_or_else(|| panic!("{resource} not reported: {:?}", report.certificates))
}

fn fps(parts: &[&str]) -> Vec<Fingerprint> {
    parts.iter().map(|pem| fp(pem)).collect()
}

#[test]
fn default_and_rootca_carry_every_fingerprint_after_the_first_and_nothing_else_does() {
    let mut rig = Rig::new(mk_config(""));
    rig.load("default", "1", pems(&[LEAF, INTERMEDIATE, ROOT]));
    rig.load("ROOTCA", "1", pems(&[ROOT, OTHER_CA]));
    rig.load(
        "kubernetes://shop.tls",
        "1",
        pems(&[LEAF, INTERMEDIATE, ROOT]),
    );
    rig.load("kubernetes://shop.tls-cacert", "1", pems(&[ROOT, OTHER_CA]));
    let (call, report) = rig.cycle().expect("a startup report");
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    let workload = entry(&report, "default");
    assert_eq!(workload.cert.sha256, fp(LEAF));
    assert_eq!(workload.cert.chain_len, 3);
    assert_eq!(
        workload.chain_sha256,
        fps(&[INTERMEDIATE, ROOT]),
        "in order"
    );
    let roots = entry(&report, "ROOTCA");
    assert_eq!(roots.cert.sha256, fp(ROOT));
    assert_eq!(roots.chain_sha256, fps(&[OTHER_CA]));
    assert_eq!(
        roots.fingerprints().collect::<Vec<_>>(),
        fps(&[ROOT, OTHER_CA]),
        "every root the pod trusts"
    );
    for other in ["kubernetes://shop.tls", "kubernetes://shop.tls-cacert"] {
        assert!(entry(&report, other).chain_sha256.is_empty(), "{other}");
    }

    // On the wire: only the mesh identity has the field at all.
    let json: serde_json::Value = serde_json::from_slice(call.body.as_deref().unwrap()).unwrap();
    for c in json["certificates"].as_array().unwrap() {
        let resource = c["resource"].as_str().unwrap();
        let expected = match resource {
            "default" => Some(vec![fp(INTERMEDIATE).to_string(), fp(ROOT).to_string()]),
            "ROOTCA" => Some(vec![fp(OTHER_CA).to_string()]),
            _ => None,
        };
        assert_eq!(
            c.get("chain_sha256")
                .map(|v| serde_json::from_value::<Vec<String>>(v.clone()).unwrap()),
            expected,
            "{resource}"
        );
    }
}

#[test]
fn a_single_certificate_mesh_identity_has_no_chain_fingerprints() {
    let mut rig = Rig::new(mk_config(""));
    rig.load("default", "1", LEAF);
    rig.load("ROOTCA", "1", ROOT);
    let report = rig.cycle_and_ack().unwrap();
    assert!(entry(&report, "default").chain_sha256.is_empty());
    assert!(entry(&report, "ROOTCA").chain_sha256.is_empty());
}

#[test]
fn a_new_issuer_behind_the_same_leaf_and_a_root_added_to_the_bundle_are_changes() {
    // Two heartbeats' worth of quiet between the steps, so that every report
    // below is there because of the change alone.
    let mut rig = Rig::new(mk_config(r#","heartbeat_ms":60000,"resync_ms":60000"#));
    rig.load("default", "1", pems(&[LEAF, INTERMEDIATE]));
    rig.load("ROOTCA", "1", ROOT);
    rig.cycle_and_ack().unwrap();
    assert!(rig.cycle().is_none(), "idle");

    // Same leaf (same serial: no TLS context stops holding it), new issuer.
    rig.load("default", "2", pems(&[LEAF, OTHER_CA]));
    let report = rig
        .cycle_and_ack()
        .expect("the new issuer is reported at once");
    assert_eq!(report.trigger, Trigger::Change);
    let workload = entry(&report, "default");
    assert_eq!(workload.cert.sha256, fp(LEAF), "the leaf did not change");
    assert_eq!(workload.chain_sha256, fps(&[OTHER_CA]));
    assert!(rig.cycle().is_none(), "then idle again");

    // A root rotation begins: the bundle gains the new root after the old.
    rig.load("ROOTCA", "2", pems(&[ROOT, OTHER_CA]));
    let report = rig
        .cycle_and_ack()
        .expect("the added root is reported at once");
    assert_eq!(report.trigger, Trigger::Change);
    let roots = entry(&report, "ROOTCA");
    assert_eq!(roots.cert.sha256, fp(ROOT));
    assert_eq!(roots.chain_sha256, fps(&[OTHER_CA]));
    assert_eq!(entry(&report, "default").chain_sha256, fps(&[OTHER_CA]));
    assert!(rig.cycle().is_none(), "then idle again");
}

/// Without a version (a file source: only `last_updated` moves), what is
/// reported changed only in the chain, yet that is a change.
#[test]
fn an_unversioned_update_that_changes_only_the_chain_is_a_change() {
    let mut rig = Rig::new(mk_config(r#","heartbeat_ms":60000,"resync_ms":60000"#));
    rig.load("default", "@1", pems(&[LEAF, INTERMEDIATE]));
    rig.load("ROOTCA", "@1", ROOT);
    let report = rig.cycle_and_ack().unwrap();
    assert_eq!(entry(&report, "default").version, "");

    rig.load("default", "@2", pems(&[LEAF, OTHER_CA]));
    let report = rig
        .cycle_and_ack()
        .expect("a new issuer, same leaf, no version");
    assert_eq!(report.trigger, Trigger::Change);
    assert_eq!(entry(&report, "default").chain_sha256, fps(&[OTHER_CA]));

    rig.load("ROOTCA", "@2", pems(&[ROOT, OTHER_CA]));
    let report = rig.cycle_and_ack().expect("a root added, no version");
    assert_eq!(entry(&report, "ROOTCA").chain_sha256, fps(&[OTHER_CA]));

    // The same content again under a new stamp is no change.
    rig.load("ROOTCA", "@3", pems(&[ROOT, OTHER_CA]));
    assert!(rig.cycle().is_none(), "nothing to report");
}

#[test]
fn prefixes_that_leave_out_the_mesh_identity_report_neither_it_nor_its_chain() {
    let mut rig = Rig::new(mk_config(r#","resource_prefixes":["kubernetes://"]"#));
    rig.load("default", "1", pems(&[LEAF, INTERMEDIATE]));
    rig.load("ROOTCA", "1", pems(&[ROOT, OTHER_CA]));
    rig.load("kubernetes://shop.tls", "1", pems(&[LEAF, INTERMEDIATE]));
    let report = rig.cycle_and_ack().unwrap();
    assert_eq!(report.certificates.len(), 1);
    assert!(report.certificates[0].chain_sha256.is_empty());
}
