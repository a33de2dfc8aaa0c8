//! Test certificates with known fingerprints.
//!
//! [`TestCa`] is a root and an intermediate (ECDSA P-256) minting P-256
//! leaves on demand with `rcgen`; served chains are leaf + intermediate, as a
//! real gateway's are. RSA leaves come from the certificate core's checked-in
//! fixtures, since generating RSA keys at test time is slow. Every
//! [`TestCert`] carries the SHA-256 of its leaf, computed with
//! `certsync_contract::Fingerprint`, which is what a TLS client sees and what the
//! filter must report.

use anyhow::{bail, Context, Result};
use certsync_contract::{pem, Fingerprint};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A certificate chain and its key, with what to expect of its leaf.
#[derive(Clone)]
pub struct TestCert {
    /// Leaf first, then intermediates.
    pub chain_pem: String,
    /// PKCS#8 PEM.
    pub key_pem: String,
    pub leaf_der: Vec<u8>,
    /// SHA-256 of `leaf_der`.
    pub fingerprint: Fingerprint,
    /// Certificates in `chain_pem`.
    pub chain_len: usize,
}

impl fmt::Debug for TestCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCert")
            .field("fingerprint", &self.fingerprint)
            .field("chain_len", &self.chain_len)
            .field("key_pem", &format_args!("<redacted>"))
            .finish()
    }
}

impl TestCert {
    /// A certificate from a PEM chain (leaf first) and key.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<TestCert> {
        let ders = pem::certificates(chain_pem.as_bytes()).context("parsing the PEM chain")?;
        let Some(leaf) = ders.first() else {
            bail!("the PEM chain holds no certificate");
        };
        Ok(TestCert {
            chain_pem: chain_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            leaf_der: leaf.clone(),
            fingerprint: Fingerprint::of_der(leaf),
            chain_len: ders.len(),
        })
    }
}

/// The fixture RSA-2048 leaf for `rsa.example.com`, with its intermediate.
pub fn rsa_fixture() -> Result<TestCert> {
    TestCert::from_pem(fixture("rsa.chain.pem")?, fixture("rsa.pkcs8.key")?)
}

/// The fixture P-256 leaf for `p256.example.com`, with its intermediate.
pub fn p256_fixture() -> Result<TestCert> {
    TestCert::from_pem(fixture("p256.chain.pem")?, fixture("p256.pkcs8.key")?)
}

fn fixture(name: &str) -> Result<&'static str> {
    certsync_fixtures::text(name).with_context(|| format!("no certificate fixture {name}"))
}

/// What to put in a leaf beyond its SANs.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// DNS names, or IP addresses (parsed as such).
    pub sans: Vec<String>,
    /// Subject common name; the first SAN if `None`.
    pub common_name: Option<String>,
    /// Validity window in Unix seconds (≥ 0); by default from one hour ago to 90 days ahead.
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    /// Append the intermediate to the served chain (default true).
    pub include_intermediate: bool,
}

impl LeafSpec {
    pub fn new(sans: &[&str]) -> Self {
        LeafSpec {
            sans: sans.iter().map(|s| (*s).to_owned()).collect(),
            common_name: None,
            not_before: None,
            not_after: None,
            include_intermediate: true,
        }
    }

    pub fn valid_between(mut self, not_before: i64, not_after: i64) -> Self {
        self.not_before = Some(not_before);
        self.not_after = Some(not_after);
        self
    }

    pub fn leaf_only(mut self) -> Self {
        self.include_intermediate = false;
        self
    }
}

/// A root CA and an intermediate that signs leaves.
pub struct TestCa {
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    pub fn new() -> Result<TestCa> {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let root = CertifiedIssuer::self_signed(ca_params("cert-sync e2e root", None)?, root_key)?;
        let intermediate_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let intermediate = CertifiedIssuer::signed_by(
            ca_params("cert-sync e2e intermediate", Some(0))?,
            intermediate_key,
            &root,
        )?;
        Ok(TestCa { root, intermediate })
    }

    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    pub fn intermediate_pem(&self) -> String {
        self.intermediate.pem()
    }

    /// A fresh P-256 leaf for `sans`, valid from an hour ago for 90 days.
    pub fn leaf(&self, sans: &[&str]) -> Result<TestCert> {
        self.leaf_with(&LeafSpec::new(sans))
    }

    pub fn leaf_with(&self, spec: &LeafSpec) -> Result<TestCert> {
        let mut params = CertificateParams::new(spec.sans.clone())?;
        let mut dn = DistinguishedName::new();
        let cn = spec
            .common_name
            .clone()
            .or_else(|| spec.sans.first().cloned())
            .unwrap_or_else(|| "cert-sync e2e leaf".into());
        dn.push(DnType::CommonName, cn);
        dn.push(DnType::OrganizationName, "cert-sync e2e");
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = unix_now()?;
        set_validity(
            &mut params,
            spec.not_before.unwrap_or(now - 3600),
            spec.not_after.unwrap_or(now + 90 * 86_400),
        )?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.intermediate)?;
        let mut chain_pem = cert.pem();
        if spec.include_intermediate {
            chain_pem.push_str(&self.intermediate.pem());
        }
        let leaf_der = cert.der().to_vec();
        Ok(TestCert {
            chain_pem,
            key_pem: key.serialize_pem(),
            fingerprint: Fingerprint::of_der(&leaf_der),
            leaf_der,
            chain_len: if spec.include_intermediate { 2 } else { 1 },
        })
    }
}

fn ca_params(common_name: &str, path_len: Option<u8>) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "cert-sync e2e");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = unix_now()?;
    set_validity(&mut params, now - 86_400, now + 10 * 365 * 86_400)?;
    Ok(params)
}

pub(crate) fn unix_now() -> Result<i64> {
    Ok(i64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
    )?)
}

/// Sets the validity window from Unix seconds (rcgen's date type is the
/// `time` crate's, reached through `date_time_ymd` to avoid depending on it).
pub(crate) fn set_validity(
    params: &mut CertificateParams,
    not_before: i64,
    not_after: i64,
) -> Result<()> {
    let since_epoch = |unix: i64| {
        u64::try_from(unix)
            .map(Duration::from_secs)
            .context("validity dates before 1970 are not supported")
    };
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_before)?;
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_after)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use certsync_contract::summarize_chain;

    #[test]
    fn fixtures_have_intermediates_and_known_fingerprints() {
        let rsa = rsa_fixture().unwrap();
        assert_eq!(rsa.chain_len, 2);
        assert_eq!(
            rsa.fingerprint.to_string(),
            "e9bbceeba1a8bfc11a5129ba593548743d2fcf4f0ecce2856d0d4e67c407ee24"
        );
        let p256 = p256_fixture().unwrap();
        assert_eq!(p256.chain_len, 2);
        assert_eq!(
            p256.fingerprint.to_string(),
            "ab46a6d03325d3f6008ffb6d8da954885a4bf5e414f522ee0320a8d4e294ef9a"
        );
    }

    #[test]
    fn leaves_summarize_as_specified() {
        let ca = TestCa::new().unwrap();
        let spec = LeafSpec::new(&["shop.example.com", "10.0.0.1"])
            .valid_between(1_800_000_000, 1_900_000_000);
        let leaf = ca.leaf_with(&spec).unwrap();
        let summary = summarize_chain(leaf.chain_pem.as_bytes()).unwrap();
        assert_eq!(summary.sha256, leaf.fingerprint);
        assert_eq!(summary.chain_len, 2);
        assert_eq!(summary.not_before, 1_800_000_000);
        assert_eq!(summary.not_after, 1_900_000_000);
        assert_eq!(summary.sans.len(), 2);
        assert!(
            summary.subject.contains("shop.example.com"),
            "{}",
            summary.subject
        );
        assert!(
            summary.issuer.contains("intermediate"),
            "{}",
            summary.issuer
        );
        assert!(leaf.key_pem.contains("BEGIN PRIVATE KEY"));
        assert!(certsync_contract::cert::chain_in_order(leaf.chain_pem.as_bytes()).unwrap());

        let other = ca.leaf(&["shop.example.com"]).unwrap();
        assert_ne!(other.fingerprint, leaf.fingerprint);
        let alone = ca
            .leaf_with(&LeafSpec::new(&["a.example.com"]).leaf_only())
            .unwrap();
        assert_eq!(alone.chain_len, 1);
        assert!(!format!("{alone:?}").contains("PRIVATE"));
    }
}
