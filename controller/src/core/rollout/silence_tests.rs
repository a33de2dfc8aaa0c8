use super::*;

const WINDOW: i64 = 35_000;

fn mk_pod(name: &str) -> LivePod {
    LivePod {
        name: name.to_owned(),
        ips: Vec::new(),
        labels: BTreeMap::new(),
    }
}

fn mk_observation(at_ms: i64) -> Observation {
    Observation {
        received_at_ms: at_ms,
        ..Observation::default()
    }
}

fn mk_observations(reports: &[(&str, i64)]) -> BTreeMap<String, Observation> {
    reports
        .iter()
        .map(|(pod, at)| ((*pod).to_owned(), mk_observation(*at)))
        .collect()
}

fn reapply(pods: &[&str], attempt: u32) -> SilenceAction {
    SilenceAction::ReapplyForFilter {
        pods: pods.iter().map(|p| (*p).to_owned()).collect(),
        attempt,
    }
}

fn not_loaded(pod: &str, reapplied: u32) -> SilenceAction {
    SilenceAction::FilterNotLoaded {
        pod: pod.to_owned(),
        reapplied,
    }
}

fn not_reporting(pod: &str) -> SilenceAction {
    SilenceAction::NotReporting {
        pod: pod.to_owned(),
    }
}

#[test]
fn a_pod_is_not_silent_before_it_had_a_window_to_report() {
    let mut s = Silence::default();
    let pods = [mk_pod("gw-a")];
    let none = BTreeMap::new();
    assert!(s.step(&pods, &none, 1_000, WINDOW, true).is_empty());
    assert_eq!(s.states()["gw-a"], Reporting::Awaiting);
    assert!(s
        .step(&pods, &none, 1_000 + WINDOW, WINDOW, true)
        .is_empty());
    assert_eq!(
        s.step(&pods, &none, 1_001 + WINDOW, WINDOW, true),
        [reapply(&["gw-a"], 1)]
    );
    assert_eq!(s.states()["gw-a"], Reporting::FilterNotLoaded);
}

#[test]
fn a_pod_that_became_ready_later_gets_its_own_window() {
    let mut s = Silence::default();
    let none = BTreeMap::new();
    s.step(&[], &none, 0, WINDOW, true);
    let pods = [mk_pod("gw-new")];
    assert!(s.step(&pods, &none, 100_000, WINDOW, true).is_empty());
    assert!(s
        .step(&pods, &none, 100_000 + WINDOW, WINDOW, true)
        .is_empty());
    assert_eq!(s.states()["gw-new"], Reporting::Awaiting);
}

#[test]
fn pods_without_the_filter_get_reapplies_with_backoff_then_one_warning() {
    let mut s = Silence::default();
    let pods = [mk_pod("gw-a"), mk_pod("gw-b")];
    let obs = mk_observations(&[("gw-b", 0)]);
    s.step(&pods, &obs, 0, WINDOW, true);
    let t0 = WINDOW + 1;
    // gw-b reported (and is now silent too, but that is another story).
    assert_eq!(
        s.step(&pods, &obs, t0, WINDOW, true),
        [reapply(&["gw-a"], 1), not_reporting("gw-b")]
    );
    // Nothing more within the window after the re-apply...
    assert!(s.step(&pods, &obs, t0 + WINDOW, WINDOW, true).is_empty());
    // ...then the warning, once; the next re-apply waits two windows.
    assert_eq!(
        s.step(&pods, &obs, t0 + WINDOW + 1, WINDOW, true),
        [not_loaded("gw-a", 1)]
    );
    assert!(s
        .step(&pods, &obs, t0 + 2 * WINDOW - 1, WINDOW, true)
        .is_empty());
    assert_eq!(
        s.step(&pods, &obs, t0 + 2 * WINDOW, WINDOW, true),
        [reapply(&["gw-a"], 2)]
    );
    let t1 = t0 + 2 * WINDOW;
    assert!(s
        .step(&pods, &obs, t1 + 4 * WINDOW - 1, WINDOW, true)
        .is_empty());
    assert_eq!(
        s.step(&pods, &obs, t1 + 4 * WINDOW, WINDOW, true),
        [reapply(&["gw-a"], 3)]
    );
}

#[test]
fn reapplies_are_capped_in_interval_and_reset_once_the_filter_loads() {
    let mut s = Silence::default();
    let pods = [mk_pod("gw-a")];
    let mut obs = BTreeMap::new();
    s.step(&pods, &obs, 0, WINDOW, true);
    let mut now = WINDOW + 1;
    let mut last = 0;
    for _ in 0..12 {
        for a in s.step(&pods, &obs, now, WINDOW, true) {
            if let SilenceAction::ReapplyForFilter { attempt, .. } = a {
                last = attempt;
            }
        }
        now += MAX_REAPPLY_INTERVAL_MS;
    }
    assert_eq!(last, 12, "one re-apply per capped interval");
    // The filter loads: the episode ends, the next one starts from the bottom.
    obs.insert("gw-a".to_owned(), mk_observation(now));
    assert!(s.step(&pods, &obs, now, WINDOW, true).is_empty());
    assert_eq!(s.states()["gw-a"], Reporting::Reporting);
    obs.clear();
    s.step(&[], &obs, now + 1, WINDOW, true);
    s.step(&pods, &obs, now + 2, WINDOW, true);
    assert_eq!(
        s.step(&pods, &obs, now + 3 + WINDOW, WINDOW, true),
        [reapply(&["gw-a"], 1)]
    );
}

#[test]
fn without_reapply_the_warning_comes_at_once() {
    let mut s = Silence::default();
    let pods = [mk_pod("gw-a")];
    let none = BTreeMap::new();
    s.step(&pods, &none, 0, WINDOW, false);
    assert_eq!(
        s.step(&pods, &none, WINDOW + 1, WINDOW, false),
        [not_loaded("gw-a", 0)]
    );
    assert!(s.step(&pods, &none, 10 * WINDOW, WINDOW, false).is_empty());
}

#[test]
fn a_silent_pod_is_told_once_and_again_after_it_reported() {
    let mut s = Silence::default();
    let pods = [mk_pod("gw-a"), mk_pod("gw-b")];
    let mut obs = mk_observations(&[("gw-a", 1_000), ("gw-b", 50_000)]);
    s.step(&pods, &obs, 0, WINDOW, true);
    assert_eq!(
        s.step(&pods, &obs, 40_000, WINDOW, true),
        [not_reporting("gw-a")]
    );
    assert_eq!(s.states()["gw-a"], Reporting::NotReporting);
    assert!(s.step(&pods, &obs, 41_000, WINDOW, true).is_empty());
    // gw-a reports, then falls silent again; gw-b's last report ages out.
    obs.insert("gw-a".to_owned(), mk_observation(42_000));
    assert!(s.step(&pods, &obs, 43_000, WINDOW, true).is_empty());
    assert_eq!(
        s.step(&pods, &obs, 90_000, WINDOW, true),
        [not_reporting("gw-a"), not_reporting("gw-b")]
    );
}

#[test]
fn a_pod_that_is_gone_is_forgotten() {
    let mut s = Silence::default();
    let obs = mk_observations(&[("gw-a", 0)]);
    s.step(&[mk_pod("gw-a")], &obs, 0, WINDOW, true);
    assert_eq!(
        s.step(&[mk_pod("gw-a")], &obs, 40_000, WINDOW, true).len(),
        1
    );
    assert!(s.step(&[], &obs, 41_000, WINDOW, true).is_empty());
    assert!(s.states().is_empty());
    // Back (same name, a new pod): a fresh window.
    assert!(s
        .step(&[mk_pod("gw-a")], &obs, 42_000, WINDOW, true)
        .is_empty());
    assert_eq!(
        s.step(&[mk_pod("gw-a")], &obs, 42_001 + WINDOW, WINDOW, true),
        [not_reporting("gw-a")]
    );
}
