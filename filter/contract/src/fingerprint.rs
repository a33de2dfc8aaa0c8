//! SHA-256 fingerprints of leaf certificates, as lowercase hex on the wire.

use core::fmt;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// SHA-256 of a certificate's DER encoding: what `openssl x509 -fingerprint
/// -sha256` prints and what a TLS client sees in the handshake.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of_der(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }

    /// Parses 64 hex digits, either case; colons (as openssl prints them) are allowed.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        let mut digits = s.bytes().filter(|b| *b != b':');
        for byte in out.iter_mut() {
            let hi = hex_value(digits.next()?)?;
            let lo = hex_value(digits.next()?)?;
            *byte = hi << 4 | lo;
        }
        digits.next().is_none().then_some(Fingerprint(out))
    }

    /// The first 12 hex digits, enough for a person to tell certificates apart.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(12);
        s
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Lowercase hex of `bytes`, no separators.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Owned: a borrowed &str fails inside `#[serde(flatten)]` and `from_value`.
        let s = String::deserialize(d)?;
        Fingerprint::from_hex(&s)
            .ok_or_else(|| de::Error::custom("expected a SHA-256 fingerprint as 64 hex digits"))
    }
}
