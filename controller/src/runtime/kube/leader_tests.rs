//! Unit tests of `leader`.

use super::*;

fn config(lease: u64, renew: u64, retry: u64) -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_millis(lease),
        renew_deadline: Duration::from_millis(renew),
        retry_period: Duration::from_millis(retry),
    }
}

#[test]
fn timing_must_leave_a_safety_margin() {
    assert!(LeaseConfig::default().validate().is_ok());
    assert!(config(1500, 1000, 200).validate().is_ok());
    assert!(config(1000, 1000, 200).validate().is_err());
    assert!(config(1000, 1500, 200).validate().is_err());
    assert!(config(1500, 200, 200).validate().is_err());
    assert!(config(1500, 1000, 0).validate().is_err());
}

#[test]
fn written_duration_rounds_up() {
    assert_eq!(config(1500, 1000, 200).lease_duration_seconds(), 2);
    assert_eq!(config(15_000, 10_000, 2000).lease_duration_seconds(), 15);
    assert_eq!(config(300, 200, 100).lease_duration_seconds(), 1);
}

#[test]
fn jitter_stays_in_range() {
    let base = Duration::from_millis(100);
    for _ in 0..1000 {
        let j = jittered(base);
        assert!(j >= base && j < base.mul_f64(2.2), "{j:?}");
    }
}
