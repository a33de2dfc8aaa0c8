use super::*;
use crate::core::manifest::{ManifestEntry, TargetRef};
use certsync_contract::report::{LoadedCertificate, PodRef, Report, ResourceError, Trigger};
use certsync_contract::CertSummary;

const WINDOW: i64 = 30_000;
const RES: &str = "kubernetes://shop.shop-tls";

fn fp(byte: u8) -> Fingerprint {
    Fingerprint([byte; 32])
}

fn mk_entry(source: &str, resource: &str, sha: u8) -> ManifestEntry {
    ManifestEntry {
        source: source.to_owned(),
        target: TargetRef::Credential {
            secret: resource.trim_start_matches("kubernetes://").to_owned(),
        },
        sds_resource: resource.to_owned(),
        sds_ca_resource: None,
        sha256: fp(sha),
        serial: "01".to_owned(),
        not_after: "2031-01-01T00:00:00Z".to_owned(),
        kept: None,
        published_at: None,
        converged_at: None,
        state: None,
        rollout: BTreeMap::new(),
    }
}

fn mk_pods(names: &[&str]) -> Vec<LivePod> {
    names
        .iter()
        .map(|n| LivePod {
            name: (*n).to_owned(),
            ips: Vec::new(),
            labels: BTreeMap::new(),
        })
        .collect()
}

fn mk_obs(at_ms: i64, served: &[(&str, u8, i64)]) -> Observation {
    Observation {
        node_id: "router~10.0.0.1~gw.istio-system".to_owned(),
        seq: 1,
        received_at_ms: at_ms,
        certificates: served
            .iter()
            .map(|(r, sha, not_after)| {
                let s = Served {
                    sha256: fp(*sha),
                    serial: "01".to_owned(),
                    not_after: *not_after,
                    chain: Vec::new(),
                };
                ((*r).to_owned(), s)
            })
            .collect(),
        unparsed: BTreeSet::new(),
    }
}

fn observations(list: &[(&str, Observation)]) -> BTreeMap<String, Observation> {
    list.iter()
        .map(|(p, o)| ((*p).to_owned(), o.clone()))
        .collect()
}

fn states(view: &PublicationView) -> Vec<(&str, PodState)> {
    view.pods
        .iter()
        .map(|(p, v)| (p.as_str(), v.state))
        .collect()
}

#[test]
fn each_pod_gets_one_of_four_states() {
    let entries = [mk_entry("shop/shop-tls", RES, 1)];
    let mut obs = observations(&[
        ("gw-a", mk_obs(1_000, &[(RES, 1, 0)])),
        ("gw-b", mk_obs(1_000, &[(RES, 9, 0)])),
        ("gw-c", mk_obs(1_000, &[("default", 5, 0)])),
    ]);
    obs.get_mut("gw-c")
        .map(|o| o.unparsed.insert("other".into()));
    let views = assess(
        &entries,
        &mk_pods(&["gw-a", "gw-b", "gw-c", "gw-d"]),
        &obs,
        2_000,
        WINDOW,
    );
    assert_eq!(
        states(&views[0]),
        [
            ("gw-a", PodState::Verified),
            ("gw-b", PodState::Stale),
            ("gw-c", PodState::Missing),
            ("gw-d", PodState::Unknown),
        ]
    );
    assert_eq!(views[0].state, RolloutState::Progressing);
    assert_eq!(views[0].verified(), 1);
    assert_eq!(views[0].pods["gw-b"].served_sha256, Some(fp(9)));
}

#[test]
fn a_silent_pod_becomes_unknown_after_the_heartbeat_window() {
    let entries = [mk_entry("shop/shop-tls", RES, 1)];
    let obs = observations(&[("gw-a", mk_obs(0, &[(RES, 1, 0)]))]);
    let pods = mk_pods(&["gw-a"]);
    assert_eq!(
        assess(&entries, &pods, &obs, WINDOW, WINDOW)[0].state,
        RolloutState::Converged
    );
    let late = assess(&entries, &pods, &obs, WINDOW + 1, WINDOW);
    assert_eq!(states(&late[0]), [("gw-a", PodState::Unknown)]);
    assert_eq!(late[0].state, RolloutState::Progressing);
}

#[test]
fn an_unparseable_loaded_resource_is_stale_not_missing() {
    let entries = [mk_entry("shop/shop-tls", RES, 1)];
    let mut o = mk_obs(0, &[]);
    o.unparsed.insert(RES.to_owned());
    let views = assess(
        &entries,
        &mk_pods(&["gw"]),
        &observations(&[("gw", o)]),
        0,
        WINDOW,
    );
    assert_eq!(states(&views[0]), [("gw", PodState::Stale)]);
}

#[test]
fn converged_needs_every_live_pod_and_at_least_one() {
    let entries = [mk_entry("shop/shop-tls", RES, 1)];
    let obs = observations(&[
        ("gw-a", mk_obs(0, &[(RES, 1, 0)])),
        ("gw-b", mk_obs(0, &[(RES, 1, 0)])),
    ]);
    let views = assess(&entries, &mk_pods(&["gw-a", "gw-b"]), &obs, 0, WINDOW);
    assert_eq!(views[0].state, RolloutState::Converged);
    let none = assess(&entries, &[], &obs, 0, WINDOW);
    assert_eq!(none[0].state, RolloutState::NoPods);
}

fn mk_report(seq: u64, trigger: Trigger, node: &str) -> Report {
    Report {
        version: certsync_contract::report::REPORT_VERSION,
        pod: PodRef {
            name: "gw".into(),
            namespace: "istio-system".into(),
        },
        node_id: node.to_owned(),
        seq,
        trigger,
        certificates: vec![LoadedCertificate {
            resource: RES.into(),
            version: "1".into(),
            cert: CertSummary {
                sha256: fp(3),
                serial: "0a".into(),
                not_before: 0,
                not_after: 100,
                subject: "CN=shop".into(),
                issuer: "CN=ca".into(),
                sans: vec![],
                chain_len: 2,
            },
            chain_sha256: Vec::new(),
        }],
        errors: vec![ResourceError {
            resource: "broken".into(),
            error: "no certificate".into(),
        }],
    }
}

#[test]
fn observation_keeps_what_verification_needs() {
    let o = Observation::from_report(&mk_report(4, Trigger::Change, "n1"), 77);
    assert_eq!(o.seq, 4);
    assert_eq!(o.received_at_ms, 77);
    assert_eq!(o.certificates[RES].sha256, fp(3));
    assert_eq!(o.certificates[RES].not_after, 100);
    assert!(o.unparsed.contains("broken"));
}

#[test]
fn replayed_or_reordered_reports_never_roll_state_back() {
    let prev = Observation::from_report(&mk_report(5, Trigger::Change, "n1"), 0);
    assert!(!accepts(
        Some(&prev),
        &mk_report(5, Trigger::Heartbeat, "n1")
    ));
    assert!(!accepts(Some(&prev), &mk_report(3, Trigger::Change, "n1")));
    assert!(accepts(
        Some(&prev),
        &mk_report(6, Trigger::Heartbeat, "n1")
    ));
    // A restarted filter starts again at 1.
    assert!(accepts(Some(&prev), &mk_report(1, Trigger::Startup, "n1")));
    assert!(accepts(Some(&prev), &mk_report(1, Trigger::Change, "n2")));
    assert!(accepts(None, &mk_report(1, Trigger::Change, "n1")));
}

const LADDER: LadderConfig = LadderConfig {
    timeout_ms: 10_000,
    can_repush: true,
    can_reapply: true,
    can_evict: true,
    eviction_interval_ms: 60_000,
};

/// The publication key of `source`'s credential Secret.
fn mk_key(source: &str) -> PublicationKey {
    PublicationKey {
        source: source.to_owned(),
        target: source.replace('/', "."),
    }
}

fn mk_view(source: &str, sha: u8, pods: &[(&str, PodState)]) -> PublicationView {
    let pods: BTreeMap<String, PodView> = pods
        .iter()
        .map(|(p, s)| {
            let v = PodView {
                state: *s,
                served_sha256: None,
                served_not_after: None,
            };
            ((*p).to_owned(), v)
        })
        .collect();
    let state = if pods.values().all(|p| p.state == PodState::Verified) {
        RolloutState::Converged
    } else {
        RolloutState::Progressing
    };
    PublicationView {
        key: mk_key(source),
        source: source.to_owned(),
        sds_resource: RES.to_owned(),
        sha256: fp(sha),
        state,
        pods,
        published: true,
        retriggers: true,
    }
}

fn names(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Converged { after_ms, .. } => format!("converged {after_ms}"),
            Action::Stalled { pods, .. } => format!("stalled {pods:?}"),
            Action::RePush { key } => format!("repush {}", key.source),
            Action::Reapply => "reapply".to_owned(),
            Action::Evict { pod, .. } => format!("evict {pod}"),
        })
        .collect()
}

#[test]
fn a_rotation_that_converges_records_its_time_and_takes_no_rung() {
    let mut t = Tracker::default();
    let stale = [mk_view("shop/a", 2, &[("gw", PodState::Stale)])];
    assert!(t.step(&stale, 1_000, &LADDER).is_empty());
    assert_eq!(t.published_at_ms(&mk_key("shop/a")), Some(1_000));
    let done = [mk_view("shop/a", 2, &[("gw", PodState::Verified)])];
    assert_eq!(names(&t.step(&done, 2_500, &LADDER)), ["converged 1500"]);
    assert_eq!(t.converged_at_ms(&mk_key("shop/a")), Some(2_500));
    // Told once.
    assert!(t.step(&done, 3_000, &LADDER).is_empty());
}

#[test]
fn a_stuck_rollout_climbs_one_rung_per_timeout_then_stops() {
    let mut t = Tracker::default();
    let stuck = [mk_view(
        "shop/a",
        2,
        &[("gw-1", PodState::Verified), ("gw-2", PodState::Stale)],
    )];
    assert!(t.step(&stuck, 0, &LADDER).is_empty());
    assert!(t.step(&stuck, 9_999, &LADDER).is_empty());
    assert_eq!(
        names(&t.step(&stuck, 10_000, &LADDER)),
        ["stalled [(\"gw-2\", Stale)]", "repush shop/a"]
    );
    assert!(t.step(&stuck, 15_000, &LADDER).is_empty());
    assert_eq!(names(&t.step(&stuck, 20_000, &LADDER)), ["reapply"]);
    assert_eq!(names(&t.step(&stuck, 30_000, &LADDER)), ["evict gw-2"]);
    // Top of the ladder: nothing more this episode.
    assert!(t.step(&stuck, 40_000, &LADDER).is_empty());
    assert!(t.step(&stuck, 400_000, &LADDER).is_empty());
}

#[test]
fn rungs_that_do_not_apply_are_skipped() {
    let directory = LadderConfig {
        can_repush: false,
        can_reapply: false,
        can_evict: false,
        ..LADDER
    };
    let mut t = Tracker::default();
    let stuck = [mk_view("shop/a", 2, &[("gw", PodState::Missing)])];
    t.step(&stuck, 0, &directory);
    assert_eq!(
        names(&t.step(&stuck, 10_000, &directory)),
        ["stalled [(\"gw\", Missing)]"]
    );
    assert!(t.step(&stuck, 50_000, &directory).is_empty());
}

#[test]
fn one_reapply_serves_every_stuck_publication() {
    let mut t = Tracker::default();
    let cfg = LadderConfig {
        can_repush: false,
        ..LADDER
    };
    let stuck = [
        mk_view("shop/a", 2, &[("gw", PodState::Stale)]),
        mk_view("shop/b", 3, &[("gw", PodState::Stale)]),
    ];
    t.step(&stuck, 0, &cfg);
    let actions = names(&t.step(&stuck, 10_000, &cfg));
    assert_eq!(actions.iter().filter(|a| *a == "reapply").count(), 1);
}

#[test]
fn evictions_are_rate_limited_across_publications_and_skip_silent_pods() {
    let mut t = Tracker::default();
    let cfg = LadderConfig {
        can_repush: false,
        can_reapply: false,
        ..LADDER
    };
    let stuck = [
        mk_view("shop/a", 2, &[("gw-1", PodState::Stale)]),
        mk_view("shop/b", 3, &[("gw-2", PodState::Stale)]),
        mk_view("shop/c", 4, &[("gw-3", PodState::Unknown)]),
    ];
    t.step(&stuck, 0, &cfg);
    let first = names(&t.step(&stuck, 10_000, &cfg));
    assert_eq!(first.iter().filter(|a| a.starts_with("evict")).count(), 1);
    assert!(first.contains(&"evict gw-1".to_owned()));
    // gw-2's turn comes after the interval; gw-3 never reported, so evicting
    // it would prove nothing.
    let second = names(&t.step(&stuck, 20_000, &cfg));
    assert!(second.iter().all(|a| !a.starts_with("evict")));
    let later = names(&t.step(&stuck, 70_000, &cfg));
    assert_eq!(later, ["evict gw-2"]);
}

#[test]
fn a_new_certificate_starts_a_new_episode() {
    let mut t = Tracker::default();
    let v1 = [mk_view("shop/a", 1, &[("gw", PodState::Verified)])];
    t.step(&v1, 0, &LADDER);
    let v2 = [mk_view("shop/a", 2, &[("gw", PodState::Stale)])];
    t.step(&v2, 5_000, &LADDER);
    assert_eq!(t.published_at_ms(&mk_key("shop/a")), Some(5_000));
    assert_eq!(t.converged_at_ms(&mk_key("shop/a")), None);
    let v2done = [mk_view("shop/a", 2, &[("gw", PodState::Verified)])];
    assert_eq!(names(&t.step(&v2done, 5_800, &LADDER)), ["converged 800"]);
}

#[test]
fn a_restart_keeps_publish_times_from_the_manifest() {
    let mut t = Tracker::default();
    t.remember_published(mk_key("shop/a"), fp(2), 1_000, None);
    let done = [mk_view("shop/a", 2, &[("gw", PodState::Verified)])];
    assert_eq!(names(&t.step(&done, 4_000, &LADDER)), ["converged 3000"]);
    assert_eq!(t.published_at_ms(&mk_key("shop/a")), Some(1_000));
}

#[test]
fn expiry_and_drift_are_judged_on_our_resources_only() {
    let day = 86_400;
    let now = 1_000 * day;
    let entries = [
        mk_entry("shop/a", "kubernetes://shop.a", 1),
        mk_entry("shop/b", "kubernetes://shop.b", 2),
    ];
    let obs = observations(&[(
        "gw",
        mk_obs(
            0,
            &[
                ("kubernetes://shop.a", 1, now + 3 * day),
                ("kubernetes://shop.b", 2, now - 1),
                ("kubernetes://old.gone", 7, now + 90 * day),
                ("default", 8, now + 1),
            ],
        ),
    )]);
    let ours = |r: &str| r.starts_with("kubernetes://");
    let found = warnings(&entries, &mk_pods(&["gw"]), &obs, ours, now, 14 * day);
    let kinds: Vec<(WarningKind, &str)> = found
        .iter()
        .map(|w| (w.kind, w.resource.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (WarningKind::Expiring, "kubernetes://shop.a"),
            (WarningKind::Expired, "kubernetes://shop.b"),
            (WarningKind::Drift, "kubernetes://old.gone"),
        ]
    );
    assert!(found[1].message().contains("EXPIRED"));
    assert!(found[2].message().contains("no source publishes it"));
}

#[test]
fn drift_is_judged_in_our_namespace_of_names_only() {
    use crate::core::model::Mode;
    let dir = Mode::Directory;
    assert!(is_ours(
        &dir,
        "/etc/certs/",
        "file-cert:/etc/certs/shop/a.crt~/etc/certs/shop/a.key"
    ));
    assert!(!is_ours(
        &dir,
        "/etc/certs",
        "file-cert:/etc/certsx/a.crt~/k"
    ));
    assert!(!is_ours(&dir, "/etc/certs", "default"));
    let cred = Mode::Credential;
    assert!(is_ours(&cred, "", "kubernetes://shop.shop-tls"));
    assert!(!is_ours(&cred, "", "kubernetes://shop-tls"));
    assert!(!is_ours(&cred, "", "kubernetes://shop.shop-tls-cacert"));
    assert!(!is_ours(&cred, "", "ROOTCA"));
    let merged = Mode::Merged {
        secret_name: "istio-ingressgateway-certs".into(),
    };
    assert!(is_ours(
        &merged,
        "",
        "file-cert:/etc/istio/ingressgateway-certs/shop.a.crt~/etc/istio/ingressgateway-certs/shop.a.key"
    ));
}

#[test]
fn a_restart_does_not_announce_what_had_converged_before() {
    let mut t = Tracker::default();
    t.remember_published(mk_key("shop/a"), fp(2), 1_000, Some(2_000));
    // Pods report again after the restart: Unknown, then Verified.
    let unknown = [mk_view("shop/a", 2, &[("gw", PodState::Unknown)])];
    assert!(t.step(&unknown, 50_000, &LADDER).is_empty());
    let done = [mk_view("shop/a", 2, &[("gw", PodState::Verified)])];
    assert!(t.step(&done, 52_000, &LADDER).is_empty());
    assert_eq!(t.converged_at_ms(&mk_key("shop/a")), Some(2_000));
}

#[test]
fn silent_pods_alone_do_not_climb_the_ladder() {
    let mut t = Tracker::default();
    let silent = [mk_view(
        "shop/a",
        2,
        &[("gw-1", PodState::Verified), ("gw-2", PodState::Unknown)],
    )];
    t.step(&silent, 0, &LADDER);
    assert!(t.step(&silent, 100_000, &LADDER).is_empty());
    // Once the pod reports the wrong certificate, the ladder starts.
    let stale = [mk_view(
        "shop/a",
        2,
        &[("gw-1", PodState::Verified), ("gw-2", PodState::Stale)],
    )];
    assert_eq!(
        names(&t.step(&stale, 100_001, &LADDER)),
        ["stalled [(\"gw-2\", Stale)]", "repush shop/a"]
    );
}

#[test]
fn the_ladder_takes_at_most_a_budget_of_rungs_per_timeout() {
    let mut t = Tracker::default();
    let views: Vec<PublicationView> = (0..LADDER_BUDGET + 20)
        .map(|i| mk_view(&format!("ns/s{i}"), 2, &[("gw", PodState::Stale)]))
        .collect();
    t.step(&views, 0, &LADDER);
    let count = |actions: &[Action]| {
        actions
            .iter()
            .filter(|a| matches!(a, Action::RePush { .. }))
            .count()
    };
    assert_eq!(count(&t.step(&views, 10_000, &LADDER)), LADDER_BUDGET);
    assert_eq!(count(&t.step(&views, 15_000, &LADDER)), 0, "budget spent");
    assert_eq!(
        count(&t.step(&views, 20_000, &LADDER)),
        20,
        "the rest, next period"
    );
}

/// A mesh CA row: `ROOTCA` proves the root by any certificate of its
/// bundle, `default` the CA by the chain's second certificate; the rows
/// never climb the ladder.
#[test]
fn the_mesh_ca_is_proven_by_root_and_issuer() {
    use crate::core::manifest::MeshProof;
    let row = |sds: &str, sha: u8, proof| ManifestEntry {
        target: TargetRef::MeshCa {
            secret: "istio-system/cacerts".into(),
            proof,
        },
        ..mk_entry("cert-manager/istio-ca", sds, sha)
    };
    let rows = [
        row("ROOTCA", 7, MeshProof::TrustsRoot),
        row("default", 8, MeshProof::IssuedBy),
    ];
    let served = |sha: u8, chain: &[u8]| Served {
        sha256: fp(sha),
        serial: "01".into(),
        not_after: 2_000_000_000,
        chain: chain.iter().map(|b| fp(*b)).collect(),
    };
    let obs = |root: Served, workload: Served| Observation {
        received_at_ms: 1_000,
        certificates: BTreeMap::from([
            ("ROOTCA".to_owned(), root),
            ("default".to_owned(), workload),
        ]),
        ..Observation::default()
    };
    let observations = BTreeMap::from([
        // Trusts old (1) and new (7) roots; workload issued by the new CA (8).
        ("gw-a".to_owned(), obs(served(1, &[7]), served(50, &[8, 7]))),
        // Old root only; workload still from the old CA (2).
        ("gw-b".to_owned(), obs(served(1, &[]), served(51, &[2, 1]))),
    ]);
    let views = assess(
        &rows,
        &mk_pods(&["gw-a", "gw-b"]),
        &observations,
        1_000,
        WINDOW,
    );
    let state = |v: &PublicationView, pod: &str| v.pods[pod].state;
    assert_eq!(state(&views[0], "gw-a"), PodState::Verified);
    assert_eq!(state(&views[1], "gw-a"), PodState::Verified);
    assert_eq!(state(&views[0], "gw-b"), PodState::Stale);
    assert_eq!(state(&views[1], "gw-b"), PodState::Stale);
    // What gw-b shows instead: the old CA.
    assert_eq!(views[1].pods["gw-b"].served_sha256, Some(fp(2)));
    assert!(views.iter().all(|v| !v.retriggers && !v.published));

    // Progressing for ever: no Stalled, no rung.
    let mut tracker = Tracker::default();
    let ladder = LadderConfig {
        timeout_ms: 10,
        can_repush: true,
        can_reapply: true,
        can_evict: true,
        eviction_interval_ms: 0,
    };
    for t in [0, 100, 1_000, 100_000] {
        assert!(tracker.step(&views, t, &ladder).is_empty(), "at {t}");
    }
}
