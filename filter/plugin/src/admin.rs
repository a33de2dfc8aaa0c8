//! Reading Envoy's admin API: which SDS secrets are loaded, their PEM, and
//! what the TLS contexts actually serve.
//!
//! Three reads, each taken only when the cheaper one before it says so (the
//! order is the reporter's, see `reporter`): the *index* (`name`,
//! `version_info`, `last_updated` of every active secret via a field mask, no
//! PEM), `/certs` (the serial numbers each TLS context holds, a multiset:
//! [`Served`]), and the *secrets* (full PEM, key redacted by Envoy) only for
//! the names under suspicion.
//!
//! `config_dump` shows the latest update Envoy *received*, even one it then
//! rejected (a key that does not match, a broken chain) while it keeps serving
//! the previous certificate; neither stamp moves then, and on Envoy 1.36 a
//! file rotation moves no stamp either (table in `tripwire`). So a chain read
//! here is reported only when its leaf serial is among the served ones.

use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Admin path of the index: every active SDS secret, without its contents.
pub const INDEX_PATH: &str =
    "/config_dump?resource=dynamic_active_secrets&mask=name,version_info,last_updated";
const SECRETS_PATH: &str = "/config_dump?resource=dynamic_active_secrets";
/// Serial numbers of every certificate in Envoy's TLS contexts.
pub const CERTS_PATH: &str = "/certs";
/// Above this many changed names, one unfiltered dump is cheaper than a regex.
const MAX_NAMES_IN_REGEX: usize = 64;

/// One line of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    pub version: String,
    /// Changes whenever Envoy accepts an update for the secret, even when a
    /// file-based source carries no version.
    pub stamp: String,
}

/// The certificate PEM Envoy holds for one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSecret {
    pub name: String,
    pub version: String,
    pub stamp: String,
    pub pem: Result<Vec<u8>, String>,
}

#[derive(Deserialize)]
struct Dump {
    #[serde(default)]
    configs: Vec<DynamicSecret>,
}

#[derive(Deserialize)]
struct DynamicSecret {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version_info: String,
    #[serde(default)]
    last_updated: String,
    secret: Option<Secret>,
}

#[derive(Deserialize)]
struct Secret {
    tls_certificate: Option<TlsCertificate>,
    validation_context: Option<ValidationContext>,
}

#[derive(Deserialize)]
struct TlsCertificate {
    certificate_chain: Option<DataSource>,
}

#[derive(Deserialize)]
struct ValidationContext {
    trusted_ca: Option<DataSource>,
}

#[derive(Deserialize)]
struct DataSource {
    inline_bytes: Option<String>,
    inline_string: Option<String>,
    filename: Option<String>,
}

impl DataSource {
    fn pem(self) -> Result<Vec<u8>, String> {
        if let Some(s) = self.inline_string {
            Ok(s.into_bytes())
        } else if let Some(b) = self.inline_bytes {
            base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map_err(|_| "admin API returned inline_bytes that are not base64".to_owned())
        } else if let Some(f) = self.filename {
            Err(format!(
                "certificate is loaded from file {f:?}, which the filter cannot read"
            ))
        } else {
            Err("secret has no certificate data source".to_owned())
        }
    }
}

impl DynamicSecret {
    fn stamp(&self) -> String {
        format!("{}|{}", self.version_info, self.last_updated)
    }
}

fn parse_dump(body: &[u8]) -> Result<Dump, String> {
    serde_json::from_slice(body).map_err(|e| format!("admin API returned unexpected JSON: {e}"))
}

/// Parses the index response.
pub fn parse_index(body: &[u8]) -> Result<Vec<IndexEntry>, String> {
    Ok(parse_dump(body)?
        .configs
        .into_iter()
        .filter(|s| !s.name.is_empty())
        .map(|s| IndexEntry {
            stamp: s.stamp(),
            name: s.name,
            version: s.version_info,
        })
        .collect())
}

/// Parses a secrets response, keeping the names `wanted` accepts.
/// Secrets without a certificate or CA (e.g. session ticket keys) are skipped.
pub fn parse_secrets(
    body: &[u8],
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<LoadedSecret>, String> {
    Ok(parse_dump(body)?
        .configs
        .into_iter()
        .filter(|s| wanted(&s.name))
        .filter_map(|s| {
            let stamp = s.stamp();
            let source = match s.secret? {
                Secret {
                    tls_certificate:
                        Some(TlsCertificate {
                            certificate_chain: Some(c),
                        }),
                    ..
                } => c,
                Secret {
                    validation_context:
                        Some(ValidationContext {
                            trusted_ca: Some(c),
                        }),
                    ..
                } => c,
                _ => return None,
            };
            Some(LoadedSecret {
                name: s.name,
                version: s.version_info,
                stamp,
                pem: source.pem(),
            })
        })
        .collect())
}

#[derive(Deserialize)]
struct Certs {
    #[serde(default)]
    certificates: Vec<ContextCerts>,
}

#[derive(Deserialize)]
struct ContextCerts {
    #[serde(default)]
    ca_cert: Vec<CertDetails>,
    #[serde(default)]
    cert_chain: Vec<CertDetails>,
}

#[derive(Deserialize)]
struct CertDetails {
    #[serde(default)]
    serial_number: String,
}

/// How many TLS contexts hold each certificate (by normalized serial):
/// what Envoy actually serves, whatever `config_dump` says it received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Served(BTreeMap<String, u32>);

impl Served {
    /// Number of TLS contexts holding `serial` (normalized).
    pub fn count(&self, serial: &str) -> u32 {
        self.0.get(serial).copied().unwrap_or(0)
    }

    pub fn contains(&self, serial: &str) -> bool {
        self.count(serial) > 0
    }
}

/// Parses `/certs`: every serial of every context, each counted once per context.
pub fn parse_served(body: &[u8]) -> Result<Served, String> {
    let certs: Certs = serde_json::from_slice(body)
        .map_err(|e| format!("admin API returned unexpected /certs JSON: {e}"))?;
    let mut served = BTreeMap::new();
    for context in &certs.certificates {
        let mut serials: Vec<String> = context
            .ca_cert
            .iter()
            .chain(&context.cert_chain)
            .map(|d| normalize_serial(&d.serial_number))
            .collect();
        serials.sort_unstable();
        serials.dedup();
        for serial in serials {
            *served.entry(serial).or_insert(0u32) += 1;
        }
    }
    Ok(Served(served))
}

/// Lowercase hex without leading zeros: Envoy and certsync-contract differ on
/// a leading zero nibble.
pub fn normalize_serial(serial: &str) -> String {
    let trimmed = serial.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_ascii_lowercase()
    }
}

/// Admin path fetching the full secrets for `names` (all secrets when `names`
/// is a large share of `total`, which is cheaper than a long regex).
pub fn secrets_path(names: &[&str], total: usize) -> String {
    if names.len() > MAX_NAMES_IN_REGEX || names.len() * 2 > total {
        return SECRETS_PATH.to_owned();
    }
    let alternatives: Vec<String> = names.iter().map(|n| regex_escape(n)).collect();
    let regex = format!("^({})$", alternatives.join("|"));
    format!("{SECRETS_PATH}&name_regex={}", percent_encode(&regex))
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{"configs":[
      {"@type":"type.googleapis.com/envoy.admin.v3.SecretsConfigDump.DynamicSecret",
       "name":"kubernetes://shop.tls","version_info":"7","last_updated":"2026-11-22T10:00:00Z"},
      {"@type":"type.googleapis.com/envoy.admin.v3.SecretsConfigDump.DynamicSecret",
       "name":"file-cert:/c.crt~/c.key","last_updated":"2026-11-22T10:00:01Z"}]}"#;

    #[test]
    fn index_entries_carry_a_stamp_even_without_a_version() {
        let idx = parse_index(INDEX.as_bytes()).unwrap();
        assert_eq!(idx.len(), 2);
        assert_eq!(idx[0].stamp, "7|2026-11-22T10:00:00Z");
        assert_eq!(idx[1].version, "");
        assert_eq!(idx[1].stamp, "|2026-11-22T10:00:01Z");
    }

    #[test]
    fn empty_dump_and_bad_json() {
        assert_eq!(parse_index(b"{}").unwrap(), vec![]);
        assert!(parse_index(b"<html>")
            .unwrap_err()
            .contains("unexpected JSON"));
    }

    #[test]
    fn secrets_decode_inline_string_and_base64_bytes_and_skip_other_kinds() {
        let body = r#"{"configs":[
          {"name":"a","version_info":"1","last_updated":"t","secret":{"name":"a",
            "tls_certificate":{"certificate_chain":{"inline_string":"PEM-A"},
                               "private_key":{"inline_string":"[redacted]"}}}},
          {"name":"b","secret":{"name":"b","tls_certificate":{"certificate_chain":{"inline_bytes":"UEVNLUI="}}}},
          {"name":"ca","secret":{"name":"ca","validation_context":{"trusted_ca":{"inline_string":"CA"}}}},
          {"name":"f","secret":{"name":"f","tls_certificate":{"certificate_chain":{"filename":"/x.crt"}}}},
          {"name":"tickets","secret":{"name":"tickets","session_ticket_keys":{}}},
          {"name":"skipped","secret":{"name":"skipped","tls_certificate":{"certificate_chain":{"inline_string":"S"}}}}
        ]}"#;
        let got = parse_secrets(body.as_bytes(), |n| n != "skipped").unwrap();
        let pems: Vec<(&str, Result<&[u8], &str>)> = got
            .iter()
            .map(|s| (s.name.as_str(), s.pem.as_deref().map_err(String::as_str)))
            .collect();
        assert_eq!(pems[0], ("a", Ok(&b"PEM-A"[..])));
        assert_eq!(pems[1], ("b", Ok(&b"PEM-B"[..])));
        assert_eq!(pems[2], ("ca", Ok(&b"CA"[..])));
        assert_eq!(pems[3].0, "f");
        assert!(pems[3].1.unwrap_err().contains("/x.crt"));
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].stamp, "1|t");
    }

    #[test]
    fn few_changes_are_fetched_by_an_escaped_anchored_regex() {
        let path = secrets_path(&["kubernetes://a.b", "file-cert:/x.crt~/x.key"], 100);
        let query = path.split("name_regex=").nth(1).unwrap();
        let decoded: String = {
            let bytes = query.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    out.push(u8::from_str_radix(&query[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).unwrap()
        };
        assert_eq!(decoded, r"^(kubernetes://a\.b|file-cert:/x\.crt~/x\.key)$");
    }

    #[test]
    fn served_serials_come_from_every_tls_context() {
        let body = br#"{"certificates":[
          {"ca_cert":[],"cert_chain":[{"path":"<inline>","serial_number":"02770A0B0C"}]},
          {"ca_cert":[{"serial_number":"1001"}],"cert_chain":[{"serial_number":"63c20a0b0c"}]}]}"#;
        let served = parse_served(body).unwrap();
        assert!(served.contains(&normalize_serial("02770a0b0c")));
        assert!(served.contains("63c20a0b0c") && served.contains("1001"));
        assert!(!served.contains("7"));
        assert_eq!(parse_served(b"{}").unwrap(), Served::default());
        assert!(parse_served(b"[").is_err());
    }

    #[test]
    fn many_changes_fetch_everything_at_once() {
        let names: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(secrets_path(&refs, 12), SECRETS_PATH);
        assert!(secrets_path(&refs, 1000).contains("name_regex="));
    }
}
