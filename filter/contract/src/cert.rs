//! What a person (and the controller) needs to know about a loaded certificate.

use crate::error::CertError;
use crate::fingerprint::{to_hex, Fingerprint};
use crate::pem;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};

/// A subject alternative name of the kinds TLS clients match on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum San {
    Dns(String),
    Uri(String),
    Ip(IpAddr),
}

/// The identity and validity of a chain's leaf, plus the chain's length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertSummary {
    /// SHA-256 of the leaf's DER.
    pub sha256: Fingerprint,
    /// Leaf serial number, lowercase hex without leading zero bytes.
    pub serial: String,
    /// Validity window, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub subject: String,
    pub issuer: String,
    #[serde(default)]
    pub sans: Vec<San>,
    pub chain_len: usize,
}

impl CertSummary {
    /// True while `now` (Unix seconds) is inside the validity window.
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// Parses a PEM chain (leaf first) and summarizes its leaf.
pub fn summarize_chain(pem_chain: &[u8]) -> Result<CertSummary, CertError> {
    let ders = pem::certificates(pem_chain)?;
    let leaf = ders.first().ok_or(CertError::NoCertificate)?;
    let mut summary = summarize_der(leaf)?;
    // Every block must be a certificate, not only the leaf.
    for (index, der) in ders.iter().enumerate().skip(1) {
        parse(der, index)?;
    }
    summary.chain_len = ders.len();
    Ok(summary)
}

/// SHA-256 of each certificate after the first in a PEM chain or bundle, in
/// order: the issuing CAs after a workload certificate's leaf, or the other
/// roots of a trust bundle. What [`crate::report::LoadedCertificate`]
/// carries as `chain_sha256`, so the filter reports and the controller
/// expects with this one function. Empty for a single certificate.
///
/// Only the PEM framing is checked here (what [`pem::certificates`]
/// refuses); whether each block is valid X.509 is [`summarize_chain`]'s.
pub fn chain_fingerprints(pem_chain: &[u8]) -> Result<Vec<Fingerprint>, CertError> {
    let ders = pem::certificates(pem_chain)?;
    Ok(ders
        .iter()
        .skip(1)
        .map(|der| Fingerprint::of_der(der))
        .collect())
}

/// Summarizes one DER certificate (`chain_len` is 1).
pub fn summarize_der(der: &[u8]) -> Result<CertSummary, CertError> {
    let cert = parse(der, 0)?;
    let validity = cert.validity();
    Ok(CertSummary {
        sha256: Fingerprint::of_der(der),
        serial: serial_hex(cert.raw_serial()),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        subject: distinguished_name(cert.subject()),
        issuer: distinguished_name(cert.issuer()),
        sans: sans(&cert),
        chain_len: 1,
    })
}

pub(crate) fn parse(der: &[u8], index: usize) -> Result<X509Certificate<'_>, CertError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(CertError::MalformedCertificate {
            index,
            reason: "trailing bytes after the certificate".into(),
        }),
        Err(e) => Err(CertError::MalformedCertificate {
            index,
            reason: e.to_string(),
        }),
    }
}

fn serial_hex(raw: &[u8]) -> String {
    let significant = raw
        .iter()
        .position(|b| *b != 0)
        .map_or(&raw[raw.len().saturating_sub(1)..], |i| &raw[i..]);
    to_hex(significant)
}

fn sans(cert: &X509Certificate<'_>) -> Vec<San> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(d) => Some(San::Dns((*d).to_owned())),
            GeneralName::URI(u) => Some(San::Uri((*u).to_owned())),
            GeneralName::IPAddress(bytes) => ip_from_bytes(bytes).map(San::Ip),
            _ => None,
        })
        .collect()
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Whether each certificate is issued by the next one, as TLS requires of a
/// served chain (leaf first). Compares the raw issuer and subject names.
pub fn chain_in_order(pem_chain: &[u8]) -> Result<bool, CertError> {
    let ders = pem::certificates(pem_chain)?;
    let certs = ders
        .iter()
        .enumerate()
        .map(|(i, der)| parse(der, i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(certs
        .windows(2)
        .all(|pair| pair[0].issuer().as_raw() == pair[1].subject().as_raw()))
}

/// RFC 4514-style rendering ("CN=shop.example.com, O=Example"), with short
/// names for the common attributes and dotted OIDs for the rest. Done here
/// because x509-parser's Display links its whole OID registry into the filter.
fn distinguished_name(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    for attr in name.iter_attributes() {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let oid = attr.attr_type().to_id_string();
        let short = match oid.as_str() {
            "2.5.4.3" => "CN",
            "2.5.4.6" => "C",
            "2.5.4.7" => "L",
            "2.5.4.8" => "ST",
            "2.5.4.10" => "O",
            "2.5.4.11" => "OU",
            "2.5.4.5" => "serialNumber",
            "1.2.840.113549.1.9.1" => "emailAddress",
            "0.9.2342.19200300.100.1.25" => "DC",
            _ => oid.as_str(),
        };
        out.push_str(short);
        out.push('=');
        out.push_str(attr.as_str().unwrap_or("<non-string value>"));
    }
    out
}
