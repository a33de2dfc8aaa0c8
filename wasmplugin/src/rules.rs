//! The name rules Kubernetes and Istio enforce, checked before rendering so
//! a bad value is refused here with a reason instead of by the API server.

/// 64 lowercase hex digits: the WasmPlugin CRD's `sha256` pattern.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// RFC 1123 label, as Kubernetes namespaces are: lowercase alphanumerics
/// and '-', alphanumeric at both ends, at most 63.
pub(crate) fn is_dns_label(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| alnum(b) || b == b'-')
        && s.bytes().next().is_some_and(alnum)
        && s.bytes().last().is_some_and(alnum)
}

/// RFC 1123 subdomain: dot-separated labels, at most 253.
pub(crate) fn is_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Label name or value: at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends.
pub(crate) fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// Label key: an optional DNS-subdomain prefix and '/', then a label name.
pub(crate) fn is_label_key(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_name(prefix) && is_label_name(name),
        None => is_label_name(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_rules() {
        assert!(is_label_key("app.kubernetes.io/name"));
        assert!(is_label_key("istio"));
        assert!(!is_label_key("/istio"));
        assert!(!is_label_key("-istio"));
        assert!(is_label_name("ingressgateway"));
        assert!(!is_label_name(&"a".repeat(64)));
        assert!(is_dns_name("cert-sync.istio-system.svc.cluster.local"));
        assert!(!is_dns_name("cert-sync..svc"));
        assert!(!is_dns_label("Istio"));
        assert!(is_sha256_hex(&"0f".repeat(32)));
        assert!(!is_sha256_hex(&"0F".repeat(32)));
    }
}
