//! Unit tests of `metrics`.

use super::*;
use std::collections::BTreeSet;

fn sample_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.starts_with('#'))
}

fn value_of(text: &str, series: &str) -> Option<String> {
    sample_lines(text)
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_owned)
}

/// One event of each kind, so every family has a series.
fn busy() -> Metrics {
    let m = Metrics::new();
    m.set_not_after(&ObjectRef::new("shop", "shop-tls"), 1_900_000_000);
    m.api_request(ApiVerb::Get, ApiOutcome::Ok);
    let view = crate::core::rollout::PublicationView {
        key: crate::core::rollout::PublicationKey {
            source: "shop/shop-tls".into(),
            target: "shop.shop-tls".into(),
        },
        source: "shop/shop-tls".into(),
        sds_resource: "kubernetes://shop.shop-tls".into(),
        sha256: certsync_contract::Fingerprint([1; 32]),
        state: crate::core::rollout::RolloutState::Converged,
        published: true,
        retriggers: true,
        pods: std::collections::BTreeMap::from([(
            "gw-0".to_owned(),
            crate::core::rollout::PodView {
                state: crate::core::rollout::PodState::Verified,
                served_sha256: None,
                served_not_after: Some(1_900_000_000),
            },
        )]),
    };
    m.set_rollout(&[view]);
    m
}

#[test]
fn encode_has_every_family_with_help_and_type() {
    let text = busy().encode();
    for family in FAMILIES {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} HELP in:\n{text}"
        );
        assert!(text.contains(&format!("# TYPE {family} ")), "{family} TYPE");
    }
    assert!(text.contains("# TYPE certsync_refusals_total counter\n"));
    assert!(text.contains("# TYPE certsync_publish_latency_seconds histogram\n"));
    assert!(text.contains("# TYPE certsync_leader gauge\n"));
    assert!(!text.contains("# EOF"), "0.0.4 has no EOF marker");
    // Pre-registered series start at zero.
    assert_eq!(
        value_of(&text, "certsync_refusals_total{reason=\"KeyMismatch\"}").as_deref(),
        Some("0")
    );
    assert_eq!(value_of(&text, "certsync_leader").as_deref(), Some("0"));

    // A labelled family without any series yet is left out, as
    // client_golang does; the unlabelled and pre-registered ones are not.
    let fresh = Metrics::new().encode();
    for family in FAMILIES {
        let listed = fresh.contains(&format!("# TYPE {family} "));
        assert_eq!(listed, !ON_DEMAND_FAMILIES.contains(&family), "{family}");
    }
}

#[test]
fn openmetrics_ends_with_eof() {
    let text = busy().encode_openmetrics();
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains("# TYPE certsync_refusals counter\n"));
}

#[test]
fn methods_move_their_series() {
    let m = Metrics::new();
    let clone = m.clone();
    m.observe_publish(Duration::from_millis(3));
    m.observe_publish(Duration::from_secs(20));
    m.refused(reasons::KEY_MISMATCH);
    clone.refused(reasons::KEY_MISMATCH);
    m.refused("something a caller made up");
    m.set_published(PublishedKind::MergedEntry, 4);
    m.set_not_after(&ObjectRef::new("shop", "shop-tls"), 1_900_000_000);
    m.api_request(ApiVerb::Update, ApiOutcome::Conflict);
    m.reconciled(ReconcileOutcome::Error);
    m.set_leader(true);
    let text = m.encode();
    let expect = [
        ("certsync_publish_latency_seconds_count", "2"),
        ("certsync_publish_latency_seconds_bucket{le=\"0.001\"}", "0"),
        ("certsync_publish_latency_seconds_bucket{le=\"0.005\"}", "1"),
        ("certsync_publish_latency_seconds_bucket{le=\"10.0\"}", "1"),
        ("certsync_publish_latency_seconds_bucket{le=\"+Inf\"}", "2"),
        ("certsync_refusals_total{reason=\"KeyMismatch\"}", "2"),
        ("certsync_refusals_total{reason=\"Other\"}", "1"),
        ("certsync_published_objects{kind=\"merged_entry\"}", "4"),
        ("certsync_published_objects{kind=\"secret\"}", "0"),
        (
            "certsync_source_not_after_seconds{source=\"shop/shop-tls\"}",
            "1900000000",
        ),
        (
            "certsync_api_requests_total{verb=\"update\",outcome=\"conflict\"}",
            "1",
        ),
        ("certsync_reconcile_total{outcome=\"error\"}", "1"),
        ("certsync_leader", "1"),
    ];
    for (series, value) in expect {
        assert_eq!(
            value_of(&text, series).as_deref(),
            Some(value),
            "{series} in:\n{text}"
        );
    }
    assert!(!text.contains("something a caller made up"));
    m.set_leader(false);
    assert_eq!(
        value_of(&m.encode(), "certsync_leader").as_deref(),
        Some("0")
    );
}

#[test]
fn forgotten_source_disappears() {
    let m = Metrics::new();
    let a = ObjectRef::new("shop", "a");
    let b = ObjectRef::new("shop", "b");
    m.set_not_after(&a, 1);
    m.set_not_after(&b, 2);
    m.forget_source(&a);
    m.forget_source(&ObjectRef::new("shop", "never-published"));
    let text = m.encode();
    assert!(!text.contains("source=\"shop/a\""), "{text}");
    assert!(text.contains("source=\"shop/b\""));
    assert!(text.contains("# TYPE certsync_source_not_after_seconds gauge"));
}

#[test]
fn label_names_are_a_closed_set_and_values_carry_no_data() {
    let m = Metrics::new();
    m.refused(reasons::EXPIRED);
    m.refused("-----BEGIN PRIVATE KEY-----");
    m.set_not_after(&ObjectRef::new("ns", "name"), 5);
    for verb in [ApiVerb::Get, ApiVerb::Apply, ApiVerb::Watch] {
        for outcome in [ApiOutcome::Ok, ApiOutcome::Throttled, ApiOutcome::Error] {
            m.api_request(verb, outcome);
        }
    }
    m.observe_publish(Duration::from_millis(1));
    let text = m.encode();
    let allowed: BTreeSet<&str> = [
        "reason", "source", "kind", "verb", "outcome", "le", "step", "state", "pod",
    ]
    .into_iter()
    .collect();
    let mut reason_values = BTreeSet::new();
    for line in sample_lines(&text) {
        let Some((_, labels)) = line.split_once('{') else {
            continue;
        };
        let labels = labels.split_once('}').map_or("", |(l, _)| l);
        for pair in labels.split("\",") {
            let (name, value) = pair.split_once("=\"").unwrap_or((pair, ""));
            assert!(allowed.contains(name), "unexpected label {name} in {line}");
            if name == "reason" {
                reason_values.insert(value.trim_end_matches('"').to_owned());
            }
        }
    }
    let known: BTreeSet<String> = reasons::REFUSALS
        .iter()
        .chain(&[OTHER_REASON])
        .map(|r| (*r).to_owned())
        .collect();
    assert_eq!(reason_values, known);
    assert!(!text.contains("PRIVATE KEY"));
}

#[test]
fn prometheus_text_conversion() {
    let om =
        "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{x=\"1\"} 3\n\
              # HELP b Bytes.\n# TYPE b gauge\n# UNIT b bytes\nb 1\n# EOF\n";
    assert_eq!(
        to_prometheus_text(om),
        "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{x=\"1\"} 3\n\
         # HELP b Bytes.\n# TYPE b gauge\nb 1\n"
    );
}
