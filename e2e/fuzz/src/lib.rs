//! What the fuzz targets share: how one fuzz input is cut into several
//! fields, PEM framing for raw DER, the fixtures, and the checks every
//! refusal message must pass.

use base64::Engine as _;

/// A moment inside every fixture leaf's validity window (2030-01-01), so
/// fixture seeds get past the window check to the key match.
pub const NOW: i64 = 1_893_456_000;

/// Splits `data` at NUL bytes into at most `n` fields (missing ones empty).
/// PEM and JSON never contain NUL, so seeds are plain files joined by `\0`;
/// the last field keeps any further NULs.
pub fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |b| *b == 0).collect();
    out.resize(n, &[]);
    out
}

/// `data` as one PEM block labelled `label`, 64 columns as openssl writes.
pub fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out.into_bytes()
}

/// A fixture by file name (e2e/fixtures/pem); empty if there is none.
pub fn fixture(name: &str) -> &'static [u8] {
    certsync_fixtures::get(name).unwrap_or_default()
}

/// The leaf certificates and their keys, one per supported algorithm.
pub const PAIRS: [(&str, &str); 4] = [
    ("rsa.crt", "rsa.pkcs1.key"),
    ("p256.crt", "p256.sec1.key"),
    ("p384.crt", "p384.pkcs8.key"),
    ("ed25519.crt", "ed25519.pkcs8.key"),
];

/// The base64 body lines of the PEM blocks in `key_pem` that a message
/// must never quote: at least 16 characters, and found nowhere in `public`
/// (text the input also put where it may be echoed, e.g. a block label or
/// the certificate, is not evidence of a leak).
pub fn secret_lines<'a>(key_pem: &'a [u8], public: &[&[u8]]) -> Vec<&'a str> {
    let Ok(text) = std::str::from_utf8(key_pem) else {
        return Vec::new();
    };
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("-----BEGIN ") {
            inside = true;
        } else if line.starts_with("-----END ") {
            inside = false;
        } else if inside
            && line.len() >= 16
            && line
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
            && !text
                .lines()
                .filter(|l| l.contains("-----"))
                .any(|l| l.contains(line))
            && !public
                .iter()
                .any(|p| String::from_utf8_lossy(p).contains(line))
        {
            out.push(line);
        }
    }
    out
}

/// Asserts that `message` quotes none of `key_pem`'s body lines: refusal
/// messages reach Events, logs and CertMerge status, never key bytes.
pub fn assert_no_key_bytes(message: &str, key_pem: &[u8], public: &[&[u8]]) {
    for line in secret_lines(key_pem, public) {
        assert!(
            !message.contains(line),
            "a message quotes private key bytes: {message}"
        );
    }
}
