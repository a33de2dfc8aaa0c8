//! Bounded polling. Tests against a real Envoy observe things that happen
//! "soon" (a file watch firing, a report arriving); a fixed sleep is either too
//! long or flaky, so every wait polls a condition up to a deadline instead.

use anyhow::{anyhow, Result};
use std::time::{Duration, Instant};

/// How often [`poll`] re-checks its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `check` until it returns `Ok(Some(value))` or `timeout` passes.
///
/// `Ok(None)` and `Err(_)` both mean "not yet"; on timeout the error names
/// `what` and carries the last error `check` returned, if any.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            return Err(match last_error {
                Some(e) => e.context(format!("timed out after {timeout:?} waiting for {what}")),
                None => anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_ready_value() {
        let mut calls = 0;
        let value = poll("three calls", Duration::from_secs(5), || {
            calls += 1;
            Ok((calls == 3).then_some(calls))
        })
        .unwrap();
        assert_eq!(value, 3);
    }

    #[test]
    fn times_out_with_the_last_error() {
        let err = poll::<()>("never", Duration::from_millis(120), || {
            Err(anyhow!("still broken"))
        })
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("waiting for never"), "{text}");
        assert!(text.contains("still broken"), "{text}");
    }
}
