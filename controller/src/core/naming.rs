//! Where a source is published, by name, in each mode, and the SDS resource
//! name an Istio gateway will show for it (so reports map back to sources;
//! the name scheme itself is Istio's, in `certsync_contract::sds`).
//!
//! Names are derived from `<namespace>` and `<name>` only, so they are stable
//! across restarts and replicas. A namespace cannot contain a dot, so the
//! first dot of `<namespace>.<name>` always splits the two and names of
//! different sources never collide. When a name would exceed its length
//! limit it is cut and suffixed with `-` and 10 hex digits of SHA-256 of the
//! full `<namespace>/<name>`: still stable, still unique (the namespace prefix
//! is kept, so a collision could only be crafted inside one's own namespace,
//! and the selection refuses it as a conflict).
//!
//! A CA travels under `<stem>_ca.crt`: Secret names cannot contain `_`, so
//! this never collides with the `<stem>.crt` of another source (a `.ca.crt`
//! suffix would collide with a source named `<name>.ca`).

use super::model::ObjectRef;
use certsync_contract::sds;
use sha2::{Digest, Sha256};

/// Longest Secret name (a DNS-1123 subdomain).
pub const SECRET_NAME_MAX: usize = 253;
/// Longest Secret data key.
pub const DATA_KEY_MAX: usize = 253;
/// Longest file name (one path component) on Linux file systems.
pub const FILE_NAME_MAX: usize = 255;
/// Hex digits of the hash suffix of an over-long name.
pub const HASH_LEN: usize = 10;
pub const CRT_SUFFIX: &str = ".crt";
pub const KEY_SUFFIX: &str = ".key";
pub const CA_SUFFIX: &str = "_ca.crt";
/// The merged Secret of the old mounted-secret setup, and where the Istio
/// gateway chart mounts it.
pub const DEFAULT_MERGED_SECRET: &str = "istio-ingressgateway-certs";
pub const DEFAULT_MERGED_MOUNT: &str = "/etc/istio/ingressgateway-certs";

/// The names of one source's certificate, key and CA within a target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PairNames {
    pub cert: String,
    pub key: String,
    pub ca: String,
}

/// Credential mode: the Secret in the gateway namespace, `<namespace>.<name>`.
pub fn credential_name(source: &ObjectRef) -> String {
    fit(
        &format!("{}.{}", source.namespace, source.name),
        "",
        SECRET_NAME_MAX,
        source,
    )
}

/// Merged mode: the data keys `<namespace>.<name>.crt`, `.key` and `_ca.crt`.
pub fn merged_keys(source: &ObjectRef) -> PairNames {
    let stem = fit(
        &format!("{}.{}", source.namespace, source.name),
        CA_SUFFIX,
        DATA_KEY_MAX,
        source,
    );
    pair(&stem)
}

/// Directory mode: relative paths `<namespace>/<name>.crt`, `.key` and `_ca.crt`.
pub fn directory_paths(source: &ObjectRef) -> PairNames {
    let stem = fit(&source.name, CA_SUFFIX, FILE_NAME_MAX, source);
    pair(&format!("{}/{stem}", source.namespace))
}

fn pair(stem: &str) -> PairNames {
    PairNames {
        cert: format!("{stem}{CRT_SUFFIX}"),
        key: format!("{stem}{KEY_SUFFIX}"),
        ca: format!("{stem}{CA_SUFFIX}"),
    }
}

/// `base` if `base` + `longest_suffix` fits in `max`, else `base` cut, with
/// trailing separators removed (the result must stay a DNS-1123 subdomain),
/// and `-<hash>` appended, so that the result + `longest_suffix` fits.
fn fit(base: &str, longest_suffix: &str, max: usize, source: &ObjectRef) -> String {
    if base.len() + longest_suffix.len() <= max {
        return base.to_owned();
    }
    let mut keep = max.saturating_sub(longest_suffix.len() + 1 + HASH_LEN);
    while !base.is_char_boundary(keep) {
        keep -= 1;
    }
    let cut = base
        .get(..keep)
        .unwrap_or_default()
        .trim_end_matches(['.', '-', '_']);
    format!("{cut}-{}", short_hash(source))
}

fn short_hash(source: &ObjectRef) -> String {
    let digest = Sha256::digest(format!("{}/{}", source.namespace, source.name).as_bytes());
    let mut hex = String::with_capacity(HASH_LEN);
    for b in digest.iter().take(HASH_LEN.div_ceil(2)) {
        hex.push_str(&format!("{b:02x}"));
    }
    hex.truncate(HASH_LEN);
    hex
}

/// Whether `name` is a valid Secret name (DNS-1123 subdomain).
pub fn is_valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= SECRET_NAME_MAX
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            match (b.first(), b.last()) {
                (Some(first), Some(last)) => {
                    first.is_ascii_alphanumeric()
                        && last.is_ascii_alphanumeric()
                        && b.iter()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                }
                _ => false,
            }
        })
}

/// Whether `key` is a valid Secret data key.
pub fn is_valid_data_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= DATA_KEY_MAX
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
}

/// SDS resource of a `credentialName: <secret>` listener.
pub fn credential_sds(secret: &str) -> String {
    sds::credential(secret)
}

/// SDS resource of the CA of a `credentialName: <secret>` listener (mutual TLS).
pub fn credential_ca_sds(secret: &str) -> String {
    sds::credential_ca(secret)
}

/// SDS resource of a Gateway's `serverCertificate`/`privateKey` file pair,
/// for paths relative to `dir`.
pub fn file_cert_sds(dir: &str, names: &PairNames) -> String {
    let dir = dir.trim_end_matches('/');
    sds::file_cert(
        &format!("{dir}/{}", names.cert),
        &format!("{dir}/{}", names.key),
    )
}

/// SDS resource of a Gateway's `caCertificates` file, relative to `dir`.
pub fn file_root_sds(dir: &str, names: &PairNames) -> String {
    sds::file_root(&format!("{}/{}", dir.trim_end_matches('/'), names.ca))
}

/// Where a gateway mounts a merged Secret: the Istio chart's path for
/// [`DEFAULT_MERGED_SECRET`], and `/etc/istio/<secret>` (the chart's
/// `secretVolumes` convention) for any other.
pub fn merged_mount_dir(secret: &str) -> String {
    if secret == DEFAULT_MERGED_SECRET {
        DEFAULT_MERGED_MOUNT.to_owned()
    } else {
        format!("/etc/istio/{secret}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(ns: &str, name: &str) -> ObjectRef {
        ObjectRef::new(ns, name)
    }

    /// A name of `len` characters with ".-" ending at `cut` (where the
    /// truncation will fall, to check that separators are trimmed).
    fn long_name(len: usize, cut: usize) -> String {
        let mut s = "x".repeat(len);
        s.replace_range(cut - 2..cut, ".-");
        s
    }

    #[test]
    fn credential_names_are_namespace_dot_name() {
        assert_eq!(credential_name(&src("shop", "tls")), "shop.tls");
        assert_eq!(credential_name(&src("shop", "a.b")), "shop.a.b");
        // No collision between ("a", "b.c") and a namespace with a dot: impossible.
        assert_ne!(
            credential_name(&src("a", "b-c")),
            credential_name(&src("a-b", "c"))
        );
    }

    #[test]
    fn over_long_credential_names_are_cut_stable_unique_and_valid() {
        // "team." + 237 characters are kept, then "-" + 10 hex digits.
        let a = src("team", &long_name(253, 237));
        let b = src("team", &format!("{}y", &a.name[..252]));
        let na = credential_name(&a);
        let nb = credential_name(&b);
        assert!(na.len() <= SECRET_NAME_MAX, "{}", na.len());
        assert!(na.starts_with("team."));
        assert!(is_valid_secret_name(&na), "{na}");
        assert!(is_valid_secret_name(&nb), "{nb}");
        assert_ne!(na, nb, "same prefix, different sources");
        assert_eq!(na, credential_name(&a), "stable");
        // The suffix is 10 hex digits of SHA-256("team/<name>").
        let digest = Sha256::digest(format!("team/{}", a.name).as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert!(na.ends_with(&format!("-{}", &hex[..10])), "{na}");
        // Exactly at the limit: untouched.
        let exact = src("ns", &"y".repeat(250));
        assert_eq!(credential_name(&exact), format!("ns.{}", exact.name));
    }

    #[test]
    fn merged_keys_share_one_stem_and_never_collide_with_a_ca() {
        let k = merged_keys(&src("shop", "tls"));
        assert_eq!(k.cert, "shop.tls.crt");
        assert_eq!(k.key, "shop.tls.key");
        assert_eq!(k.ca, "shop.tls_ca.crt");
        // A source literally named "<name>.ca" does not hit the CA key.
        assert_ne!(merged_keys(&src("shop", "tls.ca")).cert, k.ca);

        let long = merged_keys(&src("team", &long_name(253, 230)));
        for key in [&long.cert, &long.key, &long.ca] {
            assert!(key.len() <= DATA_KEY_MAX, "{}", key.len());
            assert!(is_valid_data_key(key), "{key}");
        }
        assert_eq!(
            long.cert.strip_suffix(".crt"),
            long.key.strip_suffix(".key")
        );
    }

    #[test]
    fn directory_paths_are_namespace_slash_name_with_short_file_names() {
        let p = directory_paths(&src("shop", "tls"));
        assert_eq!(p.cert, "shop/tls.crt");
        assert_eq!(p.key, "shop/tls.key");
        assert_eq!(p.ca, "shop/tls_ca.crt");
        let long = directory_paths(&src("team", &long_name(253, 237)));
        for path in [&long.cert, &long.key, &long.ca] {
            let file = path.rsplit('/').next().unwrap_or_default();
            assert!(file.len() <= FILE_NAME_MAX, "{}", file.len());
            assert!(path.starts_with("team/"));
        }
    }

    #[test]
    fn sds_names_are_what_istio_shows() {
        assert_eq!(credential_sds("shop.tls"), "kubernetes://shop.tls");
        assert_eq!(
            credential_ca_sds("shop.tls"),
            "kubernetes://shop.tls-cacert"
        );
        let p = directory_paths(&src("shop", "tls"));
        assert_eq!(
            file_cert_sds("/etc/certs/", &p),
            "file-cert:/etc/certs/shop/tls.crt~/etc/certs/shop/tls.key"
        );
        assert_eq!(
            file_root_sds("/etc/certs", &p),
            "file-root:/etc/certs/shop/tls_ca.crt"
        );
        let k = merged_keys(&src("shop", "tls"));
        assert_eq!(
            file_cert_sds(&merged_mount_dir(DEFAULT_MERGED_SECRET), &k),
            "file-cert:/etc/istio/ingressgateway-certs/shop.tls.crt~/etc/istio/ingressgateway-certs/shop.tls.key"
        );
        assert_eq!(merged_mount_dir("shop.certs"), "/etc/istio/shop.certs");
    }

    #[test]
    fn secret_name_validation_follows_dns_1123_subdomains() {
        for ok in ["a", "shop.tls", "a-b.c-d", "0.1"] {
            assert!(is_valid_secret_name(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a_b",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            &"a".repeat(254),
        ] {
            assert!(!is_valid_secret_name(bad), "{bad}");
        }
        assert!(is_valid_data_key("Shop_1.crt"));
        assert!(!is_valid_data_key("a/b"));
        assert!(!is_valid_data_key(".."));
    }
}
