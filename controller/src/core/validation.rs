//! The gate in front of every publication: a source whose data would break a
//! TLS listener (no key, a key that does not match, an expired or garbled
//! certificate, a bad CA bundle) is refused here, before anything is written,
//! and what was published for it before stays in place (see `desired`).
//!
//! Refusal messages come from certsync-contract's typed errors, which name
//! formats, labels and dates but never echo input bytes; `Validated`'s
//! `Debug` hides the key.

use super::model::{lean_summary, Blob, ObjectRef, SourceData};
use super::reasons::{self, Refusal, Subject};
use certsync_contract::pem::{self, MAX_PEM_BYTES};
use certsync_contract::validate::{check_window, validate_pair};
use certsync_contract::{cert, CertSummary, Fingerprint};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A source that passed every check, with the data to publish.
#[derive(Clone, PartialEq, Eq)]
pub struct Validated {
    pub source: ObjectRef,
    pub cert_pem: Blob,
    pub key_pem: Blob,
    /// `ca.crt`, when present and not blank.
    pub ca_pem: Option<Blob>,
    /// Shared with the desired state's entries (its SAN list can be kilobytes).
    pub summary: Arc<CertSummary>,
    /// SHA-256 of the leaf: what the gateway must end up serving.
    pub source_sha256: Fingerprint,
}

impl fmt::Debug for Validated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validated")
            .field("source", &self.source)
            .field("cert_pem", &self.cert_pem.len())
            .field("key_pem", &"[redacted]")
            .field("ca_pem", &self.ca_pem.as_ref().map(|b| b.len()))
            .field("summary", &self.summary)
            .finish()
    }
}

/// Checks one source's data at `now` (Unix seconds).
// `Validated` is larger than the refusal; boxing either buys nothing here.
#[allow(clippy::result_large_err)]
pub fn check(source: &ObjectRef, data: &SourceData, now: i64) -> Result<Validated, Refusal> {
    let refuse = |reason: &'static str, message: String| {
        Refusal::new(Subject::Source(source.clone()), reason, message)
    };
    let (cert_pem, cert) = present(&data.cert_pem).ok_or_else(|| {
        refuse(
            reasons::MISSING_CERTIFICATE,
            "tls.crt is missing or empty".to_owned(),
        )
    })?;
    let (key_pem, key) = present(&data.key_pem).ok_or_else(|| {
        refuse(
            reasons::MISSING_KEY,
            "tls.key is missing or empty".to_owned(),
        )
    })?;
    let ca_pem = present(&data.ca_pem);
    for (field, value) in [
        ("tls.crt", Some(cert)),
        ("tls.key", Some(key)),
        ("ca.crt", ca_pem.map(|(_, ca)| ca)),
    ] {
        if let Some(value) = value.filter(|v| v.len() > MAX_PEM_BYTES) {
            return Err(refuse(
                reasons::TOO_LARGE,
                format!(
                    "{field} is {} bytes, over the {MAX_PEM_BYTES}-byte limit",
                    value.len()
                ),
            ));
        }
    }
    let pair = validate_pair(cert, key, now)
        .map_err(|e| refuse(reasons::for_invalid(e.kind()), e.to_string()))?;
    if let Some((_, ca)) = ca_pem {
        check_ca(ca)
            .map_err(|problem| refuse(reasons::MALFORMED_CA, format!("ca.crt: {problem}")))?;
    }
    // Kept for every selected source between reconciles.
    let summary = lean_summary(pair.summary);
    Ok(Validated {
        source: source.clone(),
        cert_pem: cert_pem.clone(),
        key_pem: key_pem.clone(),
        ca_pem: ca_pem.map(|(blob, _)| blob.clone()),
        source_sha256: summary.sha256,
        summary: Arc::new(summary),
    })
}

/// Re-checks a validated source at `now` without its bytes: everything but
/// the validity window was settled by [`check`] for this version of the
/// source, so an hourly re-check needs no read.
#[allow(clippy::result_large_err)]
pub fn recheck(valid: &Validated, now: i64) -> Result<(), Refusal> {
    check_window(&valid.summary, now).map_err(|e| {
        Refusal::new(
            Subject::Source(valid.source.clone()),
            reasons::for_invalid(e.kind()),
            e.to_string(),
        )
    })
}

/// The value and its bytes if it holds more than whitespace (cert-manager
/// may write an empty `ca.crt`; that means "no CA", not "a broken CA").
fn present(value: &Option<Blob>) -> Option<(&Blob, &[u8])> {
    let blob = value.as_ref()?;
    let bytes = blob.bytes()?;
    bytes
        .iter()
        .any(|b| !b.is_ascii_whitespace())
        .then_some((blob, bytes))
}

/// A CA bundle: one or more PEM certificates, each valid X.509. Validity
/// dates are not checked: a bundle may hold an expired root alongside its
/// successor during a CA rotation.
fn check_ca(ca: &[u8]) -> Result<(), String> {
    let ders = pem::certificates(ca).map_err(|e| e.to_string())?;
    for der in ders {
        cert::summarize_der(&der).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The outcome of checking every selected source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Validations {
    pub ok: BTreeMap<ObjectRef, Validated>,
    pub refused: BTreeMap<ObjectRef, Refusal>,
}

impl Validations {
    pub fn refusals(&self) -> impl Iterator<Item = &Refusal> {
        self.refused.values()
    }
}

/// Checks each of `sources` against its data in `data`. A source without
/// data (deleted between the watch event and the read) is refused as
/// `NotFound`, so what was published for it stays until the watch catches up.
pub fn check_all<'a>(
    sources: impl IntoIterator<Item = &'a ObjectRef>,
    data: &BTreeMap<ObjectRef, SourceData>,
    now: i64,
) -> Validations {
    let mut out = Validations::default();
    for source in sources {
        let result = match data.get(source) {
            Some(d) => check(source, d, now),
            None => Err(Refusal::new(
                Subject::Source(source.clone()),
                reasons::NOT_FOUND,
                "Secret data could not be read (deleted?)",
            )),
        };
        match result {
            Ok(v) => {
                out.ok.insert(source.clone(), v);
            }
            Err(r) => {
                out.refused.insert(source.clone(), r);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::*;

    fn src() -> ObjectRef {
        oref("shop/tls")
    }

    fn reason(data: SourceData) -> &'static str {
        match check(&src(), &data, NOW) {
            Ok(_) => "Ok",
            Err(r) => r.reason,
        }
    }

    /// The base64 body lines of a PEM file: what must never leak.
    fn body_lines(pem: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(pem)
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 16)
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_good_pair_is_validated_with_its_fingerprint_and_dates() {
        let mut data = Pair::P256.data();
        data.ca_pem = Some(ca_pem());
        let v = check(&src(), &data, NOW).unwrap();
        assert_eq!(v.source_sha256.to_string(), Pair::P256.sha256());
        assert_eq!(v.summary.not_after, 4_948_973_195);
        assert_eq!(v.summary.chain_len, 2);
        assert_eq!(v.cert_pem, Pair::P256.cert());
        assert_eq!(v.key_pem, Pair::P256.key());
        assert_eq!(v.ca_pem, Some(ca_pem()));
        for data in [Pair::Rsa.data(), Pair::Ed25519.data()] {
            assert_eq!(reason(data), "Ok");
        }
    }

    #[test]
    fn missing_or_empty_fields_are_named() {
        let mut no_cert = Pair::P256.data();
        no_cert.cert_pem = None;
        assert_eq!(reason(no_cert), reasons::MISSING_CERTIFICATE);
        let mut empty_cert = Pair::P256.data();
        empty_cert.cert_pem = Some(Blob::default());
        assert_eq!(reason(empty_cert), reasons::MISSING_CERTIFICATE);
        let mut no_key = Pair::P256.data();
        no_key.key_pem = None;
        assert_eq!(reason(no_key), reasons::MISSING_KEY);
        let mut blank_key = Pair::P256.data();
        blank_key.key_pem = Some(b"\n  \n".into());
        assert_eq!(reason(blank_key), reasons::MISSING_KEY);
    }

    #[test]
    fn a_blank_ca_means_no_ca_and_a_garbled_one_is_refused() {
        let mut blank = Pair::P256.data();
        blank.ca_pem = Some(b"\n".into());
        assert_eq!(check(&src(), &blank, NOW).unwrap().ca_pem, None);
        let mut garbled = Pair::P256.data();
        garbled.ca_pem = Some(b"not a certificate".into());
        assert_eq!(reason(garbled), reasons::MALFORMED_CA);
        let mut key_as_ca = Pair::P256.data();
        key_as_ca.ca_pem = Some(Pair::P256.key().into());
        let refusal = check(&src(), &key_as_ca, NOW).unwrap_err();
        assert_eq!(refusal.reason, reasons::MALFORMED_CA);
        for line in body_lines(Pair::P256.key()) {
            assert!(!refusal.message.contains(&line));
        }
    }

    #[test]
    fn oversized_fields_are_refused_before_parsing() {
        let big = vec![b'A'; MAX_PEM_BYTES + 1];
        for field in 0..3 {
            let mut data = Pair::P256.data();
            match field {
                0 => data.cert_pem = Some(big.as_slice().into()),
                1 => data.key_pem = Some(big.as_slice().into()),
                _ => data.ca_pem = Some(big.as_slice().into()),
            }
            let refusal = check(&src(), &data, NOW).unwrap_err();
            assert_eq!(refusal.reason, reasons::TOO_LARGE);
            assert!(refusal.message.contains("262144"), "{}", refusal.message);
        }
    }

    #[test]
    fn each_defect_has_its_own_reason() {
        let pair = |cert: &[u8], key: &[u8]| SourceData {
            cert_pem: Some(cert.into()),
            key_pem: Some(key.into()),
            ca_pem: None,
        };
        let rsa_key = Pair::Rsa.key();
        assert_eq!(
            reason(pair(fixture!("expired.crt"), rsa_key)),
            reasons::EXPIRED
        );
        assert_eq!(
            reason(pair(fixture!("future.crt"), rsa_key)),
            reasons::NOT_YET_VALID
        );
        assert_eq!(
            reason(pair(fixture!("p256.reversed.pem"), Pair::P256.key())),
            reasons::CHAIN_ORDER
        );
        assert_eq!(
            reason(pair(Pair::Rsa.cert(), Pair::P256.key())),
            reasons::KEY_MISMATCH
        );
        assert_eq!(
            reason(pair(b"garbage", Pair::P256.key())),
            reasons::MALFORMED_CERTIFICATE
        );
        assert_eq!(
            reason(pair(Pair::P256.cert(), b"garbage")),
            reasons::MISSING_KEY
        );
        assert_eq!(
            reason(pair(
                Pair::P256.cert(),
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            )),
            reasons::MALFORMED_KEY
        );
        assert_eq!(
            reason(pair(
                Pair::P256.cert(),
                b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
            )),
            reasons::UNSUPPORTED_KEY
        );
    }

    #[test]
    fn swapped_fields_are_refused_without_echoing_the_key() {
        for p in [Pair::P256, Pair::Rsa, Pair::Ed25519] {
            let swapped = SourceData {
                cert_pem: Some(p.key().into()),
                key_pem: Some(p.cert().into()),
                ca_pem: None,
            };
            let refusal = check(&src(), &swapped, NOW).unwrap_err();
            assert_eq!(refusal.reason, reasons::MALFORMED_CERTIFICATE);
            let shown = format!("{refusal} {refusal:?}");
            let lines = body_lines(p.key());
            assert!(!lines.is_empty());
            for line in lines {
                assert!(!shown.contains(&line), "key bytes in {shown}");
            }
        }
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let v = check(&src(), &Pair::Rsa.data(), NOW).unwrap();
        let shown = format!("{v:?}");
        for line in body_lines(Pair::Rsa.key()) {
            assert!(!shown.contains(&line));
        }
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn check_all_sorts_sources_into_ok_and_refused() {
        let good = oref("shop/good");
        let bad = oref("shop/bad");
        let gone = oref("shop/gone");
        let mut mismatched = Pair::P256.data();
        mismatched.key_pem = Some(Pair::Rsa.key().into());
        let data = BTreeMap::from([(good.clone(), Pair::P256.data()), (bad.clone(), mismatched)]);
        let v = check_all([&good, &bad, &gone], &data, NOW);
        assert_eq!(v.ok.keys().collect::<Vec<_>>(), [&good]);
        assert_eq!(v.refused[&bad].reason, reasons::KEY_MISMATCH);
        assert_eq!(v.refused[&gone].reason, reasons::NOT_FOUND);
        assert_eq!(v.refusals().count(), 2);
    }
}
