//! Does a certificate cover the hosts a gateway serves it for? The answer a
//! TLS client would give, decided before the certificate is served: a
//! certificate that does not name a host fails every handshake for it, and
//! neither Istio nor Envoy checks (Envoy picks a filter chain by SNI and
//! serves whatever it holds).
//!
//! The rules are the ones browsers and rustls/webpki apply (RFC 6125 §6.4,
//! CA/Browser Forum baseline requirements):
//! * only subject alternative names count — the subject CN is ignored, as
//!   every current client does;
//! * DNS names compare case-insensitively, a trailing dot ignored, and in
//!   their ASCII form: a Unicode host (`bücher.example`) is matched as its
//!   punycode A-label (`xn--bcher-kva.example`, UTS #46), which is what
//!   certificates carry;
//! * a wildcard is a whole left-most label (`*.example.com`), matches exactly
//!   one label (`a.example.com`, not `example.com`, not `a.b.example.com`),
//!   and needs at least two labels after it (`*.com` matches nothing);
//!   partial-label wildcards (`f*.example.com`) match nothing;
//! * an IP host matches only an IP-address SAN.
//!
//! Served hosts come from gateway configuration: an Istio Gateway server's
//! `hosts` (`[namespace/]dnsName`, where the name may be `*` or
//! `*.example.com`) or a Gateway API listener's `hostname`. A wildcard host
//! is covered only by the same wildcard SAN; `*` alone names no host to
//! check.

use certsync_contract::cert::San;
use std::net::IpAddr;

/// A host a gateway serves a certificate for, normalized for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// One DNS name, lowercase A-labels, no trailing dot.
    Dns(String),
    /// `*.<base>`: every name under `base` (as Envoy matches SNI).
    Wildcard(String),
    Ip(IpAddr),
    /// `*`: any host; nothing to check.
    Any,
}

/// Why a host string could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host {host:?} is not a DNS name, wildcard or IP address: {reason}")]
pub struct HostError {
    pub host: String,
    pub reason: String,
}

impl Host {
    /// Parses a served host. Istio's `namespace/` prefix (`./`, `*/`,
    /// `shop/`) names which VirtualServices may bind, not the host: it is
    /// dropped.
    pub fn parse(raw: &str) -> Result<Host, HostError> {
        let host = raw.rsplit_once('/').map_or(raw, |(_, h)| h).trim();
        let error = |reason: &str| HostError {
            host: raw.to_owned(),
            reason: reason.to_owned(),
        };
        if host == "*" {
            return Ok(Host::Any);
        }
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
            return Ok(Host::Ip(ip));
        }
        match host.strip_prefix("*.") {
            Some(base) => dns_name(base).map(Host::Wildcard).map_err(|r| error(&r)),
            None if host.contains('*') => {
                Err(error("a wildcard must be the whole left-most label"))
            }
            None => dns_name(host).map(Host::Dns).map_err(|r| error(&r)),
        }
    }
}

/// The ASCII form of a DNS name: lowercase A-labels, no trailing dot.
fn dns_name(name: &str) -> Result<String, String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err("empty name".to_owned());
    }
    idna::domain_to_ascii_strict(name).map_err(|e| format!("not a valid DNS name ({e})"))
}

/// Whether a certificate with `sans` covers `host` for a TLS client.
pub fn covers(sans: &[San], host: &Host) -> bool {
    match host {
        Host::Any => true,
        Host::Ip(ip) => sans.iter().any(|s| matches!(s, San::Ip(a) if a == ip)),
        Host::Dns(name) => dns_sans(sans).any(|san| san_matches(&san, name)),
        // Only the same wildcard names every host under the base.
        Host::Wildcard(base) => dns_sans(sans)
            .filter_map(|san| san.strip_prefix("*.").map(str::to_owned))
            .any(|san_base| san_base == *base && wildcard_base_ok(&san_base)),
    }
}

/// The served hosts (as written in gateway configuration) that `sans` do
/// not cover, each with why: unparseable hosts are listed too.
pub fn uncovered<'a>(sans: &[San], hosts: &'a [String]) -> Vec<(&'a str, Option<HostError>)> {
    hosts
        .iter()
        .filter_map(|raw| match Host::parse(raw) {
            Ok(host) if covers(sans, &host) => None,
            Ok(_) => Some((raw.as_str(), None)),
            Err(e) => Some((raw.as_str(), Some(e))),
        })
        .collect()
}

/// DNS SANs in ASCII lowercase without a trailing dot; a SAN that is not a
/// valid name matches nothing.
fn dns_sans(sans: &[San]) -> impl Iterator<Item = String> + '_ {
    sans.iter().filter_map(|s| match s {
        San::Dns(d) => {
            let d = d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase();
            (!d.is_empty() && d.is_ascii()).then_some(d)
        }
        _ => None,
    })
}

fn san_matches(san: &str, name: &str) -> bool {
    match san.strip_prefix("*.") {
        Some(base) => {
            wildcard_base_ok(base)
                && name
                    .strip_suffix(base)
                    .and_then(|label| label.strip_suffix('.'))
                    .is_some_and(|label| !label.is_empty() && !label.contains('.'))
        }
        None => !san.contains('*') && san == name,
    }
}

/// A wildcard needs at least two labels after it, none of them wildcards.
fn wildcard_base_ok(base: &str) -> bool {
    base.contains('.') && !base.contains('*') && base.split('.').all(|l| !l.is_empty())
}

#[cfg(test)]
#[path = "hosts_tests.rs"]
mod tests;
